"""Link, address and route verbs of the CNI plugin, with kernel errors turned into messages.

One `Links` object wraps one netlink socket; open it while the thread is in the namespace you
want it to act on (see ns.entered). `_iproute()` gives pyroute2's IPRoute to the paths that are
not exec'd per container (explain, kube-routes).
"""

import errno
import ipaddress

from ..errors import ConfigError, SetupError
from ..log import log
from . import rtnl
from .rtnl import AF_INET, AF_INET6, NetlinkError


def _lazy_pyroute2() -> None:
    """Import pyroute2's submodules without its package __init__, which loads NDB, IPDB,
    conntrack and more (~400 ms here); IPRoute alone still costs ~120-200 ms."""
    import sys

    if "pyroute2" in sys.modules:
        return
    import importlib.util
    import types

    spec = importlib.util.find_spec("pyroute2")
    if spec is None or not spec.submodule_search_locations:
        return
    pkg = types.ModuleType("pyroute2")
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.__spec__ = spec
    pkg.__file__ = spec.origin
    sys.modules["pyroute2"] = pkg


def _iproute():
    _lazy_pyroute2()
    from pyroute2.iproute.linux import IPRoute  # heavy: only on the paths that touch the kernel

    return IPRoute()


# bridge name -> its index when last looked up (in netplugd, across ADDs): only ever a hint
_last_index: dict[str, int] = {}


