"""nf_tables messages for netplug's own table, encoded with struct instead of through libnftables.

libnftables parses each command, fetches its cache from the kernel and evaluates the batch before
sending it: ~0.9 ms for the chain and four rules of one container here, of which the kernel's own
work is ~0.1 ms. The rule shapes netplug writes are few and fixed (model.Rule), so they are
encoded here directly, expression for expression as `nft --debug=netlink` shows nft encoding
`to_nft(rule)`; `nft list` then prints the same rule whichever way it was written (a namespace
test compares the two). `rule()` returns None for anything it does not know, and the caller
sends libnftables the text instead.

Layouts: <linux/netfilter/nfnetlink.h>, <linux/netfilter/nf_tables.h>. nf_tables attributes are
big-endian, except the data compared against host-order keys (mark, ct state, fib type).
"""

import _socket
import struct
from functools import lru_cache

from ..netlink.rtnl import NLA_F_NESTED, attr, attr_list, attr_str, attrs, cstr
from .model import Rule

NFNL_SUBSYS_NFTABLES = 10
BATCH_BEGIN, BATCH_END = 0x10, 0x11
NEWTABLE, GETTABLE, DELTABLE, NEWCHAIN, GETCHAIN, DELCHAIN, NEWRULE, GETRULE, DELRULE = range(9)
F_CREATE, F_APPEND = 0x400, 0x800
F_ECHO = 0x8  # the kernel sends the new object back, with its handle
NEWRULE_TYPE = (NFNL_SUBSYS_NFTABLES << 8) | NEWRULE
FAMILIES = {"ip": 2, "ip6": 10, "inet": 1}  # NFPROTO_*; netplug's own NAT table is "ip"

# hooks of the base chains: table type, NF_INET_* hook number, priority
HOOKS = {
    ("nat", "PREROUTING"): ("nat", 0, -100),
    ("nat", "OUTPUT"): ("nat", 3, -100),
    ("nat", "POSTROUTING"): ("nat", 4, 100),
    ("filter", "FORWARD"): ("filter", 2, 0),
    ("filter", "INPUT"): ("filter", 1, 0),
}
HOOK_NAMES = {0: "prerouting", 1: "input", 2: "forward", 3: "output", 4: "postrouting"}
NF_DROP, NF_ACCEPT, NFT_JUMP, NFT_GOTO, NFT_RETURN = 0, 1, -3, -4, -5
VERDICTS = {"ACCEPT": NF_ACCEPT, "DROP": NF_DROP, "RETURN": NFT_RETURN}
REG_VERDICT, REG_1, REG_2 = 0, 1, 2
CMP_EQ, CMP_NEQ = 0, 1
NETWORK_HEADER, TRANSPORT_HEADER = 1, 2
META_MARK, META_IIFNAME, META_OIFNAME, META_L4PROTO = 3, 6, 7, 16
CT_STATE, CT_STATUS = 0, 2
CT_STATE_BITS = {"INVALID": 1, "ESTABLISHED": 2, "RELATED": 4, "NEW": 8, "UNTRACKED": 64}
IPS_DST_NAT = 0x20
PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132}
RTN_LOCAL = 2
FIB_RESULT_ADDRTYPE, FIB_F_DADDR = 3, 2
NAT_DNAT, NAT_RANGE_PROTO_SPECIFIED = 1, 2
UDATA_RULE_COMMENT = 0


def _be32(kind: int, v: int) -> bytes:
    return attr(kind, struct.pack("!i" if v < 0 else "!I", v))


def _nest(kind: int, *parts: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(parts))


def _value(kind: int, data: bytes) -> bytes:
    return _nest(kind, attr(1, data))  # NFTA_DATA_VALUE


def _header(family: str) -> bytes:
    return struct.pack("=BBH", FAMILIES[family], 0, 0)  # nfgenmsg, version 0, res_id 0


def _msg(kind: int, flags: int, family: str, *attrs: bytes) -> tuple[int, int, bytes]:
    return (NFNL_SUBSYS_NFTABLES << 8) | kind, flags, _header(family) + b"".join(attrs)


def batch_begin(genid: int | None = None) -> tuple[int, int, bytes]:
    """With `genid`, the kernel refuses the whole batch (ERESTART) if the ruleset's generation
    is no longer that one: what was read at `genid` is still true when the batch applies."""
    body = struct.pack("=BB", 0, 0) + struct.pack("!H", NFNL_SUBSYS_NFTABLES)
    if genid is not None:
        body += attr(NFNL_BATCH_GENID, struct.pack("!I", genid))
    return BATCH_BEGIN, 0, body


NFNL_BATCH_GENID, GETGEN, NFTA_GEN_ID = 1, 16, 1


