"""A small rtnetlink client on the standard library, for the CNI hot path only.

Every container start execs the plugin, and importing pyroute2's IPRoute costs ~120-200 ms here
(its message classes alone ~60 ms) against ~1 ms for this module. The ADD/CHECK/DEL verbs need a
dozen message shapes (links, addresses, routes), so they are encoded here with `struct`;
pyroute2 stays the library for everything else (labs, kube-routes, explain, conntrack, tests).

A socket acts in the network namespace of the thread that opened it (see ns.entered).
Layouts follow <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_link.h>, <linux/veth.h>.
"""

import _socket
import os
import struct

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10  # errors do not echo our request back
NETLINK_EXT_ACK = 11  # errors carry the kernel's text ("Error: ...")
NETLINK_GET_STRICT_CHK = 12  # dumps honour the request's filters (an address dump: one device)

# message types
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
RTM_GETNETCONF = 82

# flags
F_REQUEST, F_MULTI, F_ACK, F_DUMP = 0x1, 0x2, 0x4, 0x300
F_ECHO, F_EXCL, F_CREATE = 0x8, 0x200, 0x400
F_ACK_TLVS = 0x200  # on NLMSG_ERROR: extended-ack attributes follow
NLA_F_NESTED = 0x8000
NLMSGERR_ATTR_MSG = 1

# attributes
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER = 1, 3, 4, 5, 10
IFLA_LINKINFO, IFLA_AF_SPEC, IFLA_NET_NS_FD, IFLA_EXT_MASK = 18, 26, 28, 29
IFLA_INET_CONF = 1  # in IFLA_AF_SPEC/AF_INET: the device's IPv4 sysctls, u32 each from index 1
IPV4_DEVCONF_ROUTE_LOCALNET = 26
NETCONFA_IFINDEX, NETCONFA_FORWARDING, NETCONFA_IFINDEX_ALL = 1, 2, -1
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA = 1, 2, 4, 5
VETH_INFO_PEER = 1
IFLA_BRPORT_MODE = 4  # hairpin
RTEXT_FILTER_SKIP_STATS = 1 << 3
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15

AF_INET, AF_INET6 = 2, 10
IFF_UP, IFF_PROMISC = 0x1, 0x100
RT_TABLE_MAIN = 254
RTPROT_STATIC = 4
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
RTN_UNICAST = 1

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")
_IFADDR = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_NLA = struct.Struct("=HH")


class NetlinkError(OSError):
    """A kernel refusal: `code` is the errno, `text` the kernel's extended-ack message if any."""

    index: int | None = None  # in a batch: which message was refused

    def __init__(self, code: int, text: str = ""):
        self.code = code
        self.text = text
        super().__init__(code, text or os.strerror(code))


# --- encoding -------------------------------------------------------------------------------------

def _align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    n = _NLA.size + len(payload)
    return _NLA.pack(n, kind) + payload + b"\0" * (_align(n) - n)


def attr_u32(kind: int, v: int) -> bytes:
    return attr(kind, struct.pack("=I", v))


def attr_str(kind: int, s: str) -> bytes:
    return attr(kind, s.encode() + b"\0")


def nested(kind: int, *parts: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(parts))


def ifinfo(index: int = 0, flags: int = 0, change: int = 0, family: int = 0) -> bytes:
    return _IFINFO.pack(family, 0, index, flags, change)


def mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