class Links:
    """The CNI verbs on one rtnetlink socket (rtnl.Rtnl: standard library, no pyroute2 import
    on the exec'd hot path). Kernel refusals become SetupError/ConfigError with the reason."""

    def __init__(self):
        from .rtnl import Rtnl

        self.nl = Rtnl()

    def close(self):
        self.nl.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- lookups ------------------------------------------------------------------------------
    def index(self, name: str) -> int | None:
        found = self.lookup(name)
        return found["index"] if found else None

    def lookup(self, name: str) -> dict | None:
        """One RTM_GETLINK by name: index, name, kind, mac, mtu, master, up, promisc; None if absent."""
        try:
            return self.nl.link_get(name=name)
        except NetlinkError as e:
            if e.code == errno.ENODEV:
                return None
            raise SetupError(f"look up {name}: {e.strerror}") from None

    def lookup_with_addresses(self, name: str, versions: set[int], forwarding: bool = False
                              ) -> tuple[dict | None, dict[int, list], bool | None]:
        """lookup(name) and, if it exists, its addresses of each IP version, and with
        `forwarding` the namespace's IPv4 forwarding switch (net.ipv4.ip_forward; None if the
        kernel does not say): one datagram, one wait. The address dumps name the index the
        bridge had last time (netplugd asks for the same bridge on every ADD), so the kernel
        walks that device only, not every port of the host; if the bridge has another index
        now, they are asked again for the right one. (The link carries the bridge's own IPv4
        sysctls, route_localnet among them, and netconf the switch: /proc/sys/net costs a path
        lookup that grows with every namespace on the host that has used it.)"""
        fams = {v: AF_INET if v == 4 else AF_INET6 for v in sorted(versions)}
        guess = _last_index.get(name, 0)
        answers = self.nl.exchange([rtnl.link_get_msg(name)] +
                                   [rtnl.addr_dump_msg(f, guess) for f in fams.values()] +
                                   ([rtnl.netconf_get_msg(AF_INET)] if forwarding else []))
        fwd = None
        if forwarding:
            bodies, err = answers.pop()
            fwd = rtnl.parse_netconf(bodies[0])["forwarding"] if err is None and bodies else None
            fwd = None if fwd is None else bool(fwd)
        replies, err = answers[0]
        if err is not None:
            if err.code == errno.ENODEV:
                return None, {}, fwd
            raise SetupError(f"look up {name}: {err.strerror}")
        link = rtnl.parse_link(replies[0])
        if guess != link["index"]:
            _last_index[name] = link["index"]
            if guess and fams:  # the bridge was made again: the dumps were of another device
                answers = answers[:1] + self.nl.exchange([rtnl.addr_dump_msg(f, link["index"])
                                                          for f in fams.values()])
        held = {}
        for (v, fam), (bodies, err) in zip(fams.items(), answers[1:]):
            if err is not None:
                raise SetupError(f"list addresses of {name}: {err.strerror}")
            held[v] = [ipaddress.ip_interface(f"{a['address']}/{a['prefixlen']}")
                       for a in rtnl.addrs_of(bodies, fam, link["index"])]
        return link, held, fwd

    def info(self, index: int) -> dict:
        return self.nl.link_get(index=index)

    def kind(self, index: int) -> str:
        return self.info(index)["kind"]

    def addresses(self, index: int, family: int = AF_INET) -> list:
        return [ipaddress.ip_interface(f"{a['address']}/{a['prefixlen']}")
                for a in self.nl.addrs(family, index)]

    def all_addresses(self, index: int) -> list:
        return self.addresses(index, AF_INET) + [
            a for a in self.addresses(index, AF_INET6) if not a.ip.is_link_local]

    def routes(self, family: int = AF_INET) -> list[dict]:
        zero = "0.0.0.0" if family == AF_INET else "::"
        return [{"dst": ipaddress.ip_network(f"{r['dst'] or zero}/{r['dst_len']}", strict=False),
                 "gw": r["gateway"], "oif": r["oif"]} for r in self.nl.routes(family)]

    # --- bridge -------------------------------------------------------------------------------
    def ensure_bridge(self, name: str, mtu: int, promisc: bool, have: dict | None = None) -> dict:
        """The bridge's info; created (and set up) if missing. `have`: a lookup already made."""
        br = have or self.lookup(name)
        if br is None:
            try:
                self.nl.link_add(name, "bridge", mtu)
            except NetlinkError as e:
                if e.code != errno.EEXIST:  # another ADD made it first: fine
                    raise SetupError(f"create bridge {name}: {e.strerror}") from None
            br = self.lookup(name)
            if br is None:
                raise SetupError(f"bridge {name} vanished right after it was created")
            if br["kind"] == "bridge":
                # pin the MAC: otherwise it follows the lowest port MAC and churns as ports come
                # and go, which breaks neighbours' ARP caches (as the reference bridge does)
                self.nl.link_set(br["index"], mac=br["mac"])
        refuse_non_bridge(name, br)
        if not br["up"] or (promisc and not br["promisc"]):
            self.nl.link_set(br["index"], up=True, promisc=True if promisc else None)
        return br

    def ensure_gateway(self, bridge: str, idx: int, gw: ipaddress.IPv4Interface, force: bool,
                       held: list | None = None) -> None:
        """`held`: the bridge's addresses of gw's family, if just read."""
        fam = AF_INET if gw.version == 4 else AF_INET6
        have = [a for a in (self.addresses(idx, fam) if held is None else held) if not a.ip.is_link_local]
        if gw in have:
            return
        others = [a for a in have if a.network.overlaps(gw.network) or gw.version == 4]
        if others:
            if not force:
                raise ConfigError(f'"{bridge}" already has an IP address different from {gw}',
                                  f"it has {', '.join(map(str, others))}; set forceAddress to replace it")
            for a in others:
                self._addr(False, idx, a, ignore=errno.EADDRNOTAVAIL)
        self._addr(True, idx, gw, ignore=errno.EEXIST)

    def refuse_overlap(self, subnet: ipaddress.IPv4Network, bridge: str) -> None:
        """A subnet that a route through another interface already covers would be a black hole.
        Routes via our own bridge are compared by name: a concurrent ADD may have just made it."""
        fam = AF_INET if subnet.version == 4 else AF_INET6
        for r in self.routes(fam):
            if r["dst"].prefixlen == 0 or r["oif"] is None or not r["dst"].overlaps(subnet):
                continue
            try:
                dev = self.info(r["oif"])["name"]
            except NetlinkError:
                continue  # the interface went away meanwhile
            if dev != bridge:
                raise ConfigError(f"subnet {subnet} overlaps route {r['dst']} via {dev}",
                                  "choose another subnet for this network (ipam.ranges)")

    # --- veth ---------------------------------------------------------------------------------
    def create_veth(self, host: str, peer: str, netns_fd: int, mtu: int, mac: str = "",
                    bridge_idx: int = 0, hairpin: bool = False) -> dict:
        """The pair, its host end already a port of `bridge_idx` and up, and its hairpin flag:
        one datagram (the peer stays down until configured, so no frame crosses before). A host
        end of the same name is a leftover of this attachment (names derive from it): it goes."""
        msgs = [rtnl.veth_msg(host, peer, netns_fd, mtu, mac, master=bridge_idx, up=bool(bridge_idx))]
        if hairpin:
            msgs.append(rtnl.bridge_port_msg(host, True))
        (replies, err), *rest = self.nl.exchange(msgs)
        if err is not None:
            if err.code != errno.EEXIST:
                raise SetupError(f"create veth {host}<->{peer}: {err.strerror}")
            if not self.delete(host):  # the host name is free, so it is the peer
                raise ConfigError(f"interface {peer} already exists in the container's netns")
            log.info("removed a stale %s", host)
            return self.create_veth(host, peer, netns_fd, mtu, mac, bridge_idx, hairpin)
        if rest and rest[0][1] is not None:
            raise SetupError(f"hairpin on {host}: {rest[0][1].strerror}")
        hv = rtnl.echoed_link(replies, host) or self.lookup(host)  # the echo spares a lookup
        if hv is None:
            raise SetupError(f"veth {host} vanished right after it was created")
        if bridge_idx:  # echoed before the kernel enslaved it, in the same request
            hv["master"] = bridge_idx
        return hv

    def delete(self, name: str) -> bool:
        idx = self.index(name)
        if idx is None:
            return False
        try:
            self.nl.link_del(idx)
        except NetlinkError as e:
            if e.code != errno.ENODEV:
                raise SetupError(f"delete {name}: {e.strerror}") from None
        return True

    # --- container side -----------------------------------------------------------------------
    def configure(self, idx: int, addrs: list, routes: list[tuple[str, str]]) -> None:
        """Addresses, link up, routes: one datagram, handled in that order (a route through
        the gateway needs the address and the link up before it)."""
        msgs, what = [], []
        for a in addrs:
            msgs.append(rtnl.addr_msg(True, idx, AF_INET if a.version == 4 else AF_INET6,
                                      str(a.ip), a.network.prefixlen))
            what.append((f"addr add {a}", errno.EEXIST))
        msgs.append(rtnl.link_set_msg(idx, up=True))
        what.append((f"set interface {idx} up", None))
        for dst, gw in routes:
            net = ipaddress.ip_network(dst)
            msgs.append(rtnl.route_msg(AF_INET if net.version == 4 else AF_INET6,
                                       str(net.network_address), net.prefixlen, idx, gw or ""))
            what.append((f"add route {dst} via {gw or 'link'}", errno.EEXIST))
        for (_, err), (action, ignore) in zip(self.nl.exchange(msgs), what):
            if err is not None and err.code != ignore:
                raise SetupError(f"{action}: {err.strerror}")

    def _addr(self, add: bool, idx: int, a, ignore: int) -> None:
        fam = AF_INET if a.version == 4 else AF_INET6
        try:
            self.nl.addr(add, idx, fam, str(a.ip), a.network.prefixlen)
        except NetlinkError as e:
            if e.code != ignore:
                raise SetupError(f"addr {'add' if add else 'del'} {a}: {e.strerror}") from None


def refuse_non_bridge(name: str, link: dict) -> None:
    if link["kind"] != "bridge":
        raise ConfigError(f'"{name}" already exists but is not a bridge (it is a {link["kind"] or "device"})',
                          'choose another "bridge" name in the network config')
