"""nftables rulesets (`nft -j list ruleset` JSON or `nft list ruleset` text) → Ruleset (pure).

Base chains are filed under their iptables names (a nat-type prerouting chain is PREROUTING)
so every backend reads the same; regular chains go with the base chain that reaches them.
Expressions outside the vocabulary below are kept verbatim and the rule marked not understood.
"""

import json
import re
import shlex

from .model import Chain, Match, ParseError, Rule, Ruleset, Table

HOOK_NAMES = {"prerouting": "PREROUTING", "input": "INPUT", "output": "OUTPUT",
              "postrouting": "POSTROUTING", "forward": "FORWARD"}
XT_TABLES = {"nat", "filter", "mangle", "raw", "security"}  # iptables-nft's own tables


def parse_nft_json(text: str, skip_xt: bool = False) -> Ruleset:
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise ParseError(getattr(e, "lineno", 1), f"not valid JSON ({e.msg if hasattr(e, 'msg') else e})") from None
    items = doc.get("nftables") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise ParseError(1, "JSON without an 'nftables' list: not `nft -j list ruleset` output")
    chains, rules = {}, []
    for it in items:
        if not isinstance(it, dict):
            continue
        if "chain" in it:
            c = it["chain"]
            chains[(c["family"], c["table"], c["name"])] = c
        elif "rule" in it:
            rules.append(it["rule"])
    builder = _Builder(skip_xt)
    for key, c in chains.items():
        builder.chain(key, c.get("type"), c.get("hook"), c.get("policy", "accept"))
    for n, r in enumerate(rules, 1):
        rule = Rule(table="", chain=r["chain"], origin="nftables", lineno=n,
                    nft_table=f"{r['family']} {r['table']}")
        for e in r.get("expr", []):
            _json_expr(rule, e)
        if "comment" in r:
            rule.matches.append(Match("comment", {"comment": r["comment"]}))
        rule.save = _json_text(r)
        builder.rule((r["family"], r["table"], r["chain"]), rule)
    return builder.finish("nft -j list ruleset")


def _json_text(r) -> str:
    return " ".join(json.dumps(e, separators=(",", ":")) for e in r.get("expr", []))[:400]


def _left(e):
    left = e.get("left", {})
    if "payload" in left:
        return f"{left['payload'].get('protocol')} {left['payload'].get('field')}"
    if "meta" in left:
        return f"meta {left['meta'].get('key')}"
    if "ct" in left:
        return f"ct {left['ct'].get('key')}"
    if "fib" in left:
        return "fib daddr type"
    if "&" in left:
        inner = left["&"]
        if isinstance(inner, list) and isinstance(inner[0], dict) and "meta" in inner[0]:
            return f"meta {inner[0]['meta'].get('key')}&{inner[1]}"
        if isinstance(inner, list) and isinstance(inner[0], dict) and "ct" in inner[0]:
            return f"ct {inner[0]['ct'].get('key')}&"
    return json.dumps(left)


def _value(v):
    if isinstance(v, dict) and "prefix" in v:
        return f"{v['prefix']['addr']}/{v['prefix']['len']}"
    if isinstance(v, dict) and "set" in v:
        return ",".join(str(_value(x)) for x in v["set"])
    if isinstance(v, dict) and "range" in v:
        return f"{v['range'][0]}:{v['range'][1]}"
    if isinstance(v, list):
        return ",".join(str(_value(x)) for x in v)
    return v