def get_gen():
    """GETGEN: the ruleset's generation, which every nf_tables commit in the netns advances by
    one. (type, body)."""
    return (NFNL_SUBSYS_NFTABLES << 8) | GETGEN, struct.pack("=BB", 0, 0) + struct.pack("!H", 0)


def parse_gen(body: bytes) -> int:
    return struct.unpack("!I", attrs(body, 4)[NFTA_GEN_ID])[0]


def batch_end() -> tuple[int, int, bytes]:
    return BATCH_END, 0, struct.pack("=BB", 0, 0) + struct.pack("!H", NFNL_SUBSYS_NFTABLES)


# --- tables and chains (remembered: every ADD sends the same ones again) -------------------------

@lru_cache(maxsize=1024)
def add_table(family: str, table: str):
    return _msg(NEWTABLE, F_CREATE, family, attr_str(1, table))  # NFTA_TABLE_NAME


@lru_cache(maxsize=1024)
def delete_table(family: str, table: str):
    return _msg(DELTABLE, 0, family, attr_str(1, table))


@lru_cache(maxsize=1024)
def add_chain(family: str, table: str, chain: str, hook: tuple[str, int, int] | None = None):
    """`hook`: (type, hook number, priority) for a base chain; its policy is accept."""
    a = [attr_str(1, table), attr_str(3, chain)]  # NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME
    if hook:
        ctype, num, prio = hook
        a += [_nest(4, _be32(1, num), _be32(2, prio)),  # NFTA_CHAIN_HOOK{HOOKNUM, PRIORITY}
              _be32(5, NF_ACCEPT),  # NFTA_CHAIN_POLICY
              attr_str(7, ctype)]  # NFTA_CHAIN_TYPE
    return _msg(NEWCHAIN, F_CREATE, family, *a)


@lru_cache(maxsize=1024)
def flush_chain(family: str, table: str, chain: str):
    return _msg(DELRULE, 0, family, attr_str(1, table), attr_str(2, chain))  # no handle: all rules


@lru_cache(maxsize=1024)
def delete_chain(family: str, table: str, chain: str):
    return _msg(DELCHAIN, 0, family, attr_str(1, table), attr_str(3, chain))


def delete_rule(family: str, table: str, chain: str, handle: int):
    return _msg(DELRULE, 0, family, attr_str(1, table), attr_str(2, chain),
                attr(3, struct.pack("!Q", handle)))  # NFTA_RULE_HANDLE


# --- expressions -------------------------------------------------------------------------------

def _expr(name: str, *data: bytes) -> bytes:
    return _nest(1, attr_str(1, name), _nest(2, *data))  # NFTA_LIST_ELEM{NAME, DATA}


@lru_cache(maxsize=1024)  # a handful of shapes and values recur in every rule
def _cmp(op: int, data: bytes) -> bytes:
    return _expr("cmp", _be32(1, REG_1), _be32(2, op), _value(3, data))


@lru_cache(maxsize=1024)
def _bitwise(mask: bytes, xor: bytes) -> bytes:
    return _expr("bitwise", _be32(1, REG_1), _be32(2, REG_1), _be32(3, len(mask)),
                 _value(4, mask), _value(5, xor))


@lru_cache(maxsize=1024)
def _payload(base: int, offset: int, length: int) -> bytes:
    return _expr("payload", _be32(1, REG_1), _be32(2, base), _be32(3, offset), _be32(4, length))


@lru_cache(maxsize=1024)
def _meta(key: int) -> bytes:
    return _expr("meta", _be32(1, REG_1), _be32(2, key))


@lru_cache(maxsize=1024)
def _ct(key: int) -> bytes:
    return _expr("ct", _be32(1, REG_1), _be32(2, key))


def _host32(v: int) -> bytes:
    return struct.pack("=I", v)


@lru_cache(maxsize=1024)
def _verdict(code: int, chain: str = "") -> bytes:
    v = _be32(1, code) + (attr_str(2, chain) if chain else b"")  # NFTA_VERDICT_CODE, _CHAIN
    return _expr("immediate", _be32(1, REG_VERDICT), _nest(2, _nest(2, v)))  # DATA{VERDICT{..}}


