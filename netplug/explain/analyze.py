"""What a ruleset does, as a whole: owners, published ports, outbound NAT, problems, and the
path of one packet through the nat hooks (pure: all host facts come in a Context)."""

import ipaddress

from .describe import explain as describe
from .model import Rule, Ruleset
from .owners import NFT_TABLES, rule_owner
from ..record import field, record


@record
class Context:
    """Facts about the host that rules alone don't tell. Empty for a saved dump."""
    containers: dict = field(default_factory=dict)  # ip -> {container_id, network, ifname}
    local_addrs: dict = field(default_factory=dict)  # ip -> interface
    ip_forward: str | None = None
    route_localnet: dict = field(default_factory=dict)  # iface -> "0"/"1"
    hairpin: dict = field(default_factory=dict)  # bridge port -> "0"/"1"
    bridges: dict = field(default_factory=dict)  # bridge -> [subnet]
    routes: list = field(default_factory=list)  # (dst, dev)
    filter_forward_policy: str | None = None
    forward_accepts: list = field(default_factory=list)  # iface names accepted in FORWARD
    backends_with_rules: list = field(default_factory=list)
    live: bool = False


@record
class Finding:
    severity: str  # error | warning | info
    code: str
    message: str
    fix: str = ""


def owner_of(rs: Ruleset, r: Rule) -> str:
    if r.nft_table:
        owner = NFT_TABLES.get(r.nft_table.split()[-1])
        if owner:
            return owner
    owner = rule_owner(r)
    if owner == "unknown" and r.target == "MASQUERADE" and r.src and r.src == r.dst:
        # hairpin masquerade of a published port: whoever DNATs to that address owns it
        ip = r.src.split("/")[0]
        for x in rs.rules(r.table):
            if x.target == "DNAT" and str(x.target_opts.get("to-destination", "")).startswith(ip + ":"):
                return rule_owner(x)
    return owner


def container_of(ctx: Context, r: Rule) -> dict | None:
    if r.target == "DNAT":
        ip = str(r.target_opts.get("to-destination", "")).rsplit(":", 1)[0]
        return ctx.containers.get(ip)
    if r.src and "/" not in r.src or (r.src or "").endswith("/32"):
        return ctx.containers.get(r.src.split("/")[0])
    return None


def explained_rules(rs: Ruleset, ctx: Context, lang: str) -> list[dict]:
    out = []
    for t in rs.tables:
        for c in t.chains.values():
            for r in c.rules:
                cont = container_of(ctx, r)
                out.append({"table": r.table, "chain": r.chain, "rule": r.save,
                            **({"nft": r.nft_statement} if r.nft_statement else {}), "owner": owner_of(rs, r),
                            "backend": r.origin, "explanation": describe(r, lang, cont),
                            "understood": r.understood,
                            "container_id": cont["container_id"] if cont else None})
    return out


# --- summaries -----------------------------------------------------------------------------------

def reachable_chains(rs: Ruleset, table: str, start: str, origin: str | None = None) -> list[str]:
    t = next((x for x in rs.tables if x.name == table and (origin is None or x.origin == origin)), None)
    if t is None:
        return []
    seen, todo = [], [start]
    while todo:
        name = todo.pop(0)
        if name in seen or name not in t.chains:
            continue
        seen.append(name)
        todo += [r.target for r in t.chains[name].rules if r.target in t.chains]
    return seen


def published_ports(rs: Ruleset, ctx: Context) -> list[dict]:
    out = []
    for r in rs.rules("nat"):
        if r.target != "DNAT":
            continue
        to = str(r.target_opts.get("to-destination", ""))
        ip, _, port = to.rpartition(":") if to.count(":") == 1 else (to, "", "")
        host_port = r.dport or _jump_port(rs, r)
        host_ip = (r.dst.split("/")[0] if r.dst and not r.dst_neg else "") or _jump_dst(rs, r) or "0.0.0.0"
        cont = ctx.containers.get(ip)
        out.append({"protocol": _pname(r.proto) or "all", "host_ip": host_ip,
                    "host_port": int(host_port) if str(host_port).isdigit() else host_port or None,
                    "target_ip": ip, "target_port": int(port) if port.isdigit() else (port or None),
                    "owner": owner_of(rs, r), "container_id": cont["container_id"] if cont else None,
                    "network": cont["network"] if cont else None, "chain": r.chain, "backend": r.origin})
    return out


