"""Render a table exactly as `iptables -t nat -nL` / `-nvL [--line-numbers]` prints it (pure).

Formats follow iptables' xshared.c (print_header, print_rule_details, print_ifaces) and the
extensions' print functions. 1.8.9 prints protocol numbers with -n; 1.8.10 names again.
"""

import ipaddress

from .model import BUILTIN, Rule, Table

PROTO_NUM = {"all": 0, "icmp": 1, "tcp": 6, "udp": 17, "sctp": 132, "icmpv6": 58, "gre": 47}
CT_ORDER = ("INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED", "SNAT", "DNAT")


def num(n: int) -> str:
    """xtables_print_num with FMT_KILOMEGAGIGA: '%5llu ' or K/M/G/T suffixes."""
    if n <= 99999:
        return f"{n:5d} "
    for suffix in "KMGT":
        n = (n + 500) // 1000
        if n <= 9999 or suffix == "T":
            return f"{n:4d}{suffix} "
    return f"{n} "


def addr(a: str) -> str:
    if not a:
        return "0.0.0.0/0"
    try:
        net = ipaddress.ip_network(a, strict=False)
    except ValueError:
        return a
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def proto_text(p: str, version: str) -> str:
    p = p or "all"
    if version == "1.8.9":
        return str(PROTO_NUM.get(p, p))
    return p


def header(verbose: bool, linenumbers: bool) -> str:
    h = ""
    if linenumbers:
        h += f"{'num':<4} "
    if verbose:
        h += f"{'pkts':>5} {'bytes':>5} "
    h += f"{'target':<9} " + " prot " + "opt"
    if verbose:
        h += f" {'in':<6} " + f"{'out':<6} "
    h += f" {'source':<19} " + f" {'destination':<19} "
    return h


def _ports(name: str, value: str, neg: bool) -> str:
    inv = "!" if neg else ""
    if ":" in value:
        lo, hi = value.split(":", 1)
        return f" {name}s:{inv}{lo}:{hi}"
    return f" {name}:{inv}{value}"


def _mark(value: str) -> str:
    v, _, m = value.partition("/")
    v = int(v, 0)
    if not m or int(m, 0) == 0xFFFFFFFF:
        return f" 0x{v:x}"
    return f" 0x{v:x}/0x{int(m, 0):x}"


def match_text(r: Rule) -> str:
    out = ""
    for m in r.matches:
        o, neg = m.opts, m.neg
        if m.name in ("tcp", "udp", "sctp"):
            out += f" {m.name}"
            for key, label in (("sport", "spt"), ("dport", "dpt")):
                if key in o:
                    out += _ports(label, str(o[key]), key in neg)
        elif m.name == "multiport":
            for key in ("sports", "dports", "ports"):
                if key in o:
                    out += f" multiport {key} " + ("!" if key in neg else "") + str(o[key])
        elif m.name == "addrtype":
            out += " ADDRTYPE match"
            for key in ("src-type", "dst-type"):
                if key in o:
                    out += f" {key} " + ("!" if key in neg else "") + str(o[key])
            if "limit-iface-in" in o:
                out += " limit-in"
            if "limit-iface-out" in o:
                out += " limit-out"
        elif m.name == "comment":
            out += f" /* {o.get('comment', '')} */"
        elif m.name == "mark":
            out += " mark match" + (" !" if "mark" in neg else "") + _mark(str(o.get("mark", "0")))
        elif m.name in ("conntrack", "state"):
            key = "ctstate" if m.name == "conntrack" else "state"
            if key in o:
                states = [s for s in CT_ORDER if s in str(o[key]).split(",")]
                out += (" !" if key in neg else "") + f" {key} " + ",".join(states)
            if "ctstatus" in o:
                out += (" !" if "ctstatus" in neg else "") + f" ctstatus {o['ctstatus']}"
        elif m.name == "statistic":
            if o.get("mode") == "random":
                out += f" statistic mode random probability {float(o.get('probability', 0)):.11f}"
            else:
                out += f" statistic mode nth every {o.get('every')} packet {o.get('packet', 0)}"
        else:  # not understood: show what we have, marked
            opts = " ".join(f"--{k} {v}" if v is not True else f"--{k}" for k, v in o.items())
            out += f" [not understood: -m {m.name} {opts}]".replace("  ]", "]")
    return out