def _address(offset: int, cidr: str, negate: bool) -> list[bytes] | None:
    """ip saddr/daddr [!=] a.b.c.d[/len]: nft loads only the bytes of a whole-byte prefix, and
    masks all four for any other."""
    addr, _, plen = cidr.partition("/")
    try:
        raw = _socket.inet_pton(_socket.AF_INET, addr)
        n = int(plen) if plen else 32
    except (OSError, ValueError):
        return None
    if not 0 < n <= 32:
        return None
    mask = ((0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF).to_bytes(4, "big")
    value = bytes(a & m for a, m in zip(raw, mask))
    op = CMP_NEQ if negate else CMP_EQ
    if n % 8:
        return [_payload(NETWORK_HEADER, offset, 4), _bitwise(mask, bytes(4)), _cmp(op, value)]
    return [_payload(NETWORK_HEADER, offset, n // 8), _cmp(op, value[:n // 8])]


def _ifname(key: int, name: str, negate: bool) -> list[bytes] | None:
    data = name.encode()
    if not data or len(data) > 15 or any(c in name for c in '+*"\\'):
        return None  # wildcards and quoting are nft's to encode
    return [_meta(key), _cmp(CMP_NEQ if negate else CMP_EQ, data.ljust(16, b"\0"))]


def _mark_match(mark: str) -> list[bytes] | None:
    value, _, mask = mark.partition("/")
    if not mask:
        return None
    try:
        v, m = int(value, 0), int(mask, 0)
    except ValueError:
        return None
    return [_meta(META_MARK), _bitwise(_host32(m), _host32(0)), _cmp(CMP_EQ, _host32(v))]


def _matches(r: Rule) -> list[bytes] | None:
    """Everything before the conntrack part, in to_nft's order."""
    out: list[bytes] = []
    for cidr, negate, offset in ((r.src, r.src_not, 12), (r.dst, r.dst_not, 16)):
        if cidr:
            got = _address(offset, cidr, negate)
            if got is None:
                return None
            out += got
    for name, negate, key in ((r.iif, r.iif_not, META_IIFNAME), (r.oif, r.oif_not, META_OIFNAME)):
        if name:
            got = _ifname(key, name, negate)
            if got is None:
                return None
            out += got
    if r.proto:
        if r.proto not in PROTOCOLS or not 0 <= r.dport < 65536:
            return None
        out += [_meta(META_L4PROTO), _cmp(CMP_EQ, bytes([PROTOCOLS[r.proto]]))]
        if r.dport:
            out += [_payload(TRANSPORT_HEADER, 2, 2), _cmp(CMP_EQ, struct.pack("!H", r.dport))]
    if r.dst_local:
        out += [_expr("fib", _be32(1, REG_1), _be32(2, FIB_RESULT_ADDRTYPE), _be32(3, FIB_F_DADDR)),
                _cmp(CMP_EQ, _host32(RTN_LOCAL))]
    if r.mark:
        got = _mark_match(r.mark)
        if got is None:
            return None
        out += got
    return out


def _action(r: Rule) -> list[bytes] | None:
    if r.target == "MASQUERADE":
        return [_expr("masq")]
    if r.target in VERDICTS:
        return [_verdict(VERDICTS[r.target])]
    if r.target == "DNAT":
        addr, _, port = r.to.partition(":")
        try:
            ip = _socket.inet_pton(_socket.AF_INET, addr)
            p = int(port) if port else 0
        except (OSError, ValueError):
            return None
        if port and not 0 < p < 65536:
            return None
        out = [_expr("immediate", _be32(1, REG_1), _value(2, ip))]
        nat = [_be32(1, NAT_DNAT), _be32(2, FAMILIES["ip"]), _be32(3, REG_1)]
        if port:
            out.append(_expr("immediate", _be32(1, REG_2), _value(2, struct.pack("!H", p))))
            nat += [_be32(5, REG_2), _be32(7, NAT_RANGE_PROTO_SPECIFIED)]
        return out + [_expr("nat", *nat)]
    if r.target == "MARK":  # meta mark set meta mark | value
        value = r.set_mark.partition("/")[0]
        try:
            v = int(value, 0)
        except ValueError:
            return None
        return [_meta(META_MARK), _bitwise(_host32(~v & 0xFFFFFFFF), _host32(v)),
                _expr("meta", _be32(2, META_MARK), _be32(3, REG_1))]  # KEY, SREG: a set
    if r.target.startswith("-") or not r.target or len(r.target) > 255:
        return None
    return [_verdict(NFT_JUMP, r.target)]


def _conntrack(r: Rule) -> list[list[bytes]] | None:
    """The conntrack part of each statement to_nft makes of the rule (one unless it ORs flags
    with DNAT status)."""
    if not r.ctstate:
        return [[]]
    states = r.ctstate.split(",")
    bits = [CT_STATE_BITS[s] for s in states if s in CT_STATE_BITS]
    if len(bits) + ("DNAT" in states) != len(states):
        return None
    dnat = "DNAT" in states
    status = [_ct(CT_STATUS), _bitwise(_host32(IPS_DST_NAT), _host32(0))]
    if r.ctstate_not:  # ct state != a ct state != b [ct status & dnat == 0]
        part = [e for b in bits for e in (_ct(CT_STATE), _cmp(CMP_NEQ, _host32(b)))]
        if dnat:
            part += status + [_cmp(CMP_EQ, _host32(0))]
        return [part]
    out = []
    if bits:  # ct state a,b: any of the flags
        mask = 0
        for b in bits:
            mask |= b
        out.append([_ct(CT_STATE), _bitwise(_host32(mask), _host32(0)), _cmp(CMP_NEQ, _host32(0))])
    if dnat:
        out.append(status + [_cmp(CMP_NEQ, _host32(0))])
    return out


_encoded: dict = {}
_MISS = object()


def rule(family: str, table: str, r: Rule) -> tuple[tuple[int, int, bytes], ...] | None:
    """NEWRULE messages for `r`, one per statement of to_nft(r) and in its order; None if this
    module does not encode the rule's shape. Remembered: in netplugd every ADD re-sends the same
    shared rules, and encoding one costs ~40 us."""
    key = (family, table, r)
    got = _encoded.get(key, _MISS)
    if got is _MISS:
        got = _encode_rule(family, table, r)
        if len(_encoded) >= 512:
            _encoded.clear()  # bounded; the shared rules come back with the next ADD
        _encoded[key] = got
    return got


def _encode_rule(family: str, table: str, r: Rule):
    matches, action, conntrack = _matches(r), _action(r), _conntrack(r)
    if matches is None or action is None or conntrack is None:
        return None
    udata = b""
    if r.comment:
        c = r.comment.encode()
        if len(c) > 128 or '"' in r.comment:
            return None
        udata = attr(7, bytes([UDATA_RULE_COMMENT, len(c) + 1]) + c + b"\0")  # NFTA_RULE_USERDATA
    out = []
    for ct in conntrack:
        exprs = _nest(4, *(matches + ct + action))  # NFTA_RULE_EXPRESSIONS
        out.append(_msg(NEWRULE, F_CREATE | F_APPEND, family, attr_str(1, table), attr_str(2, r.chain),
                        exprs, udata))
    return tuple(out)


# --- reading -------------------------------------------------------------------------------------

def get_table(family: str, table: str):
    """GETTABLE for one table (ENOENT when it is missing): (type, body)."""
    mtype, _, body = _msg(GETTABLE, 0, family, attr_str(1, table))
    return mtype, body


def get_chain(family: str, table: str, chain: str):
    """GETCHAIN for one chain (ENOENT when it is missing): (type, body)."""
    mtype, _, body = _msg(GETCHAIN, 0, family, attr_str(1, table), attr_str(3, chain))
    return mtype, body


def dump_rules(family: str, table: str, chain: str):
    """A GETRULE dump the kernel filters to one chain: (type, body)."""
    mtype, _, body = _msg(GETRULE, 0, family, attr_str(1, table), attr_str(2, chain))
    return mtype, body


def echoed_rule(body: bytes) -> tuple[str, int, str]:
    """(chain, handle, comment) of a NEWRULE the kernel echoed back after a commit."""
    a = attrs(body, 4)
    handle, comment, _ = _rule_fields(a)
    return cstr(a.get(2)), handle, comment  # NFTA_RULE_CHAIN


def parse_rule(body: bytes) -> tuple[int, str, str]:
    """(handle, comment, jump or goto target) of a NEWRULE message from a dump."""
    return _rule_fields(attrs(body, 4))  # after the nfgenmsg


def _rule_fields(a: dict[int, bytes]) -> tuple[int, str, str]:
    handle = struct.unpack("!Q", a[3])[0] if 3 in a else 0  # NFTA_RULE_HANDLE
    comment = ""
    udata = a.get(7, b"")  # NFTA_RULE_USERDATA: type, length, value TLVs
    i = 0
    while i + 2 <= len(udata):
        kind, n = udata[i], udata[i + 1]
        if kind == UDATA_RULE_COMMENT:
            comment = udata[i + 2:i + 2 + n].split(b"\0", 1)[0].decode(errors="replace")
        i += 2 + n
    target = ""
    for _, elem in attr_list(a.get(4, b"")):  # NFTA_RULE_EXPRESSIONS
        e = attrs(elem)
        if cstr(e.get(1)) != "immediate":
            continue
        verdict = attrs(attrs(attrs(e.get(2, b"")).get(2, b"")).get(2, b""))  # DATA{DATA{VERDICT}}
        if 1 in verdict and struct.unpack("!i", verdict[1])[0] in (NFT_JUMP, NFT_GOTO):
            target = cstr(verdict.get(2))
    return handle, comment, target
