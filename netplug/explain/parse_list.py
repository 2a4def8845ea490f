"""`iptables -t nat -nL` / `-nvL [--line-numbers]` text → Ruleset (pure).

This listing hides -i/-o unless -v was given, so rules parsed from plain -nL carry
ifaces_known=False and the explanation says so.
"""

import re

from .model import Match, ParseError, Rule, Ruleset, Table

CHAIN_RE = re.compile(r"^Chain (\S+) \((?:policy (\S+)(?: (\d+) packets, (\d+) bytes)?|(\d+) references)\)$")
NUM_PROTO = {"0": "all", "6": "tcp", "17": "udp", "132": "sctp", "1": "icmp"}


def _count(s: str) -> int:
    mult = {"K": 1000, "M": 10**6, "G": 10**9, "T": 10**12}
    return int(s[:-1]) * mult[s[-1]] if s and s[-1] in mult else int(s)


def parse_list(text: str, table_name: str = "nat") -> Ruleset:
    rs = Ruleset(source="iptables -nL")
    t = Table(table_name)
    rs.tables.append(t)
    chain = None
    cols = None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = CHAIN_RE.match(line.strip())
        if m:
            chain = t.chain(m.group(1))
            if m.group(2):
                chain.policy = m.group(2)
                if m.group(3):
                    chain.counters = (int(m.group(3)), int(m.group(4)))
            else:
                chain.policy = "-"
            cols = None
            continue
        if chain is None:
            raise ParseError(lineno, "rule before any 'Chain' header", line)
        if line.lstrip().startswith(("target", "num", "pkts")):
            cols = line.split()
            continue
        if cols is None:
            raise ParseError(lineno, "rule without a column header", line)
        chain.rules.append(_row(line, cols, table_name, chain.name, lineno))
    if not t.chains:
        raise ParseError(1, "no 'Chain' header found: not `iptables -L` output")
    rs.source = "iptables -nvL" if any("in" == c for c in (cols or [])) else "iptables -nL"
    return rs


def _row(line: str, cols: list[str], table: str, chain: str, lineno: int) -> Rule:
    f = line.split()
    r = Rule(table=table, chain=chain, lineno=lineno)
    i = 0
    try:
        if "num" in cols:
            i += 1
        if "pkts" in cols:
            r.counters = (_count(f[i]), _count(f[i + 1]))
            i += 2
        # a missing target (a rule that only counts) shifts the row: the protocol comes first
        if f[i] in NUM_PROTO or f[i].lstrip("!") in ("all", "tcp", "udp", "sctp", "icmp") and f[i + 1] in ("--", "-f"):
            r.target = ""
        else:
            r.target = f[i]
            i += 1
        proto = f[i]
        r.proto_neg = proto.startswith("!")
        proto = NUM_PROTO.get(proto.lstrip("!"), proto.lstrip("!"))
        r.proto = "" if proto == "all" else proto
        i += 1
        r.frag = f[i] == "-f"
        i += 1
        if "in" in cols:
            for attr in ("iif", "oif"):
                v = f[i]
                neg = v.startswith("!")
                v = v.lstrip("!")
                setattr(r, attr, "" if v in ("*", "any") else v)
                setattr(r, attr + "_neg", neg and v not in ("*", "any"))
                i += 1
        else:
            r.ifaces_known = False
        for attr in ("src", "dst"):
            v = f[i]
            neg = v.startswith("!")
            v = v.lstrip("!")
            setattr(r, attr, "" if v in ("0.0.0.0/0", "anywhere") else v)
            setattr(r, attr + "_neg", neg)
            i += 1
    except IndexError:
        raise ParseError(lineno, "row has too few columns (truncated?)", line) from None
    _extras(r, " ".join(f[i:]), lineno, line)
    return r