def target_text(r: Rule) -> str:
    o = r.target_opts
    t = r.target
    if t in ("DNAT", "SNAT"):
        key = "to-destination" if t == "DNAT" else "to-source"
        s = f" to:{o[key]}" if key in o else ""
        return s + (" random" if "random" in o else "") + (" persistent" if "persistent" in o else "")
    if t == "MASQUERADE":
        s = f" masq ports: {o['to-ports']}" if "to-ports" in o else ""
        return s + (" random" if "random" in o else "") + (" random-fully" if "random-fully" in o else "")
    if t == "REDIRECT":
        return f" redir ports {o['to-ports']}" if "to-ports" in o else ""
    if t == "MARK":
        if "set-xmark" in o:
            v, _, m = str(o["set-xmark"]).partition("/")
            v, m = int(v, 0), int(m or "0xffffffff", 0)
        elif "set-mark" in o:
            v, _, m = str(o["set-mark"]).partition("/")
            v, m = int(v, 0), int(m or "0xffffffff", 0)
            m = m | v if m != 0xFFFFFFFF else m
        elif "or-mark" in o:
            v = m = int(o["or-mark"], 0)
        elif "and-mark" in o:
            v, m = 0, (~int(o["and-mark"], 0)) & 0xFFFFFFFF
        elif "xor-mark" in o:
            v, m = int(o["xor-mark"], 0), 0
        else:
            return ""
        if v == 0:
            return f" MARK and 0x{(~m) & 0xFFFFFFFF:x}"
        if v == m:
            return f" MARK or 0x{v:x}"
        if m == 0:
            return f" MARK xor 0x{v:x}"
        if m == 0xFFFFFFFF:
            return f" MARK set 0x{v:x}"
        return f" MARK xset 0x{v:x}/0x{m:x}"
    if t == "LOG":
        s = f" LOG flags 0 level {o.get('log-level', 4)}"
        return s + (f' prefix "{o["log-prefix"]}"' if "log-prefix" in o else "")
    return ""


def rule_line(r: Rule, n: int, verbose: bool, linenumbers: bool, version: str) -> str:
    s = ""
    if linenumbers:
        s += f"{n:<4} "
    if verbose:
        s += num(r.counters[0]) + num(r.counters[1])
    s += f"{r.target:<9} "
    s += "!" if r.proto_neg else " "
    s += f"{proto_text(r.proto, version):<4} "
    s += "-f" if r.frag else "--"
    s += " "
    if verbose:
        iif = ("!" if r.iif_neg else "") + (r.iif or "*") if r.ifaces_known else "?"
        oif = ("!" if r.oif_neg else "") + (r.oif or "*") if r.ifaces_known else "?"
        s += f" {iif:<6} " + f"{oif:<6} "
    s += ("!" if r.src_neg else " ") + f"{addr(r.src):<19} "
    s += ("!" if r.dst_neg else " ") + f"{addr(r.dst):<19} "
    return s + match_text(r) + target_text(r)


def render_table(t: Table, verbose=False, linenumbers=False, version="1.8.9") -> str:
    out = []
    builtin = BUILTIN.get(t.name, ())
    # builtin chains in hook order, then user chains sorted, as iptables (nft and legacy) does
    names = [c for c in builtin if c in t.chains] + sorted(c for c in t.chains if c not in builtin)
    for i, name in enumerate(names):
        ch = t.chains[name]
        if i:
            out.append("")
        if name in builtin or ch.policy not in ("-", ""):
            pol = f"policy {ch.policy}"
            if verbose:
                pol += f" {ch.counters[0]} packets, {ch.counters[1]} bytes"
            out.append(f"Chain {name} ({pol})")
        else:
            out.append(f"Chain {name} ({t.references(name)} references)")
        out.append(header(verbose, linenumbers))
        for n, r in enumerate(ch.rules, 1):
            out.append(rule_line(r, n, verbose, linenumbers, version))
    return "\n".join(out) + "\n"
