"""The lab's topology as a Unicode picture for the terminal and as SVG (pure renderers over a
description gathered from the live namespaces)."""

import json
from xml.sax.saxutils import escape

from .topology import World, nsexec


def describe(w: World) -> dict:
    info = w.load()
    host_links = json.loads(nsexec(w.host, "ip", "-j", "addr").stdout)
    d = {"lab": w.lab, "backend": info.get("backend"), "host": w.host, "outside": w.outside,
         "uplink": _addr(host_links, "up0"), "bridge": _addr(host_links, "netplug0"),
         "peer": _addr(json.loads(nsexec(w.outside, "ip", "-j", "addr").stdout), "eth0"), "containers": []}
    ports = {l["ifname"]: l for l in json.loads(nsexec(w.host, "ip", "-j", "link").stdout)}
    for name, c in sorted(info.get("containers", {}).items()):
        links = json.loads(nsexec(c["ns"], "ip", "-j", "addr").stdout)
        eth0 = next((l for l in links if l["ifname"] == "eth0"), None)
        peer = next((n for n, l in ports.items() if eth0 and l.get("ifindex") == eth0.get("link_index")), "?")
        d["containers"].append({"name": name, "ns": c["ns"], "ip": _addr(links, "eth0"), "veth": peer,
                                "ports": c.get("ports", [])})
    return d


def _addr(links, name):
    for l in links:
        if l.get("ifname") == name:
            a = [x for x in l.get("addr_info", []) if x.get("family") == "inet"]
            return f"{a[0]['local']}/{a[0]['prefixlen']}" if a else ""
    return ""


def unicode(d: dict) -> str:
    body_host = [f"up0 {d['uplink']}", f"netplug0 (bridge) {d['bridge']}"]
    for i, c in enumerate(d["containers"]):
        body_host.append(f"  {'└' if i == len(d['containers']) - 1 else '├'}── {c['veth']}")
    for c in d["containers"]:
        for p in c["ports"]:
            body_host.append(f"publish {d['uplink'].split('/')[0]}:{p['hostPort']}/{p['protocol']}"
                             f" → {c['ip'].split('/')[0]}:{p['containerPort']}")
    w = max(44, *(len(x) + 4 for x in body_host), len(d["host"]) + 14, len(d["outside"]) + 16)
    out = [f"lab {d['lab']} (firewall backend: {d['backend']})", ""]
    out.append(f"  ┌─ outside: {d['outside']} ".ljust(w + 1, "─") + "┐")
    out.append(f"  │ eth0 {d['peer']}".ljust(w + 1) + "│")
    out.append("  └" + "─" * (w - 3) + "┬┘")
    out.append(" " * w + "│ veth (uplink)")
    out.append(f"  ┌─ host: {d['host']} ".ljust(w, "─") + "┴┐")
    for line in body_host:
        out.append(f"  │ {line}".ljust(w + 1) + "│")
    out.append("  └" + "─" * (w - 2) + "┘")
    for c in d["containers"]:
        out.append(f"      {c['veth']} ══ veth pair ══ eth0 in {c['ns']} ({c['name']}) {c['ip']}")
    return "\n".join(out) + "\n"


def svg(d: dict) -> str:
    cs = d["containers"]
    width, height = 860, 260 + 70 * max(1, len(cs))
    e = escape
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="monospace" font-size="13">',
             f'<title>netplug lab {e(d["lab"])}</title>',
             '<rect width="100%" height="100%" fill="white"/>',
             f'<text x="20" y="28" font-size="16" font-weight="bold">lab {e(d["lab"])} — backend '
             f'{e(str(d["backend"]))}</text>']

    def box(x, y, w, h, title, lines, fill):
        parts.append(f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="8" fill="{fill}" stroke="#333"/>')
        parts.append(f'<text x="{x + 10}" y="{y + 20}" font-weight="bold">{e(title)}</text>')
        for i, t in enumerate(lines):
            parts.append(f'<text x="{x + 10}" y="{y + 40 + 17 * i}">{e(t)}</text>')

    box(20, 50, 250, 70, f"outside ({d['outside']})", [f"eth0 {d['peer']}"], "#eef")
    hy = 160
    hh = 80 + 17 * sum(len(c["ports"]) for c in cs)
    box(20, hy, 330, hh, f"host ({d['host']})",
        [f"up0 {d['uplink']}", f"netplug0 bridge {d['bridge']}"] +
        [f"publish :{p['hostPort']}/{p['protocol']} → {c['ip'].split('/')[0]}:{p['containerPort']}"
         for c in cs for p in c["ports"]], "#efe")
    parts.append(f'<line x1="145" y1="120" x2="145" y2="{hy}" stroke="#333" stroke-width="2"/>')
    parts.append(f'<text x="152" y="{(120 + hy) // 2}">uplink veth</text>')
    for i, c in enumerate(cs):
        y = 60 + 90 * i
        box(560, y, 270, 60, f"{c['name']} ({c['ns']})", [f"eth0 {c['ip']}"], "#fee")
        parts.append(f'<line x1="350" y1="{hy + 45}" x2="560" y2="{y + 30}" stroke="#933" stroke-width="2"/>')
        parts.append(f'<text x="380" y="{(hy + 45 + y + 30) // 2 - 4}">{e(c["veth"])}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