EXTRA = [
    (re.compile(r"^/\* (.*?) \*/"), lambda r, m: r.matches.append(Match("comment", {"comment": m.group(1)}))),
    (re.compile(r"^(tcp|udp|sctp)((?: (?:spts?|dpts?):!?[\d:]+)*)"), "ports"),
    (re.compile(r"^multiport (dports|sports|ports) (!?)([\d,:]+)"),
     lambda r, m: r.matches.append(Match("multiport", {m.group(1): m.group(3)},
                                         {m.group(1)} if m.group(2) else set()))),
    (re.compile(r"^ADDRTYPE match((?: (?:src|dst)-type !?[A-Z,]+)+)( limit-in| limit-out)?"), "addrtype"),
    (re.compile(r"^mark match (!? ?)(0x[0-9a-f]+(?:/0x[0-9a-f]+)?)"),
     lambda r, m: r.matches.append(Match("mark", {"mark": m.group(2)}, {"mark"} if m.group(1).strip() else set()))),
    (re.compile(r"^(! )?(ctstate|state) ([A-Z,]+)"),
     lambda r, m: r.matches.append(Match("conntrack" if m.group(2) == "ctstate" else "state",
                                         {m.group(2): m.group(3)}, {m.group(2)} if m.group(1) else set()))),
    (re.compile(r"^statistic mode random probability ([\d.]+)"),
     lambda r, m: r.matches.append(Match("statistic", {"mode": "random", "probability": m.group(1)}))),
    (re.compile(r"^to:(\S+)"), "to"),
    (re.compile(r"^MARK (or|xor|and|set|xset) (0x[0-9a-f]+)(?:/(0x[0-9a-f]+))?"), "mark-target"),
    (re.compile(r"^(random-fully|random|persistent)"), lambda r, m: r.target_opts.__setitem__(m.group(1), True)),
    (re.compile(r"^masq ports: (\S+)"), lambda r, m: r.target_opts.__setitem__("to-ports", m.group(1))),
    (re.compile(r"^redir ports (\S+)"), lambda r, m: r.target_opts.__setitem__("to-ports", m.group(1))),
]


def _extras(r: Rule, rest: str, lineno: int, line: str) -> None:
    while rest:
        rest = rest.strip()
        for pat, act in EXTRA:
            m = pat.match(rest)
            if not m:
                continue
            if act == "ports":
                mm = Match(m.group(1))
                for part in m.group(2).split():
                    key, _, v = part.partition(":")
                    name = "dport" if key.startswith("dpt") else "sport"
                    if v.startswith("!"):
                        mm.neg.add(name)
                        v = v[1:]
                    mm.opts[name] = v
                r.matches.append(mm)
            elif act == "addrtype":
                mm = Match("addrtype")
                for kind, neg, val in re.findall(r"(src|dst)-type (!?)([A-Z,]+)", m.group(1)):
                    mm.opts[f"{kind}-type"] = val
                    if neg:
                        mm.neg.add(f"{kind}-type")
                if m.group(2):
                    mm.opts["limit-iface-" + ("in" if "in" in m.group(2) else "out")] = True
                r.matches.append(mm)
            elif act == "to":
                r.target_opts["to-destination" if r.target == "DNAT" else "to-source"] = m.group(1)
            elif act == "mark-target":
                op, v, mask = m.group(1), int(m.group(2), 16), m.group(3)
                if op == "or":
                    r.target_opts["set-xmark"] = f"0x{v:x}/0x{v:x}"
                elif op == "xor":
                    r.target_opts["set-xmark"] = f"0x{v:x}/0x0"
                elif op == "set":
                    r.target_opts["set-xmark"] = f"0x{v:x}/0xffffffff"
                elif op == "and":
                    r.target_opts["set-xmark"] = f"0x0/0x{(~v) & 0xFFFFFFFF:x}"
                else:
                    r.target_opts["set-xmark"] = f"0x{v:x}/{mask}"
            else:
                act(r, m)
            rest = rest[m.end():]
            break
        else:
            r.understood = False
            r.unknown.append(rest)
            return
