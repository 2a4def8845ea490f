"""The labs: each builds a small Docker-like world through the netplug plugin and checks it with
real packets. `up` is idempotent; `check` returns (what, ok, detail) lines."""

import json
import os
import re
import signal

from .topology import HOST_IP, PEER_IP, LabError, World, nsexec, sh

LABS = {
    "bridge": "two containers on 172.17.0.0/16 through the bridge; find the veth pairs and bridge ports",
    "masquerade": "a container reaches an outside host; see its source rewritten (MASQUERADE)",
    "publish": "docker run -p 49153:80: an HTTP server in a container, reached via the host's address",
    "publish-all": "docker run -P: host ports taken from the ephemeral range",
    "troubleshoot": "a broken setup (forwarding off, no MASQUERADE, stale DNAT, no hairpin) to diagnose and repair",
}
PUBLISHED_PORT = 49153
STALE_PORT = 49200


def _attach(w: World, name: str, backend: str, ports=None) -> dict:
    ns = w.container(name)
    conf = w.conf(backend, runtimeConfig={"portMappings": ports or []})
    cid = f"{w.lab}-{name}"
    links = nsexec(ns, "ip", "-j", "link").stdout
    if '"eth0"' in links:  # already attached (up is idempotent)
        addr = json.loads(nsexec(ns, "ip", "-j", "-4", "addr", "show", "eth0").stdout)[0]["addr_info"][0]
        return {"ns": ns, "cid": cid, "ip": addr["local"], "ports": ports or []}
    res = w.cni("ADD", conf, cid, ns)
    return {"ns": ns, "cid": cid, "ip": res["ips"][0]["address"].split("/")[0], "ports": ports or []}


def _ephemeral_ports(w: World, n: int) -> list[int]:
    lo, hi = map(int, nsexec(w.host, "cat", "/proc/sys/net/ipv4/ip_local_port_range").stdout.split())
    taken = set()
    ports_dir = os.path.join(w.dir, "state", "ports")
    if os.path.isdir(ports_dir):
        taken = {int(m[1]) for d in os.listdir(ports_dir) if (m := re.match(r"tcp-(\d+)", d))}
    out = [p for p in range(lo, hi + 1) if p not in taken][:n]
    if len(out) < n:
        raise LabError(f"no free port in the ephemeral range {lo}-{hi}")
    return out


def up(lab: str, backend: str) -> dict:
    if lab not in LABS:
        raise LabError(f"unknown lab {lab!r}; labs: {', '.join(LABS)}")
    w = World(lab)
    info = w.load()
    if w.exists() and info.get("complete"):
        raise LabError(f"lab {lab} is already up (netplug lab down {lab} to start over)")
    if not w.exists():
        w.create()
    info = {"lab": lab, "backend": backend, "containers": {}, "servers": [], "complete": False}
    w.save(info)
    if lab == "bridge":
        for name in ("c1", "c2"):
            info["containers"][name] = _attach(w, name, backend)
    elif lab == "masquerade":
        info["containers"]["c1"] = _attach(w, "c1", backend)
        info["servers"].append(w.serve(w.outside, 80).pid)
    elif lab in ("publish", "troubleshoot"):
        ports = [{"hostPort": PUBLISHED_PORT, "containerPort": 80, "protocol": "tcp"}]
        info["containers"]["c1"] = _attach(w, "c1", backend, ports)
        info["containers"]["c2"] = _attach(w, "c2", backend)
        info["servers"].append(w.serve(info["containers"]["c1"]["ns"], 80).pid)
        info["servers"].append(w.serve(w.outside, 80).pid)
    elif lab == "publish-all":
        hp = _ephemeral_ports(w, 2)
        ports = [{"hostPort": hp[0], "containerPort": 80, "protocol": "tcp"},
                 {"hostPort": hp[1], "containerPort": 8443, "protocol": "tcp"}]
        info["containers"]["c1"] = _attach(w, "c1", backend, ports)
        info["servers"] += [w.serve(info["containers"]["c1"]["ns"], 80).pid,
                            w.serve(info["containers"]["c1"]["ns"], 8443).pid]
    if lab == "troubleshoot":
        break_it(w, backend)
    info["complete"] = True
    w.save(info)
    return info


def break_it(w: World, backend: str) -> None:
    """Four classic faults, planted the way they happen in real life."""
    sh("ip", "netns", "exec", w.host, "sysctl", "-qw", "net.ipv4.ip_forward=0")
    rules = _backend_cmds(backend)
    for cmd in rules["break"]:
        nsexec(w.host, *cmd)


