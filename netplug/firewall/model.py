"""A rule as data, rendered to iptables-save syntax or nft syntax by pure functions.

Identity: every rule netplug puts in a chain it shares with others carries a comment whose
space-separated tokens name its owner (`net=<network>`, `id=<container>`, `np:<hash>`), so
teardown matches owners, never IP addresses (addresses get reused).
"""

from ..record import record


BUILTIN = {"nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
           "filter": ("INPUT", "FORWARD", "OUTPUT")}


@record(frozen=True)
class Rule:
    table: str
    chain: str
    target: str
    src: str = ""
    src_not: bool = False
    dst: str = ""
    dst_not: bool = False
    iif: str = ""
    iif_not: bool = False
    oif: str = ""
    oif_not: bool = False
    proto: str = ""
    dport: int = 0
    dst_local: bool = False
    mark: str = ""
    ctstate: str = ""
    ctstate_not: bool = False
    comment: str = ""
    to: str = ""
    set_mark: str = ""

    def tokens(self) -> frozenset[str]:
        return frozenset(self.comment.split())


def is_builtin(table: str, chain: str) -> bool:
    return chain in BUILTIN.get(table, ())


def _cidr(a: str) -> str:
    return a if "/" in a else f"{a}/32"


def save_string(value: str) -> str:
    """Quote like libxtables' xtables_save_string."""
    plain = set("_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    if value and all(c in plain for c in value):
        return value
    return '"' + "".join("\\" + c if c in "\"\\'" else c for c in value) + '"'


def to_save(r: Rule) -> str:
    """The rule body as iptables-save prints it (without '-A CHAIN')."""
    p: list[str] = []
    neg = lambda b: ["!"] if b else []  # noqa: E731
    if r.src:
        p += neg(r.src_not) + ["-s", _cidr(r.src)]
    if r.dst:
        p += neg(r.dst_not) + ["-d", _cidr(r.dst)]
    if r.iif:
        p += neg(r.iif_not) + ["-i", r.iif]
    if r.oif:
        p += neg(r.oif_not) + ["-o", r.oif]
    if r.proto:
        p += ["-p", r.proto]
        if r.dport:
            p += ["-m", r.proto, "--dport", str(r.dport)]
    if r.dst_local:
        p += ["-m", "addrtype", "--dst-type", "LOCAL"]
    if r.mark:
        p += ["-m", "mark", "--mark", r.mark]
    if r.ctstate:
        p += ["-m", "conntrack"] + neg(r.ctstate_not) + ["--ctstate", r.ctstate]
    if r.comment:
        p += ["-m", "comment", "--comment", save_string(r.comment)]
    p += ["-j", r.target]
    if r.to:
        p += ["--to-destination", r.to]
    if r.set_mark:
        p += ["--set-xmark", r.set_mark]
    return " ".join(p)


def to_nft(r: Rule) -> list[str]:
    """nft statements for the rule (more than one where nft can't OR conntrack flags)."""
    m: list[str] = []
    op = lambda b: "!= " if b else ""  # noqa: E731
    if r.src:
        m.append(f"ip saddr {op(r.src_not)}{r.src}")
    if r.dst:
        m.append(f"ip daddr {op(r.dst_not)}{r.dst}")
    if r.iif:
        m.append(f'iifname {op(r.iif_not)}"{r.iif}"')
    if r.oif:
        m.append(f'oifname {op(r.oif_not)}"{r.oif}"')
    if r.proto:
        m.append(f"{r.proto} dport {r.dport}" if r.dport else f"meta l4proto {r.proto}")
    if r.dst_local:
        m.append("fib daddr type local")
    if r.mark:
        value, _, mask = r.mark.partition("/")
        m.append(f"meta mark & {mask or '0xffffffff'} == {value}")
    verdict = {"MASQUERADE": "masquerade", "ACCEPT": "accept", "DROP": "drop",
               "RETURN": "return"}.get(r.target)
    if r.target == "DNAT":
        verdict = f"dnat to {r.to}"
    elif r.target == "MARK":
        value, _, mask = r.set_mark.partition("/")
        verdict = f"meta mark set meta mark | {value}"
    elif verdict is None:
        verdict = f"jump {r.target}"
    tail = [verdict] + ([f'comment "{r.comment}"'] if r.comment else [])
    if not r.ctstate:
        return [" ".join(m + tail)]
    states = r.ctstate.split(",")
    flags = [s.lower() for s in states if s in ("NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED")]
    dnat = "DNAT" in states
    if r.ctstate_not:  # none of the states: conjunction
        ct = [f"ct state != {s}" for s in flags] + (["ct status & dnat == 0"] if dnat else [])
        return [" ".join(m + ct + tail)]
    out = []
    if flags:
        # a flag list, not a set: a bitmask test like iptables-nft's --ctstate, no anonymous set
        out.append(" ".join(m + ["ct state " + ",".join(flags)] + tail))
    if dnat:
        out.append(" ".join(m + ["ct status dnat"] + tail))
    return out
