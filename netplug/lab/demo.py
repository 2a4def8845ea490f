"""The README's main job: wire two containers through the installed plugin in throwaway
namespaces, ping, reach a published port from outside, and explain the nat table. Cleans up."""

import json
import sys

from .topology import HOST_IP, PEER_IP, World, down, nsexec


def step(msg: str) -> None:
    print(f"\n\033[1m== {msg}\033[0m" if sys.stdout.isatty() else f"\n== {msg}")


def demo(backend: str, lang: str) -> int:
    w = World("demo")
    down("demo")  # a leftover of an interrupted demo
    try:
        return _demo(w, backend, lang)
    finally:
        step("cleaning up")
        print(f"removed {len(down('demo'))} namespaces")


def _demo(w: World, backend: str, lang: str) -> int:
    step("a 'host' namespace with an uplink to an 'outside' peer (203.0.113.0/24)")
    w.create()
    print(f"host {w.host}: up0 {HOST_IP}/24    outside {w.outside}: eth0 {PEER_IP}/24")
    print(f"plugin installed into {w.bin_dir}: netplug, netplug-ipam (runtimes find them via CNI_PATH)")
    step(f"CNI ADD: two containers on network 'netplug' (firewall backend {backend})")
    c1, c2 = w.container("c1"), w.container("c2")
    conf1 = w.conf(backend, runtimeConfig={"portMappings": [{"hostPort": 8080, "containerPort": 80,
                                                             "protocol": "tcp"}]})
    r1 = w.cni("ADD", conf1, "demo-c1", c1)
    r2 = w.cni("ADD", w.conf(backend), "demo-c2", c2)
    for name, r in (("c1 (publishes 8080->80)", r1), ("c2", r2)):
        itf = r["interfaces"]
        print(f"{name}: {itf[2]['name']} {r['ips'][0]['address']} in {itf[2]['sandbox']}, host side "
              f"{itf[1]['name']} on bridge {itf[0]['name']}, gateway {r['ips'][0]['gateway']}")
    print("result of ADD c1, as the runtime receives it:")
    print(json.dumps(r1, indent=1))
    step("what was created in the host namespace")
    print(nsexec(w.host, "ip", "-br", "addr").stdout.rstrip())
    print(nsexec(w.host, "ip", "-br", "link", "show", "master", "netplug0").stdout.rstrip())
    step("traffic")
    ip1, ip2 = r1["ips"][0]["address"].split("/")[0], r2["ips"][0]["address"].split("/")[0]
    ok = w.ping(c2, ip1)
    print(f"ping c2 -> c1 ({ip1}): {'ok' if ok else 'FAILED'}")
    srv = w.serve(c1, 80)
    out = w.serve(w.outside, 80)
    try:
        seen = w.ask(w.outside, HOST_IP, 8080)
        print(f"outside -> {HOST_IP}:8080 (published): {'ok' if seen else 'FAILED'}, the server in c1 saw "
              f"the client as {seen}")
        seen2 = w.ask(c2, PEER_IP, 80)
        print(f"c2 -> outside {PEER_IP}:80: {'ok' if seen2 else 'FAILED'}, the outside saw {seen2} "
              f"(MASQUERADE: not {ip2})")
    finally:
        for p in (srv, out):
            p.kill()
            p.wait()
    step("the nat table, explained (netplug explain)")
    from ..cli import main

    main(["explain", "--netns", w.host, "--state-dir", f"{w.dir}/state", "--data-dir", f"{w.dir}/ipam",
          "--lang", lang, "--check"])
    step("one packet, traced (netplug explain --trace)")
    main(["explain", "--netns", w.host, "--state-dir", f"{w.dir}/state",
          "--trace", f"tcp {PEER_IP}:40000 -> {HOST_IP}:8080 in up0"])
    step("CNI DEL")
    w.cni("DEL", w.conf(backend), "demo-c1", c1)
    w.cni("DEL", w.conf(backend), "demo-c2", c2)
    left = nsexec(w.host, "nft", "list", "ruleset").stdout
    print("rules left after DEL: " + ("none" if "netplug" not in left.lower() else left))
    return 0 if ok and seen and seen2 == HOST_IP else 1