def mac_str(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def random_mac() -> str:
    """Unicast and locally administered, as the kernel's eth_random_addr()."""
    b = bytearray(os.urandom(6))
    b[0] = (b[0] & 0xFE) | 0x02
    return mac_str(b)


# --- decoding -------------------------------------------------------------------------------------

def attrs(buf: bytes, off: int = 0, end: int | None = None) -> dict[int, bytes]:
    """type -> payload of the attributes in buf[off:end] (the nested flag stripped)."""
    end = len(buf) if end is None else end
    out = {}
    while off + 4 <= end:
        n, kind = _NLA.unpack_from(buf, off)
        if n < 4:
            break
        out[kind & 0x3FFF] = buf[off + 4:off + n]
        off += _align(n)
    return out


def attr_list(buf: bytes, off: int = 0) -> list[tuple[int, bytes]]:
    """(type, payload) of each attribute in order: for lists whose items share one type."""
    out = []
    while off + 4 <= len(buf):
        n, kind = _NLA.unpack_from(buf, off)
        if n < 4:
            break
        out.append((kind & 0x3FFF, buf[off + 4:off + n]))
        off += _align(n)
    return out


def u32(b: bytes | None) -> int | None:
    return struct.unpack("=I", b[:4])[0] if b else None


def cstr(b: bytes | None) -> str:
    return b.split(b"\0", 1)[0].decode() if b else ""


def ip_str(family: int, b: bytes | None) -> str | None:
    if not b:
        return None
    return _socket.inet_ntop(family, b)


def ip_bytes(family: int, s: str) -> bytes:
    return _socket.inet_pton(family, s)


def parse_link(body: bytes) -> dict:
    _family, _type, index, flags, _change = _IFINFO.unpack_from(body)
    a = attrs(body, _IFINFO.size)
    kind = ""
    if IFLA_LINKINFO in a:
        kind = cstr(attrs(a[IFLA_LINKINFO]).get(IFLA_INFO_KIND))
    return {"index": index, "name": cstr(a.get(IFLA_IFNAME)),
            "mac": mac_str(a[IFLA_ADDRESS]) if IFLA_ADDRESS in a else "",
            "mtu": u32(a.get(IFLA_MTU)), "master": u32(a.get(IFLA_MASTER)),
            "link": u32(a.get(IFLA_LINK)),  # a veth's peer index (in the peer's netns)
            "up": bool(flags & IFF_UP), "kind": kind, "promisc": bool(flags & IFF_PROMISC),
            "route_localnet": _ipv4_conf(a.get(IFLA_AF_SPEC), IPV4_DEVCONF_ROUTE_LOCALNET)}


def _ipv4_conf(af_spec: bytes | None, key: int) -> int | None:
    """One of the device's IPv4 sysctls as the link message carries them (None if it does not):
    the same value as /proc/sys/net/ipv4/conf/<dev>/..., without a path lookup there."""
    conf = attrs(attrs(af_spec).get(AF_INET, b"")).get(IFLA_INET_CONF) if af_spec else None
    if not conf or len(conf) < 4 * key:
        return None
    return struct.unpack_from("=I", conf, 4 * (key - 1))[0]


def parse_netconf(body: bytes) -> dict:
    a = attrs(body, 4)  # struct netconfmsg: the family, padded to 4
    return {"forwarding": u32(a[NETCONFA_FORWARDING]) if NETCONFA_FORWARDING in a else None}


def parse_addr(body: bytes) -> dict:
    family, prefixlen, _flags, scope, index = _IFADDR.unpack_from(body)
    a = attrs(body, _IFADDR.size)
    local = a.get(IFA_LOCAL) or a.get(IFA_ADDRESS)
    return {"family": family, "prefixlen": prefixlen, "scope": scope, "index": index,
            "address": ip_str(family, local)}


def addrs_of(bodies: list[bytes], family: int, index: int = 0) -> list[dict]:
    """The addresses of one family (and interface, if given) among RTM_NEWADDR bodies."""
    got = [parse_addr(b) for b in bodies]
    return [a for a in got if a["family"] == family and (not index or a["index"] == index)]


def parse_route(body: bytes) -> dict:
    family, dst_len, _src, _tos, table, proto, scope, rtype, _flags = _RTMSG.unpack_from(body)
    a = attrs(body, _RTMSG.size)
    return {"family": family, "dst_len": dst_len, "table": u32(a.get(RTA_TABLE)) or table,
            "proto": proto, "scope": scope, "type": rtype, "dst": ip_str(family, a.get(RTA_DST)),
            "gateway": ip_str(family, a.get(RTA_GATEWAY)), "oif": u32(a.get(RTA_OIF))}


# --- the socket -----------------------------------------------------------------------------------

def _error_of(flags: int, body: bytes) -> NetlinkError | None:
    """The refusal an NLMSG_ERROR carries, None for an ACK."""
    code = -struct.unpack_from("=i", body)[0]
    if not code:
        return None
    text = ""
    if flags & F_ACK_TLVS:  # with CAP_ACK only the request's header is echoed
        text = cstr(attrs(body, 4 + _NLMSGHDR.size).get(NLMSGERR_ATTR_MSG))
    return NetlinkError(code, text)


class Rtnl:
    """One NETLINK_ROUTE socket (or another netlink family's, e.g. NETLINK_NETFILTER), requests
    answered one at a time (no multicast groups joined)."""

    def __init__(self, protocol: int = NETLINK_ROUTE):
        self.sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC,
                                   protocol)
        opts = (NETLINK_CAP_ACK, NETLINK_EXT_ACK) + ((NETLINK_GET_STRICT_CHK,) if protocol == NETLINK_ROUTE else ())
        for opt in opts:
            try:
                self.sock.setsockopt(SOL_NETLINK, opt, 1)
            except OSError:
                pass  # older kernels: plain errno without text, unfiltered dumps
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _send(self, mtype: int, flags: int, body: bytes) -> int:
        self.seq += 1
        self.sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), mtype, flags | F_REQUEST, self.seq, 0) + body)
        return self.seq

    def _received(self):
        """(type, flags, seq, body) of each message in the next datagram."""
        data = self.sock.recv(1 << 16)
        off = 0
        while off + _NLMSGHDR.size <= len(data):
            n, mtype, flags, mseq, _pid = _NLMSGHDR.unpack_from(data, off)
            if n < _NLMSGHDR.size:
                return
            yield mtype, flags, mseq, data[off + _NLMSGHDR.size:off + n]
            off += _align(n)

    def _replies(self, seq: int):
        """Yield (type, body) of the replies to `seq` until its ACK, error or end of dump."""
        while True:
            for mtype, flags, mseq, body in self._received():
                if mseq != seq:
                    continue  # a late reply to an earlier request we gave up on
                if mtype == NLMSG_DONE:
                    return
                if mtype == NLMSG_ERROR:
                    err = _error_of(flags, body)
                    if err:
                        raise err
                    return
                yield mtype, body

    def batch(self, msgs: list[tuple[int, int, bytes]], timeout: float = 10.0) -> list[tuple[int, bytes]]:
        """Send `msgs` in one datagram, as an nfnetlink transaction must arrive (the first and
        last are the batch frame), and wait for the outcome. Only the last message inside asks
        for an ACK: nfnetlink reports every refused message anyway, in order, before it, so one
        answer ends the wait instead of one per message. Raises the first refusal, with
        `.index` naming the refused message in `msgs`. Returns (type, body) of what the kernel
        echoed (messages sent with F_ECHO), in order: they arrive before the ACK."""
        first = self.seq + 1
        parts = []
        for i, (mtype, flags, body) in enumerate(msgs):
            self.seq += 1
            ack = F_ACK if i == len(msgs) - 2 else 0
            parts.append(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), mtype, flags | ack | F_REQUEST,
                                        self.seq, 0) + body)
        last = self.seq - 1
        self.sock.send(b"".join(parts))
        refused, echoed = None, []
        self.sock.settimeout(timeout)  # a kernel that drops a batch must not hang the caller
        try:
            done = False
            while not done:
                for mtype, flags, mseq, body in self._received():
                    if not first <= mseq <= self.seq:
                        continue
                    if mtype != NLMSG_ERROR:
                        echoed.append((mtype, body))
                        continue
                    err = _error_of(flags, body)
                    if err and refused is None:
                        refused = (mseq - first, err)
                    # the answer to the last message, or a refusal of the frame: nothing follows
                    done = done or mseq == last or (err is not None and mseq in (first, self.seq))
        except TimeoutError:
            raise NetlinkError(62, "no answer to a netlink batch") from None  # ETIME
        finally:
            self.sock.settimeout(None)
        if refused:
            index, err = refused
            err.index = index
            raise err
        return echoed

    def exchange(self, msgs: list[tuple[int, bytes, int]]) -> list[tuple[list[bytes], NetlinkError | None]]:
        """Several rtnetlink requests in one datagram: the kernel handles them in order and
        answers each (a refusal does not stop the ones after it). A get with F_DUMP ends with
        NLMSG_DONE, every other request asks for an ACK. Returns (replies, refusal) per request."""
        first = self.seq + 1
        parts = []
        for mtype, body, flags in msgs:
            self.seq += 1
            if not ((mtype & 3) == 2 and (flags & F_DUMP) == F_DUMP):  # RTM_GET*: type % 4 == 2
                flags |= F_ACK
            parts.append(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), mtype, flags | F_REQUEST, self.seq, 0) + body)
        self.sock.send(b"".join(parts))
        out: list = [[[], None] for _ in msgs]
        pending = set(range(len(msgs)))
        while pending:
            for mtype, flags, mseq, body in self._received():
                i = mseq - first
                if i not in pending:
                    continue  # a late reply to an earlier request we gave up on
                if mtype == NLMSG_DONE:
                    pending.discard(i)
                elif mtype == NLMSG_ERROR:
                    out[i][1] = _error_of(flags, body)
                    pending.discard(i)
                else:
                    out[i][0].append(body)
        return [(replies, err) for replies, err in out]

    def request(self, mtype: int, body: bytes, flags: int = 0) -> list[bytes]:
        """A request that must be acknowledged; returns the bodies of any replies before the ACK."""
        seq = self._send(mtype, flags | F_ACK, body)
        return [b for _, b in self._replies(seq)]

    def get(self, mtype: int, body: bytes) -> bytes:
        """A get request that is answered by exactly one message."""
        seq = self._send(mtype, 0, body)
        for _, b in self._replies(seq):
            return b  # no ACK was asked for: nothing follows the reply
        raise NetlinkError(61, "no reply")  # ENODATA

    def dump(self, mtype: int, body: bytes) -> list[bytes]:
        seq = self._send(mtype, F_DUMP, body)
        return [b for _, b in self._replies(seq)]

    # --- links --------------------------------------------------------------------------------
    def link_get(self, name: str = "", index: int = 0) -> dict:
        mtype, body, _ = link_get_msg(name, index)
        return parse_link(self.get(mtype, body))

    def link_set(self, index: int, up: bool | None = None, promisc: bool | None = None,
                 master: int | None = None, mac: str = "", mtu: int = 0) -> None:
        self.request(*link_set_msg(index, up, promisc, master, mac, mtu))

    def link_add(self, name: str, kind: str, mtu: int = 0, peer: bytes = b"", master: int = 0,
                 up: bool = False) -> dict | None:
        """Returns the new link as the kernel echoes it (index, mac, mtu; kernels >= 6.2), or
        None where the kernel does not echo."""
        return echoed_link(self.request(*link_add_msg(name, kind, mtu, peer, master, up)), name)

    def veth_add(self, name: str, peer: str, peer_netns_fd: int, mtu: int = 0, peer_mac: str = "",
                 master: int = 0, up: bool = False) -> dict | None:
        """`master` and `up` apply to this (host) end, in the same request; the peer stays down."""
        return echoed_link(self.request(*veth_msg(name, peer, peer_netns_fd, mtu, peer_mac, master, up)), name)

    def link_del(self, index: int) -> None:
        self.request(RTM_DELLINK, ifinfo(index))

    # --- addresses and routes -----------------------------------------------------------------
    def addrs(self, family: int, index: int = 0) -> list[dict]:
        mtype, body, _ = addr_dump_msg(family)
        return addrs_of(self.dump(mtype, body), family, index)

    def addr(self, add: bool, index: int, family: int, address: str, prefixlen: int) -> None:
        self.request(*addr_msg(add, index, family, address, prefixlen))

    def routes(self, family: int, table: int = RT_TABLE_MAIN) -> list[dict]:
        got = [parse_route(b) for b in self.dump(RTM_GETROUTE, _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0))]
        return [r for r in got if r["family"] == family and r["table"] == table]

    def route_add(self, family: int, dst: str, dst_len: int, oif: int, gateway: str = "") -> None:
        self.request(*route_msg(family, dst, dst_len, oif, gateway))


