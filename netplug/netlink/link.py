"""Link, address and route verbs over pyroute2, with kernel errors turned into messages.

One `Links` object wraps one netlink socket; open it while the thread is in the namespace you
want it to act on (see ns.entered).
"""

import errno
import ipaddress
import socket

from ..errors import ConfigError, SetupError


def _lazy_pyroute2() -> None:
    """Import pyroute2's submodules without its package __init__, which loads NDB, IPDB,
    conntrack and more (~400 ms here); IPRoute alone costs ~200 ms. Every exec pays this."""
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


def _netlink_error():
    _lazy_pyroute2()
    from pyroute2.netlink.exceptions import NetlinkError

    return NetlinkError


class Links:
    def __init__(self):
        self.ipr = _iproute()
        self.NetlinkError = _netlink_error()

    def close(self):
        self.ipr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- lookups ------------------------------------------------------------------------------
    def index(self, name: str) -> int | None:
        found = self.ipr.link_lookup(ifname=name)
        return found[0] if found else None

    def lookup(self, name: str) -> dict | None:
        """One RTM_GETLINK by name: index, kind, mac, mtu, flags; None if there is none."""
        try:
            msg = self.ipr.link("get", ifname=name)[0]
        except self.NetlinkError as e:
            if e.code == errno.ENODEV:
                return None
            raise SetupError(f"look up {name}: {e.args[-1]}") from None
        return _info(msg)

    def get(self, index: int):
        return self.ipr.link("get", index=index)[0]

    def kind(self, index: int) -> str:
        info = self.get(index).get_attr("IFLA_LINKINFO")
        return info.get_attr("IFLA_INFO_KIND") if info else ""

    def info(self, index: int) -> dict:
        return _info(self.get(index))

    def addresses(self, index: int, family: int = socket.AF_INET) -> list:
        return [ipaddress.ip_interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
                for a in self.ipr.get_addr(index=index, family=family)]

    def all_addresses(self, index: int) -> list:
        return self.addresses(index, socket.AF_INET) + [
            a for a in self.addresses(index, socket.AF_INET6) if not a.ip.is_link_local]

    def routes(self, family: int = socket.AF_INET) -> list[dict]:
        out = []
        for r in self.ipr.get_routes(family=family, table=254):
            dst = r.get_attr("RTA_DST")
            out.append({
                "dst": ipaddress.ip_network(f"{dst or ('0.0.0.0' if family == socket.AF_INET else '::')}"
                                            f"/{r['dst_len']}", strict=False),
                "gw": r.get_attr("RTA_GATEWAY"),
                "oif": r.get_attr("RTA_OIF"),
            })
        return out

    # --- bridge -------------------------------------------------------------------------------
    def ensure_bridge(self, name: str, mtu: int, promisc: bool, have: dict | None = None) -> dict:
        """The bridge's info; created (and set up) if missing. `have`: a lookup already made."""
        br = have or self.lookup(name)
        if br is None:
            try:
                self.ipr.link("add", ifname=name, kind="bridge", mtu=mtu)
            except self.NetlinkError as e:
                if e.code != errno.EEXIST:  # another ADD made it first: fine
                    raise SetupError(f"create bridge {name}: {e.args[-1]}") from None
            br = self.lookup(name)
            if br is None:
                raise SetupError(f"bridge {name} vanished right after it was created")
            if br["kind"] == "bridge":
                # pin the MAC: otherwise it follows the lowest port MAC and churns as ports come
                # and go, which breaks neighbours' ARP caches (as the reference bridge does)
                self.ipr.link("set", index=br["index"], address=br["mac"])
        refuse_non_bridge(name, br)
        if not br["up"] or (promisc and not br["promisc"]):
            spec = {"state": "up"}
            if promisc:
                spec["flags"], spec["mask"] = 0x100, 0x100
            self.ipr.link("set", index=br["index"], **spec)
        return br

    def ensure_gateway(self, bridge: str, idx: int, gw: ipaddress.IPv4Interface, force: bool) -> None:
        fam = socket.AF_INET if gw.version == 4 else socket.AF_INET6
        have = [a for a in self.addresses(idx, fam) if not a.ip.is_link_local]
        if gw in have:
            return
        others = [a for a in have if a.network.overlaps(gw.network) or gw.version == 4]
        if others:
            if not force:
                raise ConfigError(f'"{bridge}" already has an IP address different from {gw}',
                                  f"it has {', '.join(map(str, others))}; set forceAddress to replace it")
            for a in others:
                self._ignore(errno.EADDRNOTAVAIL, "addr", "del", index=idx, address=str(a.ip),
                             prefixlen=a.network.prefixlen)
        self._ignore(errno.EEXIST, "addr", "add", index=idx, address=str(gw.ip),
                     prefixlen=gw.network.prefixlen)

    def refuse_overlap(self, subnet: ipaddress.IPv4Network, bridge: str) -> None:
        """A subnet that a route through another interface already covers would be a black hole.
        Routes via our own bridge are compared by name: a concurrent ADD may have just made it."""
        fam = socket.AF_INET if subnet.version == 4 else socket.AF_INET6
        for r in self.routes(fam):
            if r["dst"].prefixlen == 0 or r["oif"] is None or not r["dst"].overlaps(subnet):
                continue
            try:
                dev = self.get(r["oif"]).get_attr("IFLA_IFNAME")
            except self.NetlinkError:
                continue  # the interface went away meanwhile
            if dev != bridge:
                raise ConfigError(f"subnet {subnet} overlaps route {r['dst']} via {dev}",
                                  "choose another subnet for this network (ipam.ranges)")

    # --- veth ---------------------------------------------------------------------------------
    def create_veth(self, host: str, peer: str, netns_fd: int, mtu: int, mac: str = "") -> dict:
        peer_spec = {"ifname": peer, "net_ns_fd": netns_fd, "mtu": mtu}
        if mac:
            peer_spec["address"] = mac
        try:
            self.ipr.link("add", ifname=host, kind="veth", mtu=mtu, peer=peer_spec)
        except self.NetlinkError as e:
            if e.code == errno.EEXIST:  # the host name was cleared before, so it is the peer
                raise ConfigError(f"interface {peer} already exists in the container's netns") from None
            raise SetupError(f"create veth {host}<->{peer}: {e.args[-1]}") from None
        hv = self.lookup(host)
        if hv is None:
            raise SetupError(f"veth {host} vanished right after it was created")
        return hv

    def attach(self, idx: int, bridge_idx: int, hairpin: bool) -> None:
        self.ipr.link("set", index=idx, master=bridge_idx)
        if hairpin:
            self.ipr.brport("set", index=idx, mode=1)  # before up: no frame sees it off
        self.ipr.link("set", index=idx, state="up")

    def delete(self, name: str) -> bool:
        idx = self.index(name)
        if idx is None:
            return False
        try:
            self.ipr.link("del", index=idx)
        except self.NetlinkError as e:
            if e.code != errno.ENODEV:
                raise SetupError(f"delete {name}: {e.args[-1]}") from None
        return True

    # --- container side -----------------------------------------------------------------------
    def configure(self, idx: int, addrs: list, routes: list[tuple[str, str]]) -> None:
        for a in addrs:
            self._ignore(errno.EEXIST, "addr", "add", index=idx, address=str(a.ip),
                         prefixlen=a.network.prefixlen)
        self.ipr.link("set", index=idx, state="up")
        for dst, gw in routes:
            spec = {"dst": dst, "oif": idx}
            if gw:
                spec["gateway"] = gw
            try:
                self.ipr.route("add", **spec)
            except self.NetlinkError as e:
                if e.code != errno.EEXIST:
                    raise SetupError(f"add route {dst} via {gw or 'link'}: {e.args[-1]}") from None

    def _ignore(self, code: int, what: str, *args, **kw) -> None:
        try:
            getattr(self.ipr, what)(*args, **kw)
        except self.NetlinkError as e:
            if e.code != code:
                raise SetupError(f"{what} {args[0]} {kw.get('address', '')}: {e.args[-1]}") from None


def _info(msg) -> dict:
    info = msg.get_attr("IFLA_LINKINFO")
    return {
        "index": msg["index"],
        "name": msg.get_attr("IFLA_IFNAME"),
        "mac": msg.get_attr("IFLA_ADDRESS"),
        "mtu": msg.get_attr("IFLA_MTU"),
        "master": msg.get_attr("IFLA_MASTER"),
        "up": bool(msg["flags"] & 1),
        "kind": info.get_attr("IFLA_INFO_KIND") if info else "",
        "promisc": bool(msg["flags"] & 0x100),
    }


def refuse_non_bridge(name: str, link: dict) -> None:
    if link["kind"] != "bridge":
        raise ConfigError(f'"{name}" already exists but is not a bridge (it is a {link["kind"] or "device"})',
                          'choose another "bridge" name in the network config')
