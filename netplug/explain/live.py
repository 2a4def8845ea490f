"""Gather the live rules and host facts of a network namespace (the thin, impure edge)."""

import glob
import ipaddress
import json
import os
import shutil
import socket
import subprocess
from contextlib import contextmanager

from ..netlink import ns
from ..state import end_of, head_of
from .analyze import Context
from .model import Ruleset
from .parse_nft import parse_nft_json
from .parse_save import parse_save

SBIN = "/usr/sbin:/sbin:/usr/bin:/bin"


@contextmanager
def in_netns(name: str | None):
    if not name:
        yield
        return
    path = name if name.startswith("/") else f"/run/netns/{name}"
    if not os.path.exists(path):
        raise FileNotFoundError(f"no network namespace {name!r} (see `ip netns list`)")
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with ns.entered(fd):
            yield
    finally:
        os.close(fd)


def _run(*cmd) -> str:
    exe = shutil.which(cmd[0], path=SBIN)
    if not exe:
        return ""
    p = subprocess.run([exe, *cmd[1:]], capture_output=True, text=True)
    return p.stdout if p.returncode == 0 else ""


def gather_rules() -> tuple[Ruleset, list[str]]:
    """Every backend present: iptables-nft, iptables-legacy, native nftables tables."""
    rs = Ruleset(source="live")
    backends = []
    from ..firewall import libnft

    nft_objs = []
    if libnft.available() is None:
        try:
            nft_objs = libnft.run_json("list ruleset")
        except libnft.NftError:
            nft_objs = []
    xt_tables = {o["table"]["name"] for o in nft_objs if "table" in o and o["table"]["family"] == "ip"
                 and o["table"]["name"] in ("nat", "filter", "mangle", "raw")}
    from ..firewall.backend import legacy_tables_present

    # without libnftables we can't see which tables exist: ask iptables-nft-save anyway
    nft_blind = libnft.available() is not None
    for present, tool, origin in ((bool(xt_tables) or nft_blind, "iptables-nft-save", "iptables"),
                                  (legacy_tables_present(), "iptables-legacy-save", "iptables-legacy")):
        text = _run(tool, "-c") if present else ""
        if text:
            part = parse_save(text, origin=origin)
            if any(True for _ in part.rules()):
                backends.append(origin)
            rs.tables += part.tables
    native = parse_nft_json(json.dumps({"nftables": nft_objs}), skip_xt=True)
    if any(True for _ in native.rules()):
        backends.append("nftables")
    rs.tables += native.tables
    return rs, backends


def gather_context(state_dir: str = "/run/netplug", data_dirs=("/var/lib/cni/networks",)) -> Context:
    from ..netlink.link import Links, _iproute

    ctx = Context(live=True)
    with Links() as l, _iproute() as ipr:
        names = {}
        for msg in ipr.get_links():
            idx, name = msg["index"], msg.get_attr("IFLA_IFNAME")
            names[idx] = name
            info = msg.get_attr("IFLA_LINKINFO")
            if info and info.get_attr("IFLA_INFO_KIND") == "bridge":
                ctx.bridges[name] = []
        for a in ipr.get_addr(family=socket.AF_INET):
            dev = names.get(a["index"], "?")
            ip = a.get_attr("IFA_ADDRESS")
            ctx.local_addrs[ip] = dev
            if dev in ctx.bridges:
                ctx.bridges[dev].append(str(ipaddress.ip_interface(f"{ip}/{a['prefixlen']}").network))
        for r in l.routes():
            if r["oif"] in names:
                ctx.routes.append((str(r["dst"]), names[r["oif"]]))
        for m in ipr.get_links(family=socket.AF_BRIDGE):
            p = m.get_attr("IFLA_PROTINFO")
            if p is not None and m.get_attr("IFLA_MASTER"):
                ctx.hairpin[m.get_attr("IFLA_IFNAME")] = str(p.get_attr("IFLA_BRPORT_MODE") or 0)
    ctx.ip_forward = _sysctl("ip_forward")
    for br in ctx.bridges:
        ctx.route_localnet[br] = _sysctl("conf", br, "route_localnet") or "0"
    ctx.containers = containers(state_dir, data_dirs)
    return ctx


def _sysctl(*parts) -> str | None:
    try:
        with open(os.path.join("/proc/sys/net/ipv4", *parts)) as f:
            return f.read().strip()
    except OSError:
        return None


def containers(state_dir: str, data_dirs) -> dict:
    """ip -> {container_id, network, ifname}: netplug's attachment records, then any
    host-local compatible IPAM store (netplug-ipam, host-local)."""
    out = {}
    for path in glob.glob(os.path.join(state_dir, "*", "*.json")):
        try:
            with open(path) as f:
                text = f.read()
            a = head_of(text)
        except (OSError, ValueError):
            continue
        for ip in end_of(text) or a.get("ips", []):
            out[ip.split("/")[0]] = {"container_id": a["container_id"], "network": a["network"],
                                     "ifname": a.get("ifname", "")}
    for d in data_dirs:
        for path in glob.glob(os.path.join(d, "*", "*")):
            name = os.path.basename(path)
            try:
                ipaddress.ip_address(name)
            except ValueError:
                continue
            if name in out:
                continue
            try:
                with open(path, newline="") as f:
                    cid, _, ifname = f.read().partition("\r\n")
            except OSError:
                continue
            out[name] = {"container_id": cid.strip(), "network": os.path.basename(os.path.dirname(path)),
                         "ifname": ifname.strip()}
    return out


def filter_facts(rs: Ruleset, ctx: Context) -> None:
    """FORWARD policy and which interfaces FORWARD accepts, from the filter tables read."""
    # An accept in one table does not overrule a drop in another (each base chain votes), so
    # only accepts in the table whose FORWARD policy is DROP count.
    for t in rs.tables:
        if t.name != "filter" or "FORWARD" not in t.chains:
            continue
        if t.chains["FORWARD"].policy.upper() != "DROP":
            continue
        ctx.filter_forward_policy = "DROP"
        for ch in t.chains.values():
            for r in ch.rules:
                if r.target == "ACCEPT":
                    for iface in (r.iif, r.oif):
                        if iface and not (r.iif_neg or r.oif_neg):
                            ctx.forward_accepts.append(iface)
