"""The on-disk store, file-compatible with the reference host-local plugin.

<dataDir>/<network>/<ip>            "<containerID>\\r\\n<ifname>"  (mode 0600)
<dataDir>/<network>/last_reserved_ip.<n>
<dataDir>/<network>/lock            flock held around every allocate/release

An address file appears atomically *with its owner already written*: we write a temp file and
hard-link it to the final name (link fails with EEXIST, so it is also the O_EXCL test).
"""

import os

from ..cni.config import IPAddr
from ..locking import flocked
from ..fileio import ensure_dir, read_small
from .allocator import parse_ip

TMP_PREFIX = ".tmp-"


class DiskStore:
    def __init__(self, data_dir: str, network: str, lock_timeout: float | None = None):
        self.dir = os.path.join(data_dir, network)
        self.lock_timeout = lock_timeout
        ensure_dir(self.dir, 0o755)

    def locked(self):
        return flocked(os.path.join(self.dir, "lock"), self.lock_timeout, what="IPAM store")

    # --- reading -------------------------------------------------------------------------------
    def entries(self) -> dict[IPAddr, tuple[str, str]]:
        out = {}
        for name in os.listdir(self.dir):
            ip = parse_ip(name)
            if ip is not None:
                owner = self._read_owner(name)
                if owner is not None:
                    out[ip] = owner
        return out

    def _read_owner(self, name: str) -> tuple[str, str] | None:
        try:
            with open(os.path.join(self.dir, name), encoding="utf-8", errors="replace", newline="") as f:
                text = f.read()
        except FileNotFoundError:
            return None
        cid, _, ifname = text.partition("\r\n")
        return (cid.strip(), ifname.strip())

    def owner_of(self, ip: IPAddr) -> tuple[str, str] | None:
        name = str(ip)
        if not os.path.lexists(os.path.join(self.dir, name)):
            return None
        return self._read_owner(name) or ("", "")

    def holds(self, ip: IPAddr, cid: str, ifname: str) -> bool:
        o = self.owner_of(ip)
        return o is not None and _matches(o, cid, ifname)

    def ips_of(self, cid: str, ifname: str) -> list[IPAddr]:
        return [ip for ip, o in self.entries().items() if _matches(o, cid, ifname)]

    def last_reserved(self, idx: int) -> IPAddr | None:
        try:
            return parse_ip(read_small(os.path.join(self.dir, f"last_reserved_ip.{idx}")).strip())
        except FileNotFoundError:
            return None

    # --- writing (caller holds the lock) ---------------------------------------------------------
    def reserve(self, ip: IPAddr, cid: str, ifname: str, idx: int) -> bool:
        final = os.path.join(self.dir, str(ip))
        tmp = os.path.join(self.dir, f"{TMP_PREFIX}{ip}.{os.getpid()}")
        _write(tmp, f"{cid}\r\n{ifname}")
        try:
            os.link(tmp, final)
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        _overwrite(os.path.join(self.dir, f"last_reserved_ip.{idx}"), str(ip))
        return True

    def set_last_reserved(self, idx: int, ip: IPAddr | None) -> None:
        path = os.path.join(self.dir, f"last_reserved_ip.{idx}")
        if ip is None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            return
        _overwrite(path, str(ip))

    def release(self, ip: IPAddr) -> None:
        try:
            os.unlink(os.path.join(self.dir, str(ip)))
        except FileNotFoundError:
            pass

    def release_owner(self, cid: str, ifname: str, hint: list[IPAddr] = ()) -> list[IPAddr]:
        """Release every address of (cid, ifname). With `hint` (the addresses the caller
        recorded) only those files are read; otherwise the whole store is scanned."""
        if hint:
            gone = [ip for ip in hint if self.holds(ip, cid, ifname)]
            if gone:
                for ip in gone:
                    self.release(ip)
                return gone
        gone = self.ips_of(cid, ifname)
        for ip in gone:
            self.release(ip)
        return gone

    def remove_temp_files(self) -> None:
        """Leftovers of a process killed between write and link; never a reservation."""
        for name in os.listdir(self.dir):
            if name.startswith(TMP_PREFIX):
                try:
                    os.unlink(os.path.join(self.dir, name))
                except FileNotFoundError:
                    pass


def _matches(owner: tuple[str, str], cid: str, ifname: str) -> bool:
    # Old host-local files hold only the container ID; they match any ifname of that container.
    return owner[0] == cid and (owner[1] == ifname or owner[1] == "")


def _overwrite(path: str, text: str) -> None:
    """The round-robin cursor, rewritten in place as host-local does (it is only a hint, read and
    written under the lock). Not O_TRUNC, nor temp + rename: on ext4 both flush the data first
    (auto_da_alloc), ~0.4 ms here; write-then-truncate does not."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        data = text.encode()
        os.write(fd, data)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