def _backend_cmds(backend: str) -> dict:
    """Commands to plant (and, in the docs, to repair) the NAT faults on each backend."""
    masq = "netplug net=netplug masquerade"
    hair = "netplug base masquerade-marked"
    if backend == "nftables":
        return {"break": [["sh", "-c", f"nft -a list chain ip netplug NETPLUG-POSTROUTING | "
                                        f"grep -E '\"({masq}|{hair})\"' | sed 's/.*# handle //' | "
                                        f"xargs -r -n1 nft delete rule ip netplug NETPLUG-POSTROUTING handle"],
                          ["nft", "add", "rule", "ip", "netplug", "NETPLUG-HOSTPORTS", "tcp", "dport",
                           str(STALE_PORT), "dnat", "to", "172.17.0.99:80"]],
                "repair": ["nft add rule ip netplug NETPLUG-POSTROUTING ip saddr 172.17.0.0/16 oifname != "
                           "\"netplug0\" masquerade",
                           "nft add rule ip netplug NETPLUG-POSTROUTING meta mark and 0x2000 == 0x2000 masquerade",
                           f"nft -a list chain ip netplug NETPLUG-HOSTPORTS  # then: nft delete rule ip netplug "
                           f"NETPLUG-HOSTPORTS handle <handle of the dport {STALE_PORT} rule>"]}
    ipt = "iptables-legacy" if backend == "iptables-legacy" else "iptables-nft"
    return {"break": [[ipt, "-t", "nat", "-D", "NETPLUG-POSTROUTING", "-s", "172.17.0.0/16", "!", "-o", "netplug0",
                       "-m", "comment", "--comment", masq, "-j", "MASQUERADE"],
                      [ipt, "-t", "nat", "-D", "NETPLUG-POSTROUTING", "-m", "mark", "--mark", "0x2000/0x2000",
                       "-m", "comment", "--comment", hair, "-j", "MASQUERADE"],
                      [ipt, "-t", "nat", "-A", "NETPLUG-HOSTPORTS", "-p", "tcp", "--dport", str(STALE_PORT),
                       "-j", "DNAT", "--to-destination", "172.17.0.99:80"]],
            "repair": [f"{ipt.replace('-nft', '')} -t nat -A NETPLUG-POSTROUTING -s 172.17.0.0/16 ! -o netplug0 -j MASQUERADE",
                       f"{ipt.replace('-nft', '')} -t nat -A NETPLUG-POSTROUTING -m mark --mark 0x2000/0x2000 -j MASQUERADE",
                       f"{ipt.replace('-nft', '')} -t nat -D NETPLUG-HOSTPORTS -p tcp --dport {STALE_PORT} -j DNAT "
                       f"--to-destination 172.17.0.99:80"]}


def repair_commands(backend: str) -> list[str]:
    return ["sysctl -w net.ipv4.ip_forward=1"] + _backend_cmds(backend)["repair"]


def check(lab: str) -> list[tuple[str, bool, str]]:
    w = World(lab)
    info = w.load()
    if not w.exists() or not info:
        raise LabError(f"lab {lab} is not up (netplug lab up {lab})")
    c = info["containers"]
    out = []
    if lab == "bridge":
        out.append(("c1 pings c2 across the bridge", w.ping(c["c1"]["ns"], c["c2"]["ip"]), c["c2"]["ip"]))
        out.append(("c2 pings c1 across the bridge", w.ping(c["c2"]["ns"], c["c1"]["ip"]), c["c1"]["ip"]))
        ports = [l for l in json.loads(nsexec(w.host, "ip", "-j", "link", "show", "master", "netplug0").stdout)]
        out.append(("two veth ports on netplug0", len(ports) == 2, ", ".join(p["ifname"] for p in ports)))
    if lab == "masquerade":
        seen = w.ask(c["c1"]["ns"], PEER_IP, 80)
        out.append(("c1 reaches the outside host", seen is not None, f"outside saw {seen}"))
        out.append(("the outside sees the host's address, not 172.17.0.x", seen == HOST_IP, f"{seen}"))
    if lab in ("publish", "publish-all"):
        for p in c["c1"]["ports"]:
            seen = w.ask(w.outside, HOST_IP, p["hostPort"])
            out.append((f"outside -> {HOST_IP}:{p['hostPort']} reaches c1:{p['containerPort']}", seen == PEER_IP,
                        f"server saw {seen}"))
    if lab == "troubleshoot":
        out += _troubleshoot_checks(w, info)
    return out


def _troubleshoot_checks(w: World, info: dict) -> list[tuple[str, bool, str]]:
    from ..explain import analyze
    from ..explain.live import filter_facts, gather_context, gather_rules, in_netns

    with in_netns(w.host):
        rs, backends = gather_rules()
        ctx = gather_context(os.path.join(w.dir, "state"), [os.path.join(w.dir, "ipam")])
    ctx.backends_with_rules = backends
    filter_facts(rs, ctx)
    codes = {f.code for f in analyze.findings(rs, ctx)}
    c = info["containers"]
    out = [("IPv4 forwarding is on", "forwarding-off" not in codes, "explain --check: forwarding-off"),
           ("outbound MASQUERADE exists", "no-masquerade" not in codes, "explain --check: no-masquerade"),
           ("no stale DNAT rule", "stale-dnat" not in codes, f"port {STALE_PORT}"),
           ("hairpin masquerade exists", "no-hairpin" not in codes, "explain --check: no-hairpin")]
    seen = w.ask(c["c1"]["ns"], PEER_IP, 80)
    out.append(("c1 reaches the outside with the host's address", seen == HOST_IP, f"outside saw {seen}"))
    seen = w.ask(w.outside, HOST_IP, PUBLISHED_PORT)
    out.append((f"outside reaches the published port {PUBLISHED_PORT}", seen == PEER_IP, f"server saw {seen}"))
    seen = w.ask(c["c2"]["ns"], HOST_IP, PUBLISHED_PORT)
    out.append(("c2 reaches c1 through the host address (hairpin)", seen == "172.17.0.1", f"server saw {seen}"))
    return out


def stop_servers(w: World) -> None:
    """End the lab's own processes: the ones running inside its namespaces."""
    for ns in w.namespaces():
        pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass
