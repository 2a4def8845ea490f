"""netplug-ipam operations on the disk store (run in-process or as the netplug-ipam binary)."""

from ..cni.config import IPAMConf, NetConf
from ..cni.result import IPConfig, Result, Route
from ..errors import ConfigError, UnavailableError
from . import allocator
from .store import DiskStore


def _conf(nc: NetConf) -> IPAMConf:
    if nc.ipam is None or not nc.ipam.ranges:
        raise ConfigError("ipam needs 'ranges' or 'subnet'", "e.g. \"ipam\": {\"type\": \"netplug-ipam\", "
                          "\"ranges\": [[{\"subnet\": \"172.17.0.0/16\"}]]}")
    return nc.ipam


def store_for(nc: NetConf) -> DiskStore:
    return DiskStore(_conf(nc).data_dir, nc.name)


def add(nc: NetConf, cid: str, ifname: str, undo_log: list | None = None,
        check_duplicate: bool = True) -> Result:
    ipam = _conf(nc)
    store = store_for(nc)
    with store.locked():
        before = {i: store.last_reserved(i) for i in range(len(ipam.ranges))}
        got = allocator.allocate(store, ipam.ranges, cid, ifname, nc.requested_ips, check_duplicate, before)
        if undo_log is not None:
            undo_log.append((before, {i: ip for i, (ip, _) in enumerate(got)}))
    res = Result()
    for ip, r in got:
        res.ips.append(IPConfig(_iface(ip, r), str(r.gateway)))
    res.routes = [Route(str(rt.dst), str(rt.gw) if rt.gw else "") for rt in ipam.routes]
    if ipam.resolv_conf:
        res.dns = parse_resolv_conf(ipam.resolv_conf)
    return res


def _iface(ip, r):
    import ipaddress

    return ipaddress.ip_interface(f"{ip}/{r.subnet.prefixlen}")


def delete(nc: NetConf, cid: str, ifname: str, hint: list | None = None) -> list:
    store = store_for(nc)
    with store.locked():
        return store.release_owner(cid, ifname, hint or [])


def rollback(nc: NetConf, cid: str, ifname: str, before: dict, mine: dict) -> None:
    """Undo an ADD exactly: release, and put back the round-robin cursor unless another
    allocation moved it since."""
    store = store_for(nc)
    with store.locked():
        store.release_owner(cid, ifname)
        for idx, ip in mine.items():
            if store.last_reserved(idx) == ip:
                store.set_last_reserved(idx, before.get(idx))


def check(nc: NetConf, cid: str, ifname: str, hint: list | None = None) -> None:
    """`hint`: the addresses the ADD recorded; only those are read (the store otherwise is)."""
    store = store_for(nc)
    for ip in hint or ():
        if not store.holds(ip, cid, ifname):
            raise ConfigError(f"IPAM: address {ip} is no longer reserved for container {cid} "
                              f"interface {ifname} in {store.dir}")
    if not hint and not store.ips_of(cid, ifname):
        raise ConfigError(f"IPAM: no address is reserved for container {cid} interface {ifname} "
                          f"in {store.dir}")


def gc(nc: NetConf, valid: set[tuple[str, str]]) -> list:
    store = store_for(nc)
    released = []
    with store.locked():
        store.remove_temp_files()
        for ip, (cid, ifname) in store.entries().items():
            if (cid, ifname) in valid or (ifname == "" and any(c == cid for c, _ in valid)):
                continue
            store.release(ip)
            released.append(ip)
    return released


def status(nc: NetConf) -> None:
    ipam = _conf(nc)
    store = store_for(nc)
    taken = store.entries()
    for rset in ipam.ranges:
        if not any(ip not in taken for ip in allocator.iterate(rset, None)):
            raise UnavailableError(f"no IP addresses available in range set: "
                                   f"{','.join(r.text() for r in rset)}")


def parse_resolv_conf(path: str) -> dict:
    dns: dict = {}
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ConfigError(f"ipam.resolvConf {path}: {e.strerror}") from None
    for line in lines:
        parts = line.split()
        if not parts or parts[0].startswith(("#", ";")):
            continue
        k, vals = parts[0], parts[1:]
        if k == "nameserver":
            dns.setdefault("nameservers", []).extend(vals)
        elif k == "domain" and vals:
            dns["domain"] = vals[0]
        elif k == "search":
            dns["search"] = vals
        elif k == "options":
            dns.setdefault("options", []).extend(vals)
    return dns
