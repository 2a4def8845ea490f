"""The explainer's own rule model: what any backend's rule means, independent of its syntax.

A rule is a list of conditions (Match) and one action (target + args). Parsers build it from
iptables-save, `iptables -nL[v]` text and nft rulesets; renderers and the analyzer read it.
"""

from ..record import field, record


BUILTIN = {
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}
NAT_HOOK_ORDER = ("PREROUTING", "OUTPUT", "INPUT", "POSTROUTING")


@record
class Match:
    """One `-m NAME` module with its options, e.g. tcp {'dport': '8080'}."""
    name: str
    opts: dict = field(default_factory=dict)  # option -> value; negated options are in `neg`
    neg: set = field(default_factory=set)


@record
class Rule:
    table: str
    chain: str
    target: str = ""
    target_opts: dict = field(default_factory=dict)
    src: str = ""
    src_neg: bool = False
    dst: str = ""
    dst_neg: bool = False
    iif: str = ""
    iif_neg: bool = False
    oif: str = ""
    oif_neg: bool = False
    proto: str = ""
    proto_neg: bool = False
    frag: bool = False
    matches: list[Match] = field(default_factory=list)
    counters: tuple[int, int] = (0, 0)
    understood: bool = True
    unknown: list[str] = field(default_factory=list)  # what could not be interpreted, verbatim
    ifaces_known: bool = True  # False for `iptables -nL` input: it hides -i/-o
    save: str = ""  # iptables-save form "-A CHAIN ..." (or the nft statement for nft rules)
    origin: str = "iptables"  # iptables | iptables-legacy | nftables
    nft_table: str = ""  # "ip netplug" for native nftables rules
    nft_statement: str = ""  # the rule as nft printed it (native nftables rules)
    lineno: int = 0

    def match(self, name: str) -> Match | None:
        return next((m for m in self.matches if m.name == name), None)

    @property
    def comment(self) -> str:
        m = self.match("comment")
        return m.opts.get("comment", "") if m else ""

    @property
    def dport(self) -> str:
        for m in self.matches:
            if m.name in ("tcp", "udp", "sctp") and "dport" in m.opts:
                return m.opts["dport"]
            if m.name == "multiport" and "dports" in m.opts:
                return m.opts["dports"]
        return ""


@record
class Chain:
    name: str
    policy: str = "-"  # ACCEPT/DROP for builtin chains, "-" for user chains
    counters: tuple[int, int] = (0, 0)
    rules: list[Rule] = field(default_factory=list)
    hook: str = ""  # nft base chains: the hook name


@record
class Table:
    name: str
    chains: dict[str, Chain] = field(default_factory=dict)
    origin: str = "iptables"
    family: str = "ip"

    def chain(self, name: str) -> Chain:
        if name not in self.chains:
            self.chains[name] = Chain(name, "ACCEPT" if name in BUILTIN.get(self.name, ()) else "-")
        return self.chains[name]

    def references(self, name: str) -> int:
        return sum(1 for c in self.chains.values() for r in c.rules if r.target == name)


@record
class Ruleset:
    tables: list[Table] = field(default_factory=list)
    source: str = ""  # which format or backend it came from
    notes: list[str] = field(default_factory=list)

    def table(self, name: str, origin: str | None = None) -> Table | None:
        return next((t for t in self.tables if t.name == name and (origin is None or t.origin == origin)), None)

    def rules(self, table: str | None = None):
        for t in self.tables:
            if table is None or t.name == table:
                for c in t.chains.values():
                    yield from c.rules


class ParseError(Exception):
    """Malformed input: the message names the line."""

    def __init__(self, lineno: int, msg: str, line: str = ""):
        super().__init__(f"line {lineno}: {msg}" + (f": {line.strip()[:120]!r}" if line else ""))
        self.lineno = lineno