def _jumps_to(rs: Ruleset, r: Rule) -> list[Rule]:
    return [x for x in rs.rules(r.table) if x.target == r.chain and x.origin == r.origin]


def _up(rs: Ruleset, r: Rule, get, depth: int = 0) -> str:
    """The first value `get` finds on the path of rules that jump to r's chain (nearest first):
    kube-proxy puts the service port two chains above the DNAT, portmap one."""
    if depth > 8:
        return ""
    for j in _jumps_to(rs, r):
        v = get(j) or _up(rs, j, get, depth + 1)
        if v:
            return v
    return ""


def _jump_port(rs: Ruleset, r: Rule) -> str:
    return _up(rs, r, lambda j: j.dport)


def _jump_dst(rs: Ruleset, r: Rule) -> str:
    return _up(rs, r, lambda j: j.dst.split("/")[0] if j.dst and not j.dst_neg else "")


def _pname(p: str) -> str:
    return {"6": "tcp", "17": "udp", "132": "sctp"}.get(p, p)


def outbound_nat(rs: Ruleset) -> list[dict]:
    out = []
    for r in rs.rules("nat"):
        if r.target not in ("MASQUERADE", "SNAT") or r.match("mark") or (r.dst and not r.dst_neg):
            continue  # marked or to one destination: hairpin/port masquerades, not outbound NAT
        if r.oif:
            via = f"any interface but {r.oif}" if r.oif_neg else r.oif
        else:
            via = "any interface"
        out.append({"subnet": r.src or "0.0.0.0/0", "except_to": r.dst if r.dst_neg else None,
                    "out_interface": via, "action": r.target, "owner": owner_of(rs, r),
                    "chain": r.chain, "backend": r.origin})
    return out


# --- checks ------------------------------------------------------------------------------------

def _net(s):
    try:
        return ipaddress.ip_network(s, strict=False)
    except ValueError:
        return None