def _json_expr(r: Rule, e: dict) -> None:
    if "match" in e:
        m = e["match"]
        _apply_match(r, _left(m), m.get("op", "=="), _value(m.get("right")))
    elif "counter" in e:
        c = e["counter"] or {}
        r.counters = (c.get("packets", 0), c.get("bytes", 0))
    elif "jump" in e or "goto" in e:
        r.target = (e.get("jump") or e.get("goto"))["target"]
    elif any(k in e for k in ("accept", "drop", "return", "continue")):
        r.target = next(k for k in ("accept", "drop", "return", "continue") if k in e).upper()
    elif "masquerade" in e:
        r.target = "MASQUERADE"
        flags = (e["masquerade"] or {}).get("flags") or []
        for f in flags if isinstance(flags, list) else [flags]:
            r.target_opts["random-fully" if f == "fully-random" else f] = True
    elif "dnat" in e or "snat" in e:
        k = "dnat" if "dnat" in e else "snat"
        d = e[k] or {}
        to = str(d.get("addr", ""))
        if d.get("port"):
            to += f":{d['port']}"
        r.target = k.upper()
        r.target_opts["to-destination" if k == "dnat" else "to-source"] = to
    elif "redirect" in e:
        r.target = "REDIRECT"
        if (e["redirect"] or {}).get("port"):
            r.target_opts["to-ports"] = str(e["redirect"]["port"])
    elif "mangle" in e and e["mangle"].get("key", {}).get("meta", {}).get("key") == "mark":
        val = e["mangle"].get("value")
        bits = val.get("|") if isinstance(val, dict) else None
        r.target = "MARK"
        if bits:
            v = bits[1]
            r.target_opts["set-xmark"] = f"0x{int(v):x}/0x{int(v):x}"
        else:
            r.target_opts["set-xmark"] = f"0x{int(val) if isinstance(val, int) else 0:x}/0xffffffff"
    elif "xt" in e:
        r.understood = False
        r.unknown.append(f"xt {e['xt'].get('type')} {e['xt'].get('name')}")
    elif "log" in e:
        r.target = r.target or "LOG"
    else:
        r.understood = False
        r.unknown.append(json.dumps(e, separators=(",", ":"))[:120])


def _apply_match(r: Rule, left: str, op: str, right) -> None:
    neg = op in ("!=", "!")
    right_s = str(right)
    if left in ("ip saddr", "ip daddr"):
        attr = "src" if left.endswith("saddr") else "dst"
        setattr(r, attr, right_s)
        setattr(r, attr + "_neg", neg)
    elif left in ("meta iifname", "meta oifname"):
        attr = "iif" if "iif" in left else "oif"
        setattr(r, attr, right_s.replace("*", "+"))
        setattr(r, attr + "_neg", neg)
    elif left in ("meta l4proto", "ip protocol"):
        r.proto, r.proto_neg = right_s, neg
    elif left.split()[0] in ("tcp", "udp", "sctp") and left.split()[1] in ("dport", "sport"):
        proto, field_ = left.split()
        r.proto = r.proto or proto
        m = r.match(proto) or Match(proto)
        if m not in r.matches:
            r.matches.append(m)
        m.opts[field_] = right_s
        if neg:
            m.neg.add(field_)
    elif left == "fib daddr type":
        r.matches.append(Match("addrtype", {"dst-type": right_s.upper()}, {"dst-type"} if neg else set()))
    elif left.startswith("meta mark&"):
        mask = left.split("&", 1)[1]
        m = Match("mark", {"mark": f"0x{int(right):x}/0x{int(mask, 0) if isinstance(mask, str) else mask:x}"})
        if neg:
            m.neg.add("mark")
        r.matches.append(m)
    elif left == "meta mark":
        r.matches.append(Match("mark", {"mark": f"0x{int(right):x}"}, {"mark"} if neg else set()))
    elif left in ("ct state", "ct status", "ct status&"):
        key = "ctstate"
        states = [s.upper() for s in right_s.split(",")]
        if left.startswith("ct status"):
            neg = neg or (left == "ct status&" and right_s in ("0", 0))
            states = ["DNAT"] if left == "ct status" else ["DNAT"]
        existing = r.match("conntrack")
        if existing and (key in existing.neg) == neg:
            existing.opts[key] = ",".join(dict.fromkeys(existing.opts[key].split(",") + states))
        else:
            r.matches.append(Match("conntrack", {key: ",".join(states)}, {key} if neg else set()))
    else:
        r.understood = False
        r.unknown.append(f"{left} {op} {right_s}")