# --- requests as (type, body, flags), for Rtnl.request and, several at once, Rtnl.exchange ------

def link_set_msg(index: int, up: bool | None = None, promisc: bool | None = None,
                 master: int | None = None, mac: str = "", mtu: int = 0) -> tuple[int, bytes, int]:
    flags = change = 0
    if up is not None:
        change |= IFF_UP
        flags |= IFF_UP if up else 0
    if promisc is not None:
        change |= IFF_PROMISC
        flags |= IFF_PROMISC if promisc else 0
    body = ifinfo(index, flags, change)
    if master is not None:
        body += attr_u32(IFLA_MASTER, master)
    if mac:
        body += attr(IFLA_ADDRESS, mac_bytes(mac))
    if mtu:
        body += attr_u32(IFLA_MTU, mtu)
    return RTM_NEWLINK, body, 0


def addr_msg(add: bool, index: int, family: int, address: str, prefixlen: int) -> tuple[int, bytes, int]:
    raw = ip_bytes(family, address)
    body = _IFADDR.pack(family, prefixlen, 0, 0, index) + attr(IFA_LOCAL, raw) + attr(IFA_ADDRESS, raw)
    if add and family == AF_INET and prefixlen < 31:  # as `ip addr add ... brd +` and Docker do
        host_bits = (1 << (32 - prefixlen)) - 1
        brd = (int.from_bytes(raw, "big") | host_bits).to_bytes(4, "big")
        body += attr(IFA_BROADCAST, brd)
    return (RTM_NEWADDR, body, F_CREATE | F_EXCL) if add else (RTM_DELADDR, body, 0)


