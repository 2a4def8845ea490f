"""Attachment records: what netplug set up for each (network, container, ifname).

<stateDir>/<network>/<owner-hash>.json holds one line of JSON, written (temp + rename, mode 0600)
*before* the first side effect of an ADD; at its end a second line with the addresses is
appended, and from then on the record counts as complete. So DEL and GC can undo an ADD that was
killed halfway, and DEL works without prevResult, runtimeConfig or the netns.

No file is renamed over an existing one: on ext4 a rename that replaces a file flushes the new
file's data first (auto_da_alloc), ~0.4 ms here. And the end of an ADD creates no file: a new
inode costs 0.1-1 ms on this VM's ext4, an append to the record ~0.03 ms. (Earlier builds wrote
the end as <owner-hash>.done; such files are still read and removed.)
"""

import _thread
import os

from .errors import SetupError
from .fileio import ensure_dir, read_small
from .locking import flocked
from .jsonlite import dumps, loads
from .record import asdict, field, record


@record
class Attachment:
    network: str
    container_id: str
    ifname: str
    owner: str  # hash of the three above: names the host veth and the DNAT chain
    host_veth: str
    bridge: str
    backend: str = ""
    netns: str = ""
    ips: list[str] = field(default_factory=list)
    port_mappings: list[dict] = field(default_factory=list)
    complete: bool = False