class _Builder:
    def __init__(self, skip_xt: bool):
        self.skip_xt = skip_xt
        self.meta = {}  # (fam, table, chain) -> (type, hook, policy)
        self.rules: dict = {}

    def chain(self, key, ctype, hook, policy):
        self.meta[key] = (ctype, hook, policy)
        self.rules.setdefault(key, [])

    def rule(self, key, rule):
        self.meta.setdefault(key, (None, None, "accept"))
        self.rules.setdefault(key, []).append(rule)

    def finish(self, source: str) -> Ruleset:
        rs = Ruleset(source=source)
        by_table: dict = {}
        for key in self.meta:
            by_table.setdefault(key[:2], []).append(key)
        for (fam, tname), keys in by_table.items():
            if self.skip_xt and fam == "ip" and tname in XT_TABLES:
                continue
            cats: dict[str, Table] = {}
            owner_of: dict = {}
            for key in keys:
                ctype, hook, _ = self.meta[key]
                if hook:
                    cat = ctype or "filter"
                    owner_of[key[2]] = cat
            # regular chains: the category of a base chain that reaches them
            changed = True
            while changed:
                changed = False
                for key in keys:
                    cat = owner_of.get(key[2])
                    if not cat:
                        continue
                    for r in self.rules.get(key, []):
                        if r.target and (fam, tname, r.target) in self.meta and r.target not in owner_of:
                            owner_of[r.target] = cat
                            changed = True
            for key in keys:
                ctype, hook, policy = self.meta[key]
                cat = owner_of.get(key[2], "nat" if not hook else ctype)
                t = cats.setdefault(cat, Table(cat, origin="nftables", family=fam))
                t.nft_name = f"{fam} {tname}"
                name = HOOK_NAMES.get(hook, key[2]) if hook else key[2]
                ch = t.chains.setdefault(name, Chain(name, (policy or "accept").upper() if hook else "-",
                                                     hook=hook or ""))
                for r in self.rules.get(key, []):
                    r.table, r.chain = cat, name
                    r.nft_statement = r.save  # the nft form, kept; `save` becomes iptables-save form
                    if r.target and r.target in owner_of and (fam, tname, r.target) in self.meta:
                        tgt_hook = self.meta[(fam, tname, r.target)][1]
                        if tgt_hook:
                            r.target = HOOK_NAMES.get(tgt_hook, r.target)
                    ch.rules.append(r)
            rs.tables += list(cats.values())
        from .render_save import to_save

        for r in rs.rules():
            r.save = to_save(r)
        return rs


# --- text ----------------------------------------------------------------------------------------

_TABLE_RE = re.compile(r"^table\s+(\w+)\s+(\S+)\s*\{$")
_CHAIN_RE = re.compile(r"^chain\s+(\S+)\s*\{$")
_HOOK_RE = re.compile(r"type\s+(\w+)\s+hook\s+(\w+).*?(?:policy\s+(\w+))?;")


def parse_nft_text(text: str, skip_xt: bool = False) -> Ruleset:
    b = _Builder(skip_xt)
    fam = table = chain = None
    depth = 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line == "}":
            depth -= 1
            if depth == 1:
                chain = None
            elif depth == 0:
                table = None
            if depth < 0:
                raise ParseError(lineno, "unbalanced '}'", raw)
            continue
        m = _TABLE_RE.match(line)
        if m and depth == 0:
            fam, table, depth = m.group(1), m.group(2), 1
            continue
        m = _CHAIN_RE.match(line)
        if m and depth == 1:
            chain, depth = m.group(1), 2
            b.chain((fam, table, chain), None, None, "accept")
            continue
        if depth == 1 and re.match(r"^(set|map|flowtable|counter|quota|ct|limit)\s", line):
            if line.endswith("{"):
                depth = 3  # skip the block
            continue
        if depth == 3:
            if line.endswith("{"):
                depth += 1
            continue
        if depth != 2 or chain is None:
            raise ParseError(lineno, "not `nft list ruleset` syntax", raw)
        m = _HOOK_RE.search(line)
        if m and line.startswith("type "):
            b.meta[(fam, table, chain)] = (m.group(1), m.group(2), (m.group(3) or "accept"))
            continue
        if line.startswith(("policy ", "comment ", "devices ")):
            continue
        rule = Rule(table="", chain=chain, origin="nftables", lineno=lineno, nft_table=f"{fam} {table}")
        _text_rule(rule, line, lineno)
        rule.save = line
        b.rule((fam, table, chain), rule)
    if depth != 0:
        raise ParseError(len(text.splitlines()), "ruleset ends inside a block (truncated?)")
    return b.finish("nft list ruleset")


