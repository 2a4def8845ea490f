"""scapy probes: craft a packet in one namespace, capture it in another, and show its addresses
before and after NAT side by side. scapy is imported only here, in child processes."""

import json
import subprocess
import sys
import time


def capture_main(iface: str, dport: int, timeout: float) -> None:
    from scapy.all import IP, TCP, AsyncSniffer  # ~1.4 s: labs only

    def want(p):
        return IP in p and TCP in p and p[TCP].dport == dport and p[TCP].flags & 0x02

    sn = AsyncSniffer(iface=iface, lfilter=want, count=1, store=True)
    sn.start()
    time.sleep(0.5)  # the socket is open once start() returns; give it a moment to be bound
    print("ready", flush=True)
    sn.join(timeout=timeout)
    if sn.running:
        sn.stop()
    for p in sn.results or []:
        print(json.dumps({"src": p[IP].src, "sport": p[TCP].sport, "dst": p[IP].dst, "dport": p[TCP].dport}))


def craft_main(dst: str, dport: int, sport: int) -> None:
    from scapy.all import IP, TCP, send

    send(IP(dst=dst) / TCP(sport=sport, dport=dport, flags="S", seq=1000), verbose=False)
    # the source scapy chose (the route's preferred source in this namespace)
    from scapy.all import conf

    print(json.dumps({"src": conf.route.route(dst)[1], "sport": sport, "dst": dst, "dport": dport}))


def observe(sender_ns: str, dst: str, dport: int, capture_ns: str, iface: str, sport: int = 40000,
            match_dport: int | None = None, timeout: float = 8.0) -> tuple[dict, dict | None]:
    """Send a crafted SYN from sender_ns, capture it on iface in capture_ns."""
    cap = subprocess.Popen(["nsenter", f"--net=/run/netns/{capture_ns}", "--", sys.executable, "-m",
                            "netplug.lab.probe", "capture", iface, str(match_dport or dport), str(timeout)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = cap.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"capture did not start: {cap.stderr.read().strip()[-300:]}")
        sent = subprocess.run(["nsenter", f"--net=/run/netns/{sender_ns}", "--", sys.executable, "-m",
                               "netplug.lab.probe", "craft", dst, str(dport), str(sport)],
                              capture_output=True, text=True, timeout=30)
        out, _ = cap.communicate(timeout=timeout + 10)
    finally:
        if cap.poll() is None:
            cap.kill()
            cap.wait()
    seen = json.loads(out.splitlines()[0]) if out.strip() else None
    return json.loads(sent.stdout.strip().splitlines()[-1]), seen


def side_by_side(sent: dict, seen: dict | None, where_sent: str, where_seen: str) -> str:
    a = f"{sent['src']}:{sent['sport']} -> {sent['dst']}:{sent['dport']}"
    b = f"{seen['src']}:{seen['sport']} -> {seen['dst']}:{seen['dport']}" if seen else "(nothing arrived)"
    w = max(len(a), len(where_sent)) + 4
    return (f"  {'sent (' + where_sent + ')':<{w}}{'seen (' + where_seen + ')'}\n"
            f"  {a:<{w}}{b}\n")


if __name__ == "__main__":
    if sys.argv[1] == "capture":
        capture_main(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    elif sys.argv[1] == "craft":
        craft_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
