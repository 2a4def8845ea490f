"""iptables-save text → Ruleset (pure)."""

import shlex

from .model import Match, ParseError, Rule, Ruleset, Table

# options of the matches we understand, and whether they take a value
KNOWN_MATCHES = {
    "tcp": {"dport", "sport", "tcp-flags", "syn", "destination-port", "source-port", "dports", "sports"},
    "udp": {"dport", "sport", "destination-port", "source-port"},
    "sctp": {"dport", "sport", "destination-port", "source-port"},
    "multiport": {"dports", "sports", "ports", "destination-ports", "source-ports"},
    "addrtype": {"dst-type", "src-type", "limit-iface-in", "limit-iface-out"},
    "comment": {"comment"},
    "mark": {"mark"},
    "conntrack": {"ctstate", "ctstatus", "ctorigdst", "ctorigdstport"},
    "state": {"state"},
    "statistic": {"mode", "probability", "every", "packet"},
    "physdev": {"physdev-in", "physdev-out", "physdev-is-bridged", "physdev-is-in", "physdev-is-out"},
    "set": {"match-set"},
}
FLAG_OPTS = {"syn", "physdev-is-bridged", "physdev-is-in", "physdev-is-out", "limit-iface-in",
             "limit-iface-out", "random", "random-fully", "persistent"}
ALIASES = {"destination-port": "dport", "source-port": "sport", "destination-ports": "dports",
           "source-ports": "sports"}


def parse_save(text: str, origin: str = "iptables") -> Ruleset:
    rs = Ruleset(source="iptables-save")
    table = None
    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("*"):
            table = Table(s[1:].strip(), origin=origin)
            rs.tables.append(table)
        elif s == "COMMIT":
            table = None
        elif s.startswith(":"):
            if table is None:
                raise ParseError(lineno, "chain declaration outside a table", line)
            parts = s[1:].split()
            if len(parts) < 2:
                raise ParseError(lineno, "malformed chain declaration", line)
            ch = table.chain(parts[0])
            ch.policy = parts[1]
            if len(parts) > 2 and parts[2].startswith("["):
                ch.counters = _counters(parts[2], lineno, line)
        elif s.startswith(("-A ", "-I ", "[")):
            if table is None:
                raise ParseError(lineno, "rule outside a table (missing '*nat'?)", line)
            rule = parse_rule(s, table.name, lineno, origin)
            table.chain(rule.chain).rules.append(rule)
        else:
            raise ParseError(lineno, "not iptables-save syntax", line)
    if table is not None:
        raise ParseError(len(text.splitlines()), f"table {table.name} has no COMMIT (truncated dump?)")
    return rs


def _counters(tok: str, lineno: int, line: str) -> tuple[int, int]:
    try:
        p, b = tok.strip("[]").split(":")
        return int(p), int(b)
    except ValueError:
        raise ParseError(lineno, f"bad counters {tok}", line) from None


def parse_rule(line: str, table: str, lineno: int = 0, origin: str = "iptables") -> Rule:
    counters = (0, 0)
    if line.startswith("["):
        tok, _, line = line.partition(" ")
        counters = _counters(tok, lineno, line)
    try:
        toks = shlex.split(line)
    except ValueError as e:
        raise ParseError(lineno, f"unbalanced quotes ({e})", line) from None
    if len(toks) < 2 or toks[0] not in ("-A", "-I"):
        raise ParseError(lineno, "expected -A CHAIN", line)
    r = Rule(table=table, chain=toks[1], counters=counters, save=_save_form(line), origin=origin,
             lineno=lineno)
    i, neg = 2, False
    cur: Match | None = None
    while i < len(toks):
        t = toks[i]
        if t == "!":
            neg = True
            i += 1
            continue
        val = toks[i + 1] if i + 1 < len(toks) else None
        if t in ("-s", "--source", "-d", "--destination", "-i", "--in-interface", "-o",
                 "--out-interface", "-p", "--protocol"):
            if val is None:
                raise ParseError(lineno, f"{t} needs a value", line)
            key = {"-s": "src", "--source": "src", "-d": "dst", "--destination": "dst",
                   "-i": "iif", "--in-interface": "iif", "-o": "oif", "--out-interface": "oif",
                   "-p": "proto", "--protocol": "proto"}[t]
            setattr(r, key, val)
            setattr(r, key + "_neg", neg)
            i += 2
        elif t == "-f":
            r.frag = True
            i += 1
        elif t in ("-m", "--match"):
            if val is None:
                raise ParseError(lineno, "-m needs a module name", line)
            cur = Match(val)
            r.matches.append(cur)
            if val not in KNOWN_MATCHES:
                r.understood = False
                r.unknown.append(f"-m {val}")
            i += 2
        elif t in ("-j", "--jump", "-g", "--goto"):
            if val is None:
                raise ParseError(lineno, "-j needs a target", line)
            r.target = val
            i += 2
            # everything after the target belongs to it
            while i < len(toks):
                k = toks[i]
                if not k.startswith("--"):
                    raise ParseError(lineno, f"unexpected {k!r} after target options", line)
                if i + 1 < len(toks) and not toks[i + 1].startswith("--"):
                    r.target_opts[k[2:]] = toks[i + 1]
                    i += 2
                else:
                    r.target_opts[k[2:]] = True
                    i += 1
            break
        elif t.startswith("--"):
            name = t[2:]
            if cur is None:
                raise ParseError(lineno, f"option {t} before any -m", line)
            key = ALIASES.get(name, name)
            if name in FLAG_OPTS or val is None or (val.startswith("--") and name not in ("comment",)):
                cur.opts[key] = True
                i += 1
            else:
                if name == "tcp-flags" and i + 2 < len(toks):
                    cur.opts[key] = f"{val} {toks[i + 2]}"
                    i += 3
                else:
                    cur.opts[key] = val
                    i += 2
            if neg:
                cur.neg.add(key)
            if cur.name in KNOWN_MATCHES and name not in KNOWN_MATCHES[cur.name] | FLAG_OPTS:
                r.understood = False
                r.unknown.append(f"--{name}")
        else:
            raise ParseError(lineno, f"unexpected token {t!r}", line)
        neg = False
    if r.proto and not any(m.name == r.proto for m in r.matches) and r.proto in ("tcp", "udp", "sctp"):
        pass  # `-p tcp` alone is fine
    return r


def _save_form(line: str) -> str:
    return line.replace("-I ", "-A ", 1) if line.startswith("-I ") else line
