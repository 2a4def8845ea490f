"""`netplug lab`: list | up NAME | status | check NAME | down [NAME|--all] | show [NAME] | demo."""

import os
import sys

from .topology import LabError


def add_parser(sub) -> None:
    p = sub.add_parser("lab", help="classroom labs in network namespaces (no Docker needed)")
    lsub = p.add_subparsers(dest="lab_cmd", required=True)
    lsub.add_parser("list", help="the labs")
    u = lsub.add_parser("up", help="build a lab")
    u.add_argument("name")
    u.add_argument("--backend", default="nftables", choices=["nftables", "iptables", "iptables-legacy"])
    lsub.add_parser("status", help="which labs are up")
    c = lsub.add_parser("check", help="verify a lab with real packets")
    c.add_argument("name")
    d = lsub.add_parser("down", help="remove a lab (or all)")
    d.add_argument("name", nargs="?")
    d.add_argument("--all", action="store_true")
    s = lsub.add_parser("show", help="draw a lab's topology")
    s.add_argument("name", nargs="?")
    s.add_argument("--svg", metavar="FILE")
    pr = lsub.add_parser("probe", help="send a crafted packet and show its addresses before and after NAT")
    pr.add_argument("name")
    m = lsub.add_parser("demo", help="wire containers through the plugin, publish a port, explain the nat table")
    m.add_argument("--backend", default="nftables", choices=["nftables", "iptables", "iptables-legacy"])
    m.add_argument("--lang", default="en", choices=["en", "zh"])
    p.set_defaults(func=run)


def run(a) -> int:
    from . import labs

    if a.lab_cmd == "list":
        for name, what in labs.LABS.items():
            print(f"{name:14} {what}")
        return 0
    if os.geteuid() != 0:
        print("netplug lab: needs root (it creates network namespaces); try sudo", file=sys.stderr)
        return 2
    try:
        return _run(a, labs)
    except LabError as e:
        print(f"netplug lab: {e}", file=sys.stderr)
        return 2


def _run(a, labs) -> int:
    from . import draw, topology

    if a.lab_cmd == "up":
        info = labs.up(a.name, a.backend)
        print(f"lab {a.name} is up (backend {a.backend}): {labs.LABS[a.name]}")
        for name, c in info["containers"].items():
            ports = ", ".join(f"{topology.HOST_IP}:{p['hostPort']}->{p['containerPort']}/{p['protocol']}"
                              for p in c["ports"])
            print(f"  {name}: netns {c['ns']}, {c['ip']}" + (f", published {ports}" if ports else ""))
        print(f"  host: netns {topology.World(a.name).host}; outside: netns {topology.World(a.name).outside}")
        print(f"next: netplug lab show {a.name}; netplug explain --netns {topology.World(a.name).host} "
              f"--state-dir {topology.RUN_DIR}/{a.name}/state; netplug lab check {a.name}")
        if a.name == "troubleshoot":
            print("this lab is broken on purpose: find out how with `netplug explain --check`")
        return 0
    if a.lab_cmd == "status":
        names = sorted({n.split("-")[1] for n in topology.netns_names() if n.startswith(topology.PREFIX)})
        if not names:
            print("no lab is up")
        for name in names:
            info = topology.World(name).load()
            state = "up" if info.get("complete") else "half-built (netplug lab down to clean up)"
            print(f"{name}: {state}, backend {info.get('backend', '?')}, containers "
                  f"{', '.join(info.get('containers', {})) or '-'}")
        return 0
    if a.lab_cmd == "check":
        results = labs.check(a.name)
        for what, ok, detail in results:
            print(f"  {'PASS' if ok else 'FAIL'}  {what}  ({detail})")
        return 0 if all(ok for _, ok, _ in results) else 1
    if a.lab_cmd == "down":
        if not a.all and not a.name:
            raise LabError("name a lab or use --all")
        gone = topology.down(None if a.all else a.name)
        print(f"removed {len(gone)} namespace(s)" + (f": {', '.join(gone)}" if gone else ""))
        return 0
    if a.lab_cmd == "show":
        name = a.name or _only_lab(topology)
        w = topology.World(name)
        if not w.exists():
            raise LabError(f"lab {name} is not up")
        d = draw.describe(w)
        if a.svg:
            with open(a.svg, "w") as f:
                f.write(draw.svg(d))
            print(f"wrote {a.svg}")
        else:
            sys.stdout.write(draw.unicode(d))
        return 0
    if a.lab_cmd == "probe":
        return _probe(a.name)
    if a.lab_cmd == "demo":
        from .demo import demo

        return demo(a.backend, a.lang)
    return 2


def _only_lab(topology) -> str:
    names = sorted({n.split("-")[1] for n in topology.netns_names() if n.startswith(topology.PREFIX)})
    if len(names) != 1:
        raise LabError("name the lab to show" if names else "no lab is up")
    return names[0]


def _probe(name: str) -> int:
    from . import probe, topology

    w = topology.World(name)
    info = w.load()
    if not info:
        raise LabError(f"lab {name} is not up")
    c1 = info["containers"]["c1"]
    if name in ("publish", "publish-all", "troubleshoot"):
        hp = c1["ports"][0]
        sent, seen = probe.observe(w.outside, topology.HOST_IP, hp["hostPort"], c1["ns"], "eth0",
                                   match_dport=hp["containerPort"])
        print("DNAT: the destination is rewritten on the way in")
        print(probe.side_by_side(sent, seen, f"outside {w.outside}", f"eth0 in {c1['ns']}"), end="")
    else:
        sent, seen = probe.observe(c1["ns"], topology.PEER_IP, 80, w.outside, "eth0")
        print("MASQUERADE: the source is rewritten on the way out")
        print(probe.side_by_side(sent, seen, f"{c1['ns']}", f"eth0 in {w.outside}"), end="")
    return 0 if seen else 1
