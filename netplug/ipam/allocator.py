"""Pure round-robin allocation over range sets, in the reference host-local's order.

`Store` is anything with `owner_of(ip)`, `last_reserved(idx)`, `reserve(ip, cid, ifname, idx)`,
`release_owner(cid, ifname)`. The disk store and the in-memory test store both satisfy it.
"""

import ipaddress
from collections.abc import Iterator  # not typing: an exec pays ~5 ms for it

from ..cni.config import IPAddr, Range
from ..errors import ConfigError, NetplugError, UNSUPPORTED_FIELD


class Store:  # the interface (typing.Protocol would cost every exec its import)
    def owner_of(self, ip: IPAddr) -> tuple[str, str] | None: ...
    def last_reserved(self, idx: int) -> IPAddr | None: ...
    def reserve(self, ip: IPAddr, cid: str, ifname: str, idx: int) -> bool: ...
    def release_owner(self, cid: str, ifname: str) -> list[IPAddr]: ...
    def ips_of(self, cid: str, ifname: str) -> list[IPAddr]: ...


class ExhaustedError(NetplugError):
    code = 11  # try again later: addresses free up as containers go

    def __init__(self, rset: list[Range]):
        ranges = ",".join(r.text() for r in rset)
        super().__init__(f"no IP addresses available in range set: {ranges}")


def _span(r: Range, lo: IPAddr, hi: IPAddr) -> Iterator[IPAddr]:
    ip = lo
    while ip <= hi:
        if ip != r.gateway:
            yield ip
        ip += 1


def iterate(rset: list[Range], last: IPAddr | None) -> Iterator[IPAddr]:
    """Every candidate once, starting after `last` when it lies in the set (round robin)."""
    at = next((i for i, r in enumerate(rset) if last is not None and last in r), None)
    if at is None:
        for r in rset:
            yield from _span(r, r.start, r.end)
        return
    for j in range(at, len(rset)):
        yield from _span(rset[j], last + 1 if j == at else rset[j].start, rset[j].end)
    for j in range(0, at + 1):
        yield from _span(rset[j], rset[j].start, last if j == at else rset[j].end)


def allocate(store: Store, ranges: list[list[Range]], cid: str, ifname: str,
             requested: list[IPAddr] | None = None, check_duplicate: bool = True,
             cursors: dict[int, IPAddr | None] | None = None) -> list[tuple[IPAddr, Range]]:
    """Reserve one address per range set. Caller holds the store lock. All-or-nothing.
    `check_duplicate` scans the store for an earlier reservation of (cid, ifname); the bridge
    plugin skips it because its attachment record already answers that in O(1). `cursors`:
    each range set's last_reserved, if the caller has just read them under this lock."""
    if check_duplicate and store.ips_of(cid, ifname):
        raise ConfigError(f"{store.ips_of(cid, ifname)[0]} has been allocated to {cid}, "
                          "duplicate allocation is not allowed")
    requested = list(requested or [])
    got: list[tuple[IPAddr, Range]] = []
    try:
        for idx, rset in enumerate(ranges):
            want = next((ip for ip in requested if any(ip in r for r in rset)), None)
            if want is not None:
                requested.remove(want)
                got.append((_reserve_static(store, rset, want, cid, ifname, idx), _range_of(rset, want)))
                continue
            for ip in iterate(rset, cursors[idx] if cursors is not None else store.last_reserved(idx)):
                if store.owner_of(ip) is None and store.reserve(ip, cid, ifname, idx):
                    got.append((ip, _range_of(rset, ip)))
                    break
            else:
                raise ExhaustedError(rset)
        if requested:
            raise NetplugError(f"requested IP {requested[0]} is not in any configured range",
                               code=UNSUPPORTED_FIELD)
    except BaseException:
        if got:
            store.release_owner(cid, ifname)
        raise
    return got


def _range_of(rset: list[Range], ip: IPAddr) -> Range:
    return next(r for r in rset if ip in r)


def _reserve_static(store: Store, rset, ip, cid, ifname, idx) -> IPAddr:
    r = _range_of(rset, ip)
    if ip == r.gateway:
        raise ConfigError(f"requested IP {ip} is the gateway of {r.subnet}")
    owner = store.owner_of(ip)
    if owner is not None or not store.reserve(ip, cid, ifname, idx):
        raise ConfigError(f"requested IP {ip} is already allocated to container "
                          f"{(owner or ('?',))[0]}")
    return ip


class MemoryStore:
    """In-memory Store for unit tests."""

    def __init__(self):
        self.owners: dict = {}
        self.last: dict = {}

    def owner_of(self, ip):
        return self.owners.get(ip)

    def last_reserved(self, idx):
        return self.last.get(idx)

    def reserve(self, ip, cid, ifname, idx):
        if ip in self.owners:
            return False
        self.owners[ip] = (cid, ifname)
        self.last[idx] = ip
        return True

    def release_owner(self, cid, ifname):
        gone = [ip for ip, o in self.owners.items() if o == (cid, ifname)]
        for ip in gone:
            del self.owners[ip]
        return gone

    def ips_of(self, cid, ifname):
        return [ip for ip, o in self.owners.items() if o == (cid, ifname)]


def parse_ip(name: str) -> IPAddr | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None