def route_msg(family: int, dst: str, dst_len: int, oif: int, gateway: str = "") -> tuple[int, bytes, int]:
    scope = RT_SCOPE_UNIVERSE if gateway else RT_SCOPE_LINK
    body = _RTMSG.pack(family, dst_len, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC, scope, RTN_UNICAST, 0)
    if dst_len:
        body += attr(RTA_DST, ip_bytes(family, dst))
    body += attr_u32(RTA_OIF, oif)
    if gateway:
        body += attr(RTA_GATEWAY, ip_bytes(family, gateway))
    return RTM_NEWROUTE, body, F_CREATE | F_EXCL


def link_add_msg(name: str, kind: str, mtu: int = 0, peer: bytes = b"", master: int = 0,
                 up: bool = False) -> tuple[int, bytes, int]:
    body = ifinfo(flags=IFF_UP if up else 0, change=IFF_UP if up else 0) + attr_str(IFLA_IFNAME, name)
    if mtu:
        body += attr_u32(IFLA_MTU, mtu)
    if master:
        body += attr_u32(IFLA_MASTER, master)
    info = attr_str(IFLA_INFO_KIND, kind)
    if peer:
        info += nested(IFLA_INFO_DATA, nested(VETH_INFO_PEER, peer))
    body += nested(IFLA_LINKINFO, info)
    return RTM_NEWLINK, body, F_CREATE | F_EXCL | F_ECHO


