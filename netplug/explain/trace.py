"""Walk one packet through the nat hooks, rule by rule, the way the kernel would (pure).

    tcp 203.0.113.7:40000 -> 192.0.2.10:8080 in eth0     arrives on eth0 (PREROUTING)
    tcp 127.0.0.1:40000 -> 127.0.0.1:8080                made on this host (OUTPUT)

Only the first connection packet is modelled (conntrack state NEW): that is the one NAT acts on.
"""

import ipaddress
import re

from .analyze import Context
from .model import Rule, Ruleset
from ..record import field, record

PACKET_RE = re.compile(r"^\s*(tcp|udp|sctp)\s+([\d.]+):(\d+)\s*->\s*([\d.]+):(\d+)"
                       r"(?:\s+in\s+(\S+))?(?:\s+out\s+(\S+))?\s*$")
PROTO_NUM = {"tcp": "6", "udp": "17", "sctp": "132"}
OTHER = "<another interface>"  # a saved dump doesn't say which; only that it is none of the bridges


class TraceSyntaxError(ValueError):
    pass


@record
class Packet:
    proto: str
    src: str
    sport: int
    dst: str
    dport: int
    iif: str = ""
    oif: str = ""
    mark: int = 0
    dnat: bool = False


@record
class Step:
    hook: str
    chain: str
    rule: str
    matched: bool
    why: str = ""
    effect: str = ""


@record
class TraceResult:
    packet: Packet
    steps: list[Step] = field(default_factory=list)
    final: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def parse_packet(text: str) -> Packet:
    m = PACKET_RE.match(text)
    if not m:
        raise TraceSyntaxError(f"can't read packet {text!r}; expected e.g. "
                               "'tcp 203.0.113.7:40000 -> 192.0.2.10:8080 in eth0'")
    p, s, sp, d, dp, iif, oif = m.groups()
    for a in (s, d):
        ipaddress.ip_address(a)
    return Packet(p, s, int(sp), d, int(dp), iif or "", oif or "")


def _in(addr: str, spec: str) -> bool:
    try:
        return ipaddress.ip_address(addr) in ipaddress.ip_network(spec, strict=False)
    except ValueError:
        return False


def _iface(name: str, spec: str) -> bool:
    return name.startswith(spec[:-1]) if spec.endswith("+") else name == spec


def _port_in(port: int, spec: str) -> bool:
    for part in str(spec).split(","):
        lo, _, hi = part.partition(":")
        if lo and int(lo) <= port <= int(hi or lo):
            return True
    return False


