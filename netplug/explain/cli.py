"""`netplug explain`: gather input (live or a saved dump), then parse → analyze → render."""

import json
import os
import sys

from . import analyze, trace as tracemod
from .describe import explain as describe
from .model import ParseError, Ruleset
from .render_list import render_table, rule_line, header

SCHEMA_VERSION = 1
COLORS = {"bold": "1", "dim": "2", "green": "32", "yellow": "33", "red": "31", "cyan": "36"}
T = {
    "owner": {"en": "owner", "zh": "所属"},
    "published": {"en": "Published ports", "zh": "已发布的端口"},
    "outbound": {"en": "Outbound NAT", "zh": "出站 NAT"},
    "findings": {"en": "Findings", "zh": "检查结果"},
    "none": {"en": "none", "zh": "无"},
    "healthy": {"en": "no problems found", "zh": "未发现问题"},
    "fix": {"en": "fix", "zh": "修复"},
    "container": {"en": "container", "zh": "容器"},
    "via": {"en": "leaving by", "zh": "出接口"},
}


def add_parser(sub) -> None:
    e = sub.add_parser("explain", help="dump the nat table like iptables -t nat -nL and explain every rule",
                       description="Explain NAT rules of any backend (iptables-nft, iptables-legacy, "
                                   "nftables), live or from a saved dump.")
    src = e.add_mutually_exclusive_group()
    src.add_argument("--netns", help="read the live rules of this named network namespace")
    src.add_argument("--from", dest="from_file", metavar="FILE",
                     help="a saved dump (iptables-save, iptables -nL/-nvL, nft list ruleset, nft -j); - for stdin")
    e.add_argument("--raw", action="store_true", help="print the table exactly as iptables -t nat -nL does")
    e.add_argument("-v", "--verbose", action="store_true", help="with --raw: as -nvL (counters, interfaces)")
    e.add_argument("--line-numbers", action="store_true", help="with --raw: as --line-numbers")
    e.add_argument("--iptables-version", default="1.8.9", choices=["1.8.9", "1.8.10"],
                   help="1.8.9 prints protocol numbers with -n, 1.8.10 names")
    e.add_argument("--table", default="nat", choices=["nat", "filter", "all"])
    e.add_argument("--trace", metavar="PACKET", help="e.g. 'tcp 203.0.113.7:40000 -> 192.0.2.10:8080 in eth0'")
    e.add_argument("--local-addr", action="append", default=[], metavar="ADDR",
                   help="a local address of the host (for --trace on a saved dump)")
    e.add_argument("--check", action="store_true", help="report problems; exit 1 if any is an error")
    e.add_argument("--json", action="store_true", help="machine-readable output (schema in docs/explain.md)")
    e.add_argument("--lang", default="en", choices=["en", "zh"])
    e.add_argument("--color", default="auto", choices=["auto", "always", "never"])
    e.add_argument("--state-dir", default="/run/netplug", help="netplug attachment records")
    e.add_argument("--data-dir", action="append", default=None,
                   help="IPAM stores to name containers from (default /var/lib/cni/networks)")
    e.set_defaults(func=run)


def load(a) -> tuple[Ruleset, analyze.Context, list[str]]:
    from . import live
    from .detect import read_dump

    if a.from_file:
        try:
            text = sys.stdin.read() if a.from_file == "-" else open(a.from_file, errors="replace").read()
        except OSError as e:
            raise SystemExit(_fail(f"{a.from_file}: {e.strerror}"))
        rs = read_dump(text)
        ctx = analyze.Context()
        if a.data_dir or os.path.isdir(a.state_dir):
            ctx.containers = live.containers(a.state_dir, a.data_dir or [])
        return rs, ctx, []
    if os.geteuid() != 0:
        raise SystemExit(_fail("reading live rules needs root (or use --from FILE)"))
    with live.in_netns(a.netns):
        rs, backends = live.gather_rules()
        ctx = live.gather_context(a.state_dir, a.data_dir or ["/var/lib/cni/networks"])
    ctx.backends_with_rules = backends
    live.filter_facts(rs, ctx)
    return rs, ctx, backends


def _fail(msg: str) -> int:
    print(f"netplug explain: {msg}", file=sys.stderr)
    return 2


def run(a) -> int:
    try:
        return _run(a)
    except BrokenPipeError:  # `| head`
        sys.stderr.close()
        return 0