def findings(rs: Ruleset, ctx: Context) -> list[Finding]:
    f: list[Finding] = []
    ports = published_ports(rs, ctx)
    masq = outbound_nat(rs)
    has_nat = bool(ports or masq)
    if ctx.ip_forward == "0" and has_nat:
        f.append(Finding("error", "forwarding-off", "IPv4 forwarding is disabled: containers can't reach "
                         "the outside and published ports don't answer",
                         "sysctl -w net.ipv4.ip_forward=1 (and persist it in /etc/sysctl.d)"))
    # a subnet with published ports and no MASQUERADE for its outbound traffic
    for p in ports:
        ip = ipaddress.ip_address(p["target_ip"]) if _net(p["target_ip"]) else None
        if ip is None:
            continue
        covered = any(m["subnet"] != "0.0.0.0/0" and _net(m["subnet"]) and ip in _net(m["subnet"]) for m in masq)
        if not covered:
            sub = next((str(n) for b, subs in ctx.bridges.items() for n in map(_net, subs) if n and ip in n),
                       f"the subnet of {ip}")
            if not any(x.code == "no-masquerade" and sub in x.message for x in f):
                f.append(Finding("error", "no-masquerade", f"{sub} publishes ports but has no MASQUERADE: its "
                                 "containers' own connections leave with a private source address",
                                 f"add -t nat -A POSTROUTING -s {sub} ! -o <bridge> -j MASQUERADE (netplug: "
                                 "ipMasq: true)"))
    # DNAT to an address no container owns
    if ctx.containers or ctx.live:
        for p in ports:
            if p["target_ip"] not in ctx.containers and p["target_ip"] not in ctx.local_addrs:
                f.append(Finding("error", "stale-dnat", f"{p['protocol']}/{p['host_port']} is DNATed to "
                                 f"{p['target_ip']}:{p['target_port']}, which no container owns (stale rule, "
                                 f"owner {p['owner']})", f"remove the rule in chain {p['chain']} (or DEL/GC the "
                                 "container it was for)"))
    # the same host port published twice: the first rule reached wins
    seen = {}
    for p in ports:
        key = (p["protocol"], p["host_ip"], p["host_port"])
        if key in seen and p["host_port"]:
            first = seen[key]
            f.append(Finding("error", "duplicate-port", f"{p['protocol']}/{p['host_port']} on {p['host_ip']} "
                             f"is published twice: to {first['target_ip']}:{first['target_port']} and "
                             f"{p['target_ip']}:{p['target_port']}; the second is shadowed",
                             "remove the stale mapping (or the container that holds it)"))
        else:
            seen[key] = p
    # rules split between iptables-legacy and iptables-nft
    origins = {r.origin for r in rs.rules() if r.origin in ("iptables", "iptables-legacy")}
    if len(origins) == 2 or len(set(ctx.backends_with_rules) & {"iptables", "iptables-legacy"}) == 2:
        f.append(Finding("error", "legacy-nft-split", "rules live in both iptables-legacy and iptables-nft: "
                         "each `iptables` shows only half of them, and both halves act on packets",
                         "move everything to one backend (update-alternatives --config iptables) and "
                         "flush the other"))
    # localhost mapping without route_localnet
    if ports and _output_reaches_localhost(rs):
        for br, subs in ctx.bridges.items():
            if ctx.route_localnet.get(br) == "0" and any(_in_subnets(p["target_ip"], subs) for p in ports):
                f.append(Finding("warning", "no-route-localnet", f"127.0.0.1:<port> is DNATed to containers on "
                                 f"{br}, but route_localnet is off there: the kernel drops those packets as "
                                 "martians", f"sysctl -w net.ipv4.conf.{br}.route_localnet=1 (and drop 127/8 "
                                 "arriving on it)"))
    # FORWARD policy DROP with nothing accepting the bridge
    if ctx.filter_forward_policy == "DROP":
        for br in ctx.bridges:
            if br not in ctx.forward_accepts:
                f.append(Finding("error", "forward-drop", f"the filter FORWARD policy is DROP and no rule accepts "
                                 f"traffic of {br}: containers can't reach out and published ports time out",
                                 f"iptables -I FORWARD -i {br} -j ACCEPT; iptables -I FORWARD -o {br} -m "
                                 "conntrack --ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT"))
    # a bridge subnet overlapping a route through another interface
    for br, subs in ctx.bridges.items():
        for s in map(_net, subs):
            for dst, dev in ctx.routes:
                d = _net(dst)
                if s and d and dev != br and d.prefixlen > 0 and d.overlaps(s):
                    f.append(Finding("error", "subnet-overlap", f"{br}'s subnet {s} overlaps route {d} via {dev}: "
                                     "replies to that network go the wrong way", "move the container network "
                                     "to a free range"))
    # published ports but nothing masquerades hairpinned traffic
    if ports and not _has_hairpin_masq(rs, ports):
        f.append(Finding("warning", "no-hairpin", "published ports have no hairpin MASQUERADE: a container "
                         "can't reach a published port (its own or a neighbour's) through the host address",
                         "masquerade traffic from the bridge subnet to its own published ports (netplug does "
                         "this with mark 0x2000)"))
    return f


def _in_subnets(ip, subs):
    a = ipaddress.ip_address(ip) if _net(ip) else None
    return a is not None and any((n := _net(s)) and a in n for s in subs)


def _output_reaches_localhost(rs: Ruleset) -> bool:
    for r in rs.rules("nat"):
        if r.chain == "OUTPUT" and r.target and r.target not in ("ACCEPT", "RETURN"):
            if r.dst == "127.0.0.0/8" and r.dst_neg:
                continue
            return True
    return False


def _has_hairpin_masq(rs: Ruleset, ports) -> bool:
    for r in rs.rules("nat"):
        if r.target == "MASQUERADE" and (r.match("mark") or (r.src and r.dst and not r.dst_neg)):
            return True
        if r.target == "MASQUERADE" and r.oif and not r.oif_neg:
            return True  # -o <bridge> --src-type LOCAL (docker no-proxy)
    return False


def inferred_bridges(rs: Ruleset) -> dict:
    """bridge -> subnets, from `-s SUBNET ! -o BRIDGE -j MASQUERADE` (Docker, netplug)."""
    out: dict = {}
    for r in rs.rules("nat"):
        if r.target == "MASQUERADE" and r.src and r.oif and r.oif_neg:
            out.setdefault(r.oif, []).append(r.src)
    return out