class Walker:
    def __init__(self, rs: Ruleset, ctx: Context, local: set[str]):
        self.rs, self.ctx, self.local = rs, ctx, local

    def is_local(self, addr: str) -> bool:
        return addr in self.local or _in(addr, "127.0.0.0/8")

    def matches(self, r: Rule, p: Packet, hook: str) -> tuple[bool, str]:
        if r.proto and r.proto not in ("all", "0"):
            ok = r.proto in (p.proto, PROTO_NUM[p.proto])
            if ok == r.proto_neg:
                return False, f"protocol is {p.proto}"
        for attr, val in (("src", p.src), ("dst", p.dst)):
            spec = getattr(r, attr)
            if spec and _in(val, spec) == getattr(r, attr + "_neg"):
                return False, f"{attr} {val} {'is' if getattr(r, attr + '_neg') else 'is not'} in {spec}"
        for attr, val in (("iif", p.iif), ("oif", p.oif)):
            spec = getattr(r, attr)
            if not spec:
                continue
            if not r.ifaces_known:
                continue
            if not val:
                if attr == "iif" and hook == "OUTPUT":
                    if not getattr(r, attr + "_neg"):
                        return False, "locally generated: no input interface"
                    continue
                return False, f"{attr} unknown here (give 'in IFACE'/'out IFACE')"
            if _iface(val, spec) == getattr(r, attr + "_neg"):
                return False, f"{'arrives on' if attr == 'iif' else 'leaves by'} {val}"
        for m in r.matches:
            o = m.opts
            if m.name in ("tcp", "udp", "sctp"):
                if m.name != p.proto:
                    return False, f"protocol is {p.proto}"
                for key, port in (("dport", p.dport), ("sport", p.sport)):
                    if key in o and _port_in(port, o[key]) == (key in m.neg):
                        return False, f"{key} is {port}, rule wants {'not ' if key in m.neg else ''}{o[key]}"
            elif m.name == "multiport":
                for key, port in (("dports", p.dport), ("sports", p.sport), ("ports", p.dport)):
                    if key in o and _port_in(port, o[key]) == (key in m.neg):
                        return False, f"port {port} is not in {o[key]}"
            elif m.name == "addrtype":
                for key, addr in (("dst-type", p.dst), ("src-type", p.src)):
                    if key in o:
                        want_local = "LOCAL" in str(o[key]).split(",")
                        local = self.is_local(addr)
                        if (local == want_local) == (key in m.neg):
                            return False, f"{addr} is {'a' if local else 'not a'} local address"
            elif m.name == "mark":
                v, _, mask = str(o.get("mark", "0")).partition("/")
                ok = (p.mark & int(mask or "0xffffffff", 0)) == int(v, 0)
                if ok == ("mark" in m.neg):
                    return False, f"packet mark is 0x{p.mark:x}"
            elif m.name in ("conntrack", "state"):
                states = str(o.get("ctstate") or o.get("state") or "").split(",")
                have = {"NEW"} | ({"DNAT"} if p.dnat else set())
                ok = bool(have & set(states))
                if ok == bool(m.neg):
                    return False, f"connection state is {','.join(sorted(have))}"
            elif m.name == "statistic":
                continue  # random: this walk assumes the branch is taken
            elif m.name == "comment":
                continue
            else:
                return False, f"-m {m.name} not understood: assumed not to match"
        return True, ""

    def run_hook(self, hook: str, p: Packet, res: TraceResult) -> str | None:
        """Returns the terminating verdict/target of the hook, if any."""
        for t in self.rs.tables:
            if t.name != "nat" or hook not in t.chains:
                continue
            verdict = self._chain(t, hook, p, res, hook, depth=0)
            if verdict in ("DNAT", "SNAT", "MASQUERADE", "REDIRECT", "DROP"):
                return verdict
        return None

    def _chain(self, t, name, p, res, hook, depth) -> str | None:
        if depth > 32:
            res.notes.append(f"jump depth over 32 at {name}: loop?")
            return None
        for r in t.chains[name].rules:
            ok, why = self.matches(r, p, hook)
            label = r.save or r.chain
            if not ok:
                res.steps.append(Step(hook, name, label, False, why))
                continue
            step = Step(hook, name, label, True)
            res.steps.append(step)
            tgt = r.target
            if tgt == "DNAT":
                to = str(r.target_opts.get("to-destination", ""))
                ip, _, port = to.partition(":")
                step.effect = f"destination {p.dst}:{p.dport} -> {ip or p.dst}:{port or p.dport}"
                p.dst, p.dport, p.dnat = ip or p.dst, int(port) if port else p.dport, True
                return "DNAT"
            if tgt == "REDIRECT":
                step.effect = f"redirected to local port {r.target_opts.get('to-ports', p.dport)}"
                return "REDIRECT"
            if tgt in ("MASQUERADE", "SNAT"):
                new = str(r.target_opts.get("to-source", "")).split(":")[0] or self.addr_of(p.oif)
                step.effect = f"source {p.src} -> {new}"
                p.src = new
                return tgt
            if tgt == "MARK":
                v = r.target_opts.get("set-xmark") or r.target_opts.get("set-mark") or "0"
                val, _, mask = str(v).partition("/")
                mask_i = int(mask or "0xffffffff", 0)
                p.mark = (p.mark & ~mask_i) ^ int(val, 0)
                step.effect = f"mark := 0x{p.mark:x}"
                continue
            if tgt in ("ACCEPT",):
                step.effect = "accepted: no more NAT rules at this hook"
                return "ACCEPT"
            if tgt == "DROP":
                step.effect = "dropped"
                return "DROP"
            if tgt == "RETURN":
                step.effect = "return"
                return None
            if tgt in t.chains:
                step.effect = f"jump {tgt}"
                v = self._chain(t, tgt, p, res, hook, depth + 1)
                if v is not None:
                    return v
                continue
            # LOG, counters only, unknown targets: go on
        return None

    def addr_of(self, iface: str) -> str:
        for ip, dev in self.ctx.local_addrs.items():
            if dev == iface and not ip.startswith("127."):
                return ip
        return f"<address of {iface or 'the outgoing interface'}>"

    def route(self, dst: str) -> str:
        best = None
        for d, dev in self.ctx.routes:
            if _in(dst, d):
                n = ipaddress.ip_network(d, strict=False)
                if best is None or n.prefixlen > best[0]:
                    best = (n.prefixlen, dev)
        if best:
            return best[1]
        from .analyze import inferred_bridges

        bridges = dict(inferred_bridges(self.rs))
        bridges.update(self.ctx.bridges)
        for br, subs in bridges.items():
            if any(_in(dst, s) for s in subs):
                return br
        return OTHER if bridges else ""