def _run(a) -> int:
    try:
        rs, ctx, backends = load(a)
    except ParseError as e:
        return _fail(str(e))
    except FileNotFoundError as e:
        return _fail(str(e))
    color = _colorizer(a.color)
    out = sys.stdout
    tables = [t for t in rs.tables if a.table == "all" or t.name == a.table]
    if a.raw:
        for t in tables:
            if len(tables) > 1 or t.origin != "iptables":
                out.write(f"# {t.origin}" + (f" table {getattr(t, 'nft_name', '')}" if t.origin == "nftables" else
                                             f" table {t.name}") + "\n")
            out.write(render_table(t, a.verbose, a.line_numbers, a.iptables_version))
        return 0
    result = {"schema": SCHEMA_VERSION, "source": rs.source, "backends": backends, "notes": rs.notes}
    sub = Ruleset(tables=tables, source=rs.source)
    result["rules"] = analyze.explained_rules(sub, ctx, a.lang)
    result["published_ports"] = analyze.published_ports(rs, ctx)
    result["outbound_nat"] = analyze.outbound_nat(rs)
    fnd = analyze.findings(rs, ctx) if (a.check or a.json) else []
    result["findings"] = [f.__dict__ for f in fnd]
    tr = None
    if a.trace:
        try:
            tr = tracemod.trace(rs, ctx, a.trace, set(a.local_addr))
        except tracemod.TraceSyntaxError as e:
            return _fail(str(e))
        except ValueError as e:
            return _fail(f"--trace: {e}")
        result["trace"] = {"packet": tr.packet.__dict__, "steps": [s.__dict__ for s in tr.steps],
                           "result": tr.final, "notes": tr.notes}
    if a.json:
        json.dump(result, out, indent=2, ensure_ascii=False)
        out.write("\n")
    elif a.trace:
        out.write(tracemod.render(tr, color))
    else:
        _text(out, rs, tables, ctx, result, fnd, a, color)
    if a.check and any(f.severity == "error" for f in fnd):
        return 1
    return 0


def _text(out, rs, tables, ctx, result, fnd, a, color) -> None:
    lang = a.lang
    for n in rs.notes:
        out.write(color(f"# {n}", "dim") + "\n")
    for t in tables:
        title = f"{t.origin} {getattr(t, 'nft_name', '') or 'table'} {t.name}".replace("table nat", "nat table")
        out.write(color(f"== {title} ==", "bold") + "\n")
        hooks = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")
        builtin_first = sorted(t.chains, key=lambda c: (hooks.index(c) if c in hooks else 9, c))
        for name in builtin_first:
            ch = t.chains[name]
            pol = f"policy {ch.policy}" if ch.policy not in ("-", "") else f"{t.references(name)} references"
            out.write(color(f"Chain {name} ({pol})", "cyan") + "\n")
            out.write(header(False, False) + "\n")
            for r in ch.rules:
                cont = analyze.container_of(ctx, r)
                out.write(rule_line(r, 0, False, False, a.iptables_version).rstrip() + "\n")
                owner = analyze.owner_of(rs, r)
                out.write(color(f"    [{T['owner'][lang]}: {owner}] ", "yellow") + describe(r, lang, cont) + "\n")
            out.write("\n")
    out.write(color(T["published"][lang], "bold") + "\n")
    if not result["published_ports"]:
        out.write(f"  {T['none'][lang]}\n")
    for p in result["published_ports"]:
        who = f" {T['container'][lang]} {p['container_id'][:12]} ({p['network']})" if p["container_id"] else ""
        out.write(f"  {p['host_ip']}:{p['host_port']}/{p['protocol']} -> {p['target_ip']}:{p['target_port']}"
                  f"  [{p['owner']}]{who}\n")
    out.write(color(T["outbound"][lang], "bold") + "\n")
    if not result["outbound_nat"]:
        out.write(f"  {T['none'][lang]}\n")
    for m in result["outbound_nat"]:
        exc = f" (except to {m['except_to']})" if m["except_to"] else ""
        out.write(f"  {m['subnet']}{exc} -> {m['action']}, {T['via'][lang]} {m['out_interface']}  [{m['owner']}]\n")
    if a.check:
        out.write(color(T["findings"][lang], "bold") + "\n")
        if not fnd:
            out.write(f"  {T['healthy'][lang]}\n")
        for f in fnd:
            c = {"error": "red", "warning": "yellow"}.get(f.severity, "dim")
            out.write(color(f"  {f.severity.upper():7} {f.code}", c) + f": {f.message}\n")
            if f.fix:
                out.write(f"          {T['fix'][lang]}: {f.fix}\n")


def _colorizer(mode: str):
    on = mode == "always" or (mode == "auto" and sys.stdout.isatty() and os.environ.get("NO_COLOR") is None)
    if not on:
        return lambda s, c: s
    return lambda s, c: f"\033[{COLORS.get(c, '0')}m{s}\033[0m"