class StateStore:
    def __init__(self, state_dir: str, network: str):
        self.root = state_dir
        self.dir = os.path.join(state_dir, network)
        ensure_dir(self.dir, 0o700)

    def network_lock(self):
        return flocked(os.path.join(self.dir, ".lock"), what="network state")

    def ports_lock(self):
        return flocked(os.path.join(self.root, ".ports.lock"), what="port registry")

    def _path(self, owner: str) -> str:
        return os.path.join(self.dir, f"{owner}.json")

    def get(self, owner: str) -> Attachment | None:
        return _read(self._path(owner))

    def put(self, a: Attachment) -> None:
        """The record an ADD starts from (not complete yet)."""
        try:  # an end written by an earlier build for this owner goes first
            os.unlink(_done_of(self._path(a.owner)))
        except FileNotFoundError:
            pass
        _write_new(self._path(a.owner), dumps(asdict(a) | {"complete": False}))

    def complete(self, owner: str, ips: list[str]) -> None:
        """The ADD finished: its addresses, appended to its record as a second line."""
        try:
            fd = os.open(self._path(owner), os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        except FileNotFoundError:
            raise SetupError(f"the record of attachment {owner} vanished during its ADD",
                             "a DEL or GC of the same container ran at the same time") from None
        try:
            os.write(fd, ("\n" + dumps({"ips": ips})).encode())
        finally:
            os.close(fd)

    def remove(self, owner: str) -> None:
        for path in (self._path(owner), _done_of(self._path(owner)),
                     os.path.join(self.dir, f"{owner}.deleting")):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def mark_deleting(self, owner: str) -> None:
        """Under the network lock: concurrent DELs then agree on which one is the last."""
        if os.path.exists(self._path(owner)):
            os.close(os.open(os.path.join(self.dir, f"{owner}.deleting"),
                             os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))

    def live_owners(self) -> set[str]:
        """Owners with a record that is not being deleted (names only: no file is read)."""
        names = os.listdir(self.dir)
        gone = {n[:-9] for n in names if n.endswith(".deleting")}
        return {n[:-5] for n in names if n.endswith(".json")} - gone

    def all(self) -> list[Attachment]:
        return [a for n in sorted(os.listdir(self.dir)) if n.endswith(".json")
                if (a := _read(os.path.join(self.dir, n))) is not None]

    # --- host-wide published-port registry: <stateDir>/ports/<proto>-<port>-<hostIP> -----------
    # A claim is a hard link to the claiming attachment's record (whose owner, container_id and
    # network say who holds the port): no inode is allocated, which on this VM's ext4 costs
    # 0.1-1 ms per file, and the claim appears whole, in one link(). Earlier builds wrote claims
    # as files in a directory per port, <stateDir>/ports/<proto>-<port>/<hostIP>: those are
    # still read and released.
    #
    # A claim on 0.0.0.0 conflicts with every claim on its port, a claim on one address only with
    # that address's and 0.0.0.0's. Claims on one address are rare, so a port that has any also
    # has a flag, <proto>-<port>~ip (one more link to a claimer's record), and only a claim on
    # 0.0.0.0 that finds the flag lists the directory: the usual ADD opens one or two names and
    # lists nothing, however many ports the host publishes (a listing grew ~0.2 ms over 200).
    # The file ".flagged" says every such claim has its flag: claims made by builds before
    # the flags get theirs the first time the registry is checked.
    def _ports(self) -> str:
        return os.path.join(self.root, "ports")

    def port_holders(self, proto: str, port: int, host_ip: str = "") -> dict[str, dict]:
        """hostIP ("0.0.0.0" = all) -> holder, for every claim on proto/port that a claim on
        host_ip ("" = all) could conflict with. Caller holds ports_lock."""
        ports, prefix, ip = self._ports(), f"{proto}-{port}-", host_ip or "0.0.0.0"
        if not os.path.exists(os.path.join(ports, ".flagged")):
            self._flag_older_claims()
        names = {prefix + "0.0.0.0", prefix + ip}
        if ip == "0.0.0.0" and os.path.lexists(os.path.join(ports, f"{proto}-{port}~ip")):
            names.update(n for n in _listdir(ports) if n.startswith(prefix))
        out = {n[len(prefix):]: os.path.join(ports, n) for n in names}
        older = os.path.join(ports, prefix[:-1])  # the older layout's directory for this port
        out.update({a: os.path.join(older, a) for a in _listdir(older)})
        for a, path in list(out.items()):
            try:
                out[a] = head_of(read_small(path))  # a claim is the record: its end line may follow
            except (OSError, ValueError):
                del out[a]
        return out

    def _flag_older_claims(self) -> None:
        ensure_dir(self._ports(), 0o700)
        for name in _listdir(self._ports()):
            proto, _, rest = name.partition("-")
            port, _, ip = rest.partition("-")
            if ip and ip != "0.0.0.0" and port.isdigit():
                _link(os.path.join(self._ports(), name), self._flag(proto, int(port)))
        os.close(os.open(os.path.join(self._ports(), ".flagged"), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))

    def _flag(self, proto: str, port: int) -> str:
        return os.path.join(self._ports(), f"{proto}-{port}~ip")

    def claim_port(self, proto: str, port: int, host_ip: str, owner: str) -> None:
        """Link `owner`'s record (put() first) as the claim of proto/port on host_ip. A claim
        already there is this owner's (port_holders found no other): a mapping listed twice, or
        one kept from an ADD that was killed and is being redone."""
        ensure_dir(self._ports(), 0o700)
        ip = host_ip or "0.0.0.0"
        if ip != "0.0.0.0":
            _link(self._path(owner), self._flag(proto, port))
        _link(self._path(owner), os.path.join(self._ports(), f"{proto}-{port}-{ip}"))

    def release_port(self, proto: str, port: int, host_ip: str, owner: str) -> None:
        ip = host_ip or "0.0.0.0"
        older = os.path.join(self._ports(), f"{proto}-{port}")
        for path, dir_to_drop in ((os.path.join(self._ports(), f"{proto}-{port}-{ip}"), None),
                                  (os.path.join(older, ip), older)):
            try:
                if head_of(read_small(path)).get("owner") != owner:
                    continue  # someone else's claim now
                os.unlink(path)
                if dir_to_drop:
                    os.rmdir(dir_to_drop)
            except (OSError, ValueError):
                pass
        prefix = f"{proto}-{port}-"
        if ip != "0.0.0.0" and not any(n.startswith(prefix) and n != prefix + "0.0.0.0"
                                       for n in _listdir(self._ports())):
            try:  # the port's last claim on one address: claims on 0.0.0.0 list nothing again
                os.unlink(self._flag(proto, port))
            except FileNotFoundError:
                pass

    def all_networks(self) -> list[Attachment]:
        """Every attachment on this host, for host-wide checks (published ports)."""
        out = []
        for net in sorted(os.listdir(self.root)):
            d = os.path.join(self.root, net)
            if os.path.isdir(d) and net != "ports":
                out += [a for n in sorted(os.listdir(d)) if n.endswith(".json")
                        if (a := _read(os.path.join(d, n))) is not None]
        return out


def _read(path: str) -> Attachment | None:
    try:
        text = read_small(path)
    except FileNotFoundError:
        return None
    try:
        a = Attachment(**head_of(text))
    except (ValueError, TypeError):
        os.unlink(path)  # torn or foreign file: the owner's rules are still found by hash
        return None
    ips = end_of(text)
    if ips is not None:
        a.ips, a.complete = ips, True
        return a
    try:  # no end line (an ADD still running, killed before its end, or torn while writing
        # it): an earlier build may have written the end as a file of its own
        a.ips, a.complete = loads(read_small(_done_of(path)))["ips"], True
    except FileNotFoundError:
        pass
    except (ValueError, TypeError, KeyError):
        os.unlink(_done_of(path))
    return a


def head_of(text: str) -> dict:
    """The record line of a record's (or port claim's) text, without its end line."""
    return loads(text.partition("\n")[0])


def end_of(text: str) -> list[str] | None:
    """The addresses in a record's end line; None while there is none (or it is torn)."""
    end = text.partition("\n")[2]
    try:
        return loads(end)["ips"] if end else None
    except (ValueError, TypeError, KeyError):
        return None


def _link(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except FileExistsError:
        pass


def _listdir(d: str) -> list[str]:
    try:
        return os.listdir(d)
    except OSError:
        return []


def _done_of(record_path: str) -> str:
    """<owner>.json -> <owner>.done: where earlier builds wrote the end of that attachment's ADD."""
    return record_path[:-len(".json")] + ".done"


def _write_new(path: str, text: str) -> None:
    """Atomically, through a temp file; replaces `path` only if it exists (the slow case)."""
    tmp = f"{path}.tmp{os.getpid()}.{_thread.get_ident()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