def veth_msg(name: str, peer: str, peer_netns_fd: int, mtu: int = 0, peer_mac: str = "",
             master: int = 0, up: bool = False) -> tuple[int, bytes, int]:
    p = ifinfo() + attr_str(IFLA_IFNAME, peer) + attr_u32(IFLA_NET_NS_FD, peer_netns_fd)
    if mtu:
        p += attr_u32(IFLA_MTU, mtu)
    if peer_mac:
        p += attr(IFLA_ADDRESS, mac_bytes(peer_mac))
    return link_add_msg(name, "veth", mtu, p, master, up)


def bridge_port_msg(name: str, hairpin: bool) -> tuple[int, bytes, int]:
    """A bridge port's hairpin flag, addressed by name, so it can follow the port's creation in
    the same datagram: what `ip link set dev X type bridge_slave hairpin on` sends."""
    slave = attr_str(IFLA_INFO_SLAVE_KIND, "bridge") + \
        nested(IFLA_INFO_SLAVE_DATA, attr(IFLA_BRPORT_MODE, bytes([hairpin])))
    return RTM_NEWLINK, ifinfo() + attr_str(IFLA_IFNAME, name) + nested(IFLA_LINKINFO, slave), 0


def echoed_link(replies: list[bytes], name: str) -> dict | None:
    """The link `name` among the replies to a creation with F_ECHO (None: the kernel did not echo)."""
    for reply in replies:
        link = parse_link(reply)
        if link["name"] == name:
            return link
    return None


def link_get_msg(name: str = "", index: int = 0) -> tuple[int, bytes, int]:
    body = ifinfo(index) + attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
    if name:
        body += attr_str(IFLA_IFNAME, name)
    return RTM_GETLINK, body, 0


def netconf_get_msg(family: int, index: int = NETCONFA_IFINDEX_ALL) -> tuple[int, bytes, int]:
    """The namespace's forwarding switch of a family (all = net.ipv4.ip_forward for AF_INET)."""
    return RTM_GETNETCONF, struct.pack("=B3x", family) + attr(NETCONFA_IFINDEX, struct.pack("=i", index)), 0


def addr_dump_msg(family: int, index: int = 0) -> tuple[int, bytes, int]:
    """All addresses of a family; with `index`, the kernel (strict checking on) walks only that
    device. Callers still filter by index: older kernels ignore it."""
    return RTM_GETADDR, _IFADDR.pack(family, 0, 0, 0, index), F_DUMP