def trace(rs: Ruleset, ctx: Context, packet: str, local: set[str] = frozenset()) -> TraceResult:
    p = parse_packet(packet)
    w = Walker(rs, ctx, set(local) | set(ctx.local_addrs))
    res = TraceResult(packet=Packet(**p.__dict__))
    first = "OUTPUT" if not p.iif else "PREROUTING"
    verdict = w.run_hook(first, p, res)
    if verdict == "DROP":
        res.final = {"fate": "dropped", "src": p.src, "dst": p.dst}
        return res
    # routing decision
    if w.is_local(p.dst) and verdict != "DNAT":
        res.final = {"fate": "delivered to a local process", "src": f"{p.src}:{p.sport}",
                     "dst": f"{p.dst}:{p.dport}"}
        res.notes.append("routing: the destination is local, so POSTROUTING is not traversed (nat INPUT "
                         "could still change the source)")
        return res
    p.oif = p.oif or w.route(p.dst)
    res.steps.append(Step("routing", "", f"{p.dst} is not local: forwarded, leaving by "
                                         f"{p.oif or 'an interface this dump does not tell'}", True))
    verdict = w.run_hook("POSTROUTING", p, res)
    cont = ctx.containers.get(p.dst)
    fate = f"container {cont['container_id'][:12]} ({cont['network']})" if cont else \
        (f"out of {p.oif}" if p.oif else "forwarded")
    res.final = {"fate": fate, "src": f"{p.src}:{p.sport}", "dst": f"{p.dst}:{p.dport}",
                 "out_interface": p.oif or None, "mark": f"0x{p.mark:x}"}
    return res


def render(res: TraceResult, color=lambda s, c: s) -> str:
    p = res.packet
    lines = [f"packet: {p.proto} {p.src}:{p.sport} -> {p.dst}:{p.dport}" + (f" in {p.iif}" if p.iif else
                                                                              " (made on this host)")]
    hook = None
    for s in res.steps:
        if s.hook != hook:
            hook = s.hook
            lines.append(f"  [{hook}]")
        if s.hook == "routing":
            lines.append(f"    {s.rule}")
            continue
        mark = color("match", "green") if s.matched else color("no   ", "dim")
        lines.append(f"    {mark} {s.chain}: {s.rule}")
        if s.why:
            lines.append(f"           because {s.why}")
        if s.effect:
            lines.append(f"           => {s.effect}")
    for n in res.notes:
        lines.append(f"  {n}")
    f = res.final
    lines.append(color(f"result: {f.get('src')} -> {f.get('dst')}, {f.get('fate')}", "bold"))
    return "\n".join(lines) + "\n"