def _text_rule(r: Rule, line: str, lineno: int) -> None:
    try:
        toks = shlex.split(line.replace("{ ", "{").replace(" }", "}").replace(", ", ","))
    except ValueError:
        raise ParseError(lineno, "unbalanced quotes", line) from None
    i = 0

    def val(j):
        if j < len(toks) and toks[j] in ("!=", "!"):
            return "!=", toks[j + 1] if j + 1 < len(toks) else ""
        return "==", toks[j] if j < len(toks) else ""

    while i < len(toks):
        t = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else ""
        if t in ("ip",) and nxt in ("saddr", "daddr", "protocol"):
            op, v = val(i + 2)
            _apply_match(r, f"ip {nxt}", op, v)
            i += 3 + (op == "!=")
        elif t in ("iifname", "oifname"):
            op, v = val(i + 1)
            _apply_match(r, f"meta {t}", op, v)
            i += 2 + (op == "!=")
        elif t == "meta" and nxt in ("iifname", "oifname", "l4proto"):
            op, v = val(i + 2)
            _apply_match(r, f"meta {nxt}", op, v)
            i += 3 + (op == "!=")
        elif t in ("tcp", "udp", "sctp") and nxt in ("dport", "sport"):
            op, v = val(i + 2)
            _apply_match(r, f"{t} {nxt}", op, v.strip("{}").replace("-", ":"))
            i += 3 + (op == "!=")
        elif t == "fib" and toks[i + 1:i + 3] == ["daddr", "type"]:
            op, v = val(i + 3)
            _apply_match(r, "fib daddr type", op, v)
            i += 4 + (op == "!=")
        elif t == "meta" and nxt == "mark" and i + 2 < len(toks) and toks[i + 2] == "&":
            mask, op, v = toks[i + 3], toks[i + 4], toks[i + 5]
            _apply_match(r, f"meta mark&{mask}", "!=" if op == "!=" else "==", int(v, 0))
            i += 6
        elif t == "meta" and nxt == "mark" and i + 2 < len(toks) and toks[i + 2] == "set":
            rest = toks[i + 3:i + 7]
            r.target = "MARK"
            if rest[:3] == ["meta", "mark", "|"] and len(rest) == 4:  # set meta mark | V
                v = int(rest[3], 0)
                r.target_opts["set-xmark"] = f"0x{v:x}/0x{v:x}"
                i += 7
            else:
                try:
                    r.target_opts["set-xmark"] = f"0x{int(rest[0], 0):x}/0xffffffff"
                    i += 4
                except (ValueError, IndexError):
                    r.understood = False
                    r.unknown.append(" ".join(toks[i:]))
                    break
        elif t == "ct" and nxt in ("state", "status"):
            if i + 2 < len(toks) and toks[i + 2] == "&":  # ct status & dnat == 0
                _apply_match(r, "ct status&", "==", toks[i + 5] if i + 5 < len(toks) else "0")
                i += 6
                continue
            op, v = val(i + 2)
            _apply_match(r, f"ct {nxt}", op, v.strip("{}"))
            i += 3 + (op == "!=")
        elif t == "counter":
            if nxt == "packets":
                r.counters = (int(toks[i + 2]), int(toks[i + 4]))
                i += 5
            else:
                i += 1
        elif t in ("jump", "goto"):
            r.target = nxt
            i += 2
        elif t in ("accept", "drop", "return", "continue"):
            r.target = t.upper()
            i += 1
        elif t == "masquerade":
            r.target = "MASQUERADE"
            i += 1
            while i < len(toks) and toks[i] in ("random", "fully-random", "persistent"):
                r.target_opts["random-fully" if toks[i] == "fully-random" else toks[i]] = True
                i += 1
        elif t in ("dnat", "snat"):
            j = i + 1
            if j < len(toks) and toks[j] == "ip":
                j += 1
            if j < len(toks) and toks[j] == "to":
                j += 1
            r.target = t.upper()
            r.target_opts["to-destination" if t == "dnat" else "to-source"] = toks[j] if j < len(toks) else ""
            i = j + 1
        elif t == "redirect":
            r.target = "REDIRECT"
            if toks[i + 1:i + 2] == ["to"]:
                r.target_opts["to-ports"] = toks[i + 2].lstrip(":")
                i += 3
            else:
                i += 1
        elif t == "comment":
            r.matches.append(Match("comment", {"comment": nxt}))
            i += 2
        elif t in ("log",):
            r.target = r.target or "LOG"
            i += 1
        else:
            r.understood = False
            r.unknown.append(" ".join(toks[i:]))
            break
