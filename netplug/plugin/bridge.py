"""The `netplug` CNI plugin: bridge + veth + IPAM + MASQUERADE/DNAT, Docker's bridge network.

Runs in the calling thread's network namespace, which is "the host" (the exec'd plugin's own
netns, or the caller's netns when netplugd serves the request).
"""

import ipaddress
import os

from ..cni.config import NetConf, PortMapping
from ..cni.env import Request
from ..cni.result import Interface, IPConfig, Result, Route, parse_result
from ..errors import ConfigError, NetplugError, SetupError, UnavailableError
from ..firewall import backend as fwb
from ..firewall import libnft
from ..firewall import plan as P
from ..ipam import delegate
from ..ipam import local as ipam_local
from ..netlink import ns, sysctl
from ..state import Attachment, StateStore
from ..netlink.link import refuse_non_bridge
from .undo import Undo, fault_point
from ..log import log

OWN_IPAM = "netplug-ipam"


def _one_nft_context(fn):
    """All of an operation's nftables reads and its commit share one netlink socket (see
    libnft.session): closing each would wait for the kernel's RCU grace period after a delete."""
    def wrapped(*args, **kwargs):
        with libnft.session():
            return fn(*args, **kwargs)
    wrapped.__name__, wrapped.__doc__ = fn.__name__, fn.__doc__
    return wrapped


def host_veth_name(owner: str) -> str:
    return "np" + owner[:12]


# --- IPAM: in-process for our own type, exec'd per the CNI contract for any other ----------------

def ipam_run(req: Request, nc: NetConf, command: str, undo_log: list | None = None,
             hint: list | None = None) -> Result | None:
    if nc.ipam is None:
        raise ConfigError("network config has no ipam section",
                          'add "ipam": {"type": "netplug-ipam", "ranges": [[{"subnet": "172.17.0.0/16"}]]}')
    if nc.ipam.type == OWN_IPAM:
        if command == "ADD":
            return ipam_local.add(nc, req.container_id, req.ifname, undo_log, check_duplicate=False)
        if command == "DEL":
            ipam_local.delete(nc, req.container_id, req.ifname, hint)
        elif command == "CHECK":
            ipam_local.check(nc, req.container_id, req.ifname, hint)
        elif command == "STATUS":
            ipam_local.status(nc)
        elif command == "GC":
            ipam_local.gc(nc, set(nc.valid_attachments or []))
        return None
    conf = dict(nc.raw)
    if command == "ADD":
        conf.pop("prevResult", None)
    try:
        out = delegate.run(nc.ipam.type, command, req.env, conf, req.path)
    except delegate.PluginNotFound as e:
        if command in ("DEL", "GC"):  # it can't hold anything for us if it isn't there
            log.warning("%s: skipping IPAM %s", e.msg, command)
            return None
        raise
    return parse_result(out) if out else None


# --- ADD ---------------------------------------------------------------------------------------

@_one_nft_context
def add(req: Request, nc: NetConf) -> Result:
    owner = P.owner_hash(nc.name, req.container_id, req.ifname)
    store = StateStore(nc.state_dir, nc.name)
    host_fd = ns.current_fd()
    cont_fd = ns.open_netns(req.netns)
    try:
        ns.refuse_own_netns(cont_fd, host_fd, req.netns)
        backend = _backend_for(nc)
        with Undo() as undo:
            _reserve_ports_and_record(store, nc, req, owner, backend, undo)
            fault_point(req.env, "after-record")
            res = _add(req, nc, owner, store, cont_fd, backend, undo)
            undo.commit()
        return res
    finally:
        os.close(cont_fd)
        os.close(host_fd)


def _backend_for(nc: NetConf):
    needs_fw = nc.ip_masq or nc.port_mappings
    if not needs_fw:
        return None
    b = fwb.choose(nc.firewall_backend, nc.state_dir)
    if b.name == "none":
        return None
    reason = b.unavailable()
    if reason:
        raise UnavailableError(f"firewall backend {b.name} is not usable: {reason}")
    return b


def _reserve_ports_and_record(store: StateStore, nc: NetConf, req: Request, owner: str,
                              backend, undo: Undo) -> None:
    with store.ports_lock():
        existing = store.get(owner)
        if existing and existing.complete:
            raise ConfigError(f"container {req.container_id} already has interface {req.ifname} "
                              f"on network {nc.name}", "DEL it before adding it again")
        if existing:  # left by an ADD that was killed: clean it before starting over
            _teardown(req, nc, existing, store, keep_record=True)
            # (its rules are gone now, so the ADD below is "fresh" again)
        for pm in nc.port_mappings:
            for ip, holder in store.port_holders(pm.protocol, pm.host_port, pm.host_ip).items():
                if holder.get("owner") == owner:
                    continue
                if ip == (pm.host_ip or "0.0.0.0") or "0.0.0.0" in (ip, pm.host_ip or "0.0.0.0"):
                    raise ConfigError(
                        f"Bind for {pm.host_ip or '0.0.0.0'}:{pm.host_port} failed: port is already allocated",
                        f"{pm.protocol}/{pm.host_port} is published by container {holder.get('container_id')} "
                        f"on network {holder.get('network')}")
        store.put(Attachment(
            network=nc.name, container_id=req.container_id, ifname=req.ifname, owner=owner,
            host_veth=host_veth_name(owner), bridge=nc.bridge, netns=req.netns,
            backend=backend.name if backend else "",
            port_mappings=[pm.to_json() for pm in nc.port_mappings]))
        for pm in nc.port_mappings:
            store.claim_port(pm.protocol, pm.host_port, pm.host_ip, owner)
    undo.push("attachment record", _forget, store, owner, nc.port_mappings)


def _forget(store: StateStore, owner: str, mappings: list[PortMapping]) -> None:
    with store.ports_lock():
        for pm in mappings:
            store.release_port(pm.protocol, pm.host_port, pm.host_ip, owner)
        store.remove(owner)


def _add(req, nc, owner, store, cont_fd, backend, undo) -> Result:
    from ..netlink.link import Links
    from ..netlink.rtnl import random_mac

    undo_log: list = []
    try:
        ipam_res = ipam_run(req, nc, "ADD", undo_log)
    finally:
        undo.push("IPAM reservation", _ipam_release, req, nc, undo_log)
    if not ipam_res or not ipam_res.ips:
        raise SetupError(f"IPAM plugin {nc.ipam.type} returned no IP address")
    fault_point(req.env, "after-ipam")
    v4 = [ip for ip in ipam_res.ips if ip.address.version == 4]
    gws = [ipaddress.ip_interface(f"{ip.gateway}/{ip.address.network.prefixlen}")
           for ip in ipam_res.ips if nc.is_gateway and ip.gateway]
    with Links() as host:
        br, held, forwarding = host.lookup_with_addresses(nc.bridge, {g.version for g in gws}, nc.is_gateway)
        localnet_on = bool(br and br.get("route_localnet"))
        if br is not None:
            refuse_non_bridge(nc.bridge, br)
        # Before creating anything, a clash with a host route is fatal. A bridge that already
        # holds its gateways had its subnets checked when they were added (Docker also checks a
        # network's subnet once); `netplug explain --check` reports a route added later.
        if len(gws) < len(ipam_res.ips) or not all(g in held.get(g.version, ()) for g in gws):
            for ip in ipam_res.ips:
                host.refuse_overlap(ip.address.network, nc.bridge)
        br = host.ensure_bridge(nc.bridge, nc.mtu, nc.promisc_mode, br)
        if nc.is_gateway:
            for gw in gws:
                host.ensure_gateway(nc.bridge, br["index"], gw, nc.force_address, held.get(gw.version))
            if not forwarding:  # off, or the kernel did not say
                sysctl.enable_forwarding()
        hv = host_veth_name(owner)
        undo.push("host veth", _delete_link, hv)  # also if it fails halfway (deleting none is fine)
        # The container end's MAC is chosen here (random, locally administered, as the kernel
        # would), so neither it nor the index (the echo's IFLA_LINK) needs a lookup over there.
        peer_mac = nc.mac or random_mac()
        hvi = host.create_veth(hv, req.ifname, cont_fd, nc.mtu, peer_mac, br["index"],
                               nc.hairpin_mode or bool(nc.port_mappings))
        sysctl.ipv6_off(hv)  # before the container's end (and so the carrier) comes up
        fault_point(req.env, "after-veth")
        routes = _container_routes(nc, ipam_res)
        with ns.entered(cont_fd):
            cont = Links()
        with cont:
            ci = {"index": hvi["link"], "mac": peer_mac, "mtu": hvi["mtu"]} if hvi.get("link") \
                else cont.lookup(req.ifname)
            if ci is None:
                raise SetupError(f"{req.ifname} is missing in {req.netns} right after it was created")
            cont.configure(ci["index"], [ip.address for ip in ipam_res.ips], routes)
    # Not on a thread beside the links: creating a netdev waits for nf_tables' commit mutex
    # (its netdev notifier), and the GIL serialises the rest, so overlap gained nothing here.
    if backend is not None and v4:
        _firewall_add(req, nc, owner, store, backend, v4[0].address, undo, localnet_on)
        fault_point(req.env, "after-firewall")
    res = Result(interfaces=[Interface(nc.bridge, br["mac"]), Interface(hv, hvi["mac"]),
                             Interface(req.ifname, ci["mac"], ci["mtu"], req.netns)])
    res.ips = [IPConfig(ip.address, ip.gateway, 2) for ip in ipam_res.ips]
    res.routes = [Route(dst, gw) for dst, gw in routes] if routes else []
    res.dns = nc.dns or ipam_res.dns
    store.complete(owner, [str(ip.address) for ip in ipam_res.ips])
    return _chain_onto_prev(nc, res)


def _delete_link(name: str) -> None:
    from ..netlink.link import Links

    with Links() as host:
        host.delete(name)


def _container_routes(nc: NetConf, ipam_res: Result) -> list[tuple[str, str]]:
    routes = []
    have_default = set()
    for r in ipam_res.routes:
        gw = r.gw
        dst = ipaddress.ip_network(r.dst)
        if not gw:
            gw = next((ip.gateway for ip in ipam_res.ips if ip.address.version == dst.version), "")
        routes.append((str(dst), gw))
        if dst.prefixlen == 0:
            have_default.add(dst.version)
    if nc.is_default_gateway:
        for ip in ipam_res.ips:
            if ip.gateway and ip.address.version not in have_default:
                routes.append(("0.0.0.0/0" if ip.address.version == 4 else "::/0", ip.gateway))
                have_default.add(ip.address.version)
    return routes


def _chain_onto_prev(nc: NetConf, res: Result) -> Result:
    """Chained after another plugin: its result plus our own changes only."""
    if not nc.prev_result:
        return res
    prev = parse_result(nc.prev_result)
    off = len(prev.interfaces)
    for ip in res.ips:
        ip.interface = (ip.interface or 0) + off
    prev.interfaces += res.interfaces
    prev.ips += res.ips
    prev.routes += res.routes
    prev.dns = res.dns or prev.dns
    return prev


def _firewall_add(req, nc, owner, store, backend, addr, undo, localnet_on=False) -> None:
    ip = str(addr.ip)
    # the configured range's subnet, else (an IPAM we don't parse, e.g. dhcp) the result's prefix
    subnet = str(nc.ipam.first_range.subnet) if nc.ipam and nc.ipam.ranges else str(addr.network)
    shared = P.base() + P.network(nc.name, subnet, nc.bridge, nc.ip_masq, nc.cluster_cidr)
    plan = shared + P.container(nc.name, req.container_id, owner, ip, subnet, nc.port_mappings)
    # A fresh attachment has no rules yet (its record precedes any rule), so only the shared
    # chains need reading: the cost of ADD stays flat however many containers there are.
    scope = {(r.table, r.chain) for r in shared.ensure}
    with store.network_lock():
        backend.sync(plan, remove=[P.container_tag(owner)], scope=scope)
    undo.push("firewall rules", _firewall_remove_owner, backend, owner)
    if nc.port_mappings:
        if not localnet_on:  # the bridge's link said it is off, or the bridge is new
            sysctl.route_localnet(nc.bridge)
        _flush_udp(nc.port_mappings)


class Background:
    """fn(*args) on a thread of its own, which starts in the creating thread's network namespace
    (setns is per thread) and has its own libnftables session. join() returns its exception."""

    def __init__(self, fn, *args):
        import _thread  # not threading: the exec'd plugin needs a lock, not that module

        self.error = None
        self._done = _thread.allocate_lock()
        self._done.acquire()
        _thread.start_new_thread(self._run, (fn, args))

    def _run(self, fn, args):
        try:
            with libnft.session():
                fn(*args)
        except BaseException as e:  # handed to join(): a failure in a thread must not vanish
            self.error = e
        finally:
            self._done.release()

    def join(self):
        self._done.acquire()
        return self.error


def _firewall_remove_owner(backend, owner):
    backend.sync(P.Plan(), remove=[P.container_tag(owner)], remove_chains=[("nat", P.dn_chain(owner))])


def _flush_udp(mappings) -> None:
    """Forget UDP flows to a host port, so a flow set up before the mapping (or to a container
    that is gone) does not keep bypassing the DNAT rule (plugins#123, #1190).

    Through conntrack-tools when installed (one ~3 ms exec per port; the forked child inherits
    this thread's namespace), else through pyroute2, whose import costs an exec ~250 ms."""
    udp = [m for m in mappings if m.protocol == "udp"]
    if not udp:
        return
    import shutil

    exe = shutil.which("conntrack", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if exe:
        import subprocess

        for m in udp:
            p = subprocess.run([exe, "-D", "-f", "ipv4", "-p", "udp", "--orig-port-dst", str(m.host_port)],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True)
            if p.returncode not in (0, 1):  # 1: there was nothing to delete
                log.warning("conntrack -D udp/%d: %s", m.host_port, p.stderr.strip())
        return
    _flush_udp_pyroute2(udp)


def _flush_udp_pyroute2(udp) -> None:
    import socket

    from ..netlink.link import _lazy_pyroute2

    _lazy_pyroute2()
    from pyroute2.conntrack import Conntrack
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    with Conntrack() as ct:
        for m in udp:
            flt = NFCTAttrTuple(proto=socket.IPPROTO_UDP, dport=m.host_port)
            for entry in list(ct.dump_entries(tuple_orig=flt)):
                try:
                    ct.entry("del", tuple_orig=entry.tuple_orig)
                except Exception as err:  # expired meanwhile
                    log.debug("conntrack delete: %s", err)


def _ipam_release(req, nc, undo_log):
    if undo_log:  # our own store: restore it exactly, cursor included
        ipam_local.rollback(nc, req.container_id, req.ifname, *undo_log[0])
    else:
        ipam_run(req, nc, "DEL")


# --- DEL ---------------------------------------------------------------------------------------

@_one_nft_context
def delete(req: Request, nc: NetConf) -> None:
    owner = P.owner_hash(nc.name, req.container_id, req.ifname)
    store = StateStore(nc.state_dir, nc.name)
    a = store.get(owner) or Attachment(
        network=nc.name, container_id=req.container_id, ifname=req.ifname, owner=owner,
        host_veth=host_veth_name(owner), bridge=nc.bridge, netns=req.netns)
    _teardown(req, nc, a, store, keep_record=False)


def _teardown(req: Request, nc: NetConf, a: Attachment, store: StateStore, keep_record: bool) -> None:
    """Best effort, every step: firewall, veth, IPAM, record. Missing things count as done."""
    errors: list[NetplugError] = []
    # Deleting a veth waits for RCU grace periods in the kernel (15-25 ms here) and nothing
    # else depends on it, so it runs on a thread while the rules and the address are released.
    veth = Background(_delete_link, a.host_veth)
    try:
        try:
            _firewall_teardown(nc, a, store)
        except NetplugError as e:
            errors.append(e)
        except Exception as e:  # a bug here must not stop the other steps, nor vanish
            log.error("firewall teardown: %s", e)
            errors.append(NetplugError(f"firewall teardown failed: {type(e).__name__}: {e}"))
        try:
            hint = [ipaddress.ip_interface(x).ip for x in a.ips]
            ipam_run(_req_for(req, a), nc, "DEL", hint=hint)
        except NetplugError as e:
            errors.append(e)
        udp = [PortMapping(m["hostPort"], m["containerPort"], m["protocol"]) for m in a.port_mappings]
        try:
            _flush_udp(udp)
        except Exception as e:  # conntrack is optional hygiene
            log.warning("conntrack flush: %s", e)
    finally:
        err = veth.join()
    if isinstance(err, NetplugError):
        errors.append(err)
    elif err is not None:
        raise err
    if errors:
        raise errors[0]
    if not keep_record:
        mappings = [PortMapping(m["hostPort"], m["containerPort"], m["protocol"], m.get("hostIP", ""))
                    for m in a.port_mappings]
        _forget(store, a.owner, mappings)


def _req_for(req: Request, a: Attachment) -> Request:
    if req.container_id == a.container_id and req.ifname == a.ifname:
        return req
    env = dict(req.env, CNI_CONTAINERID=a.container_id, CNI_IFNAME=a.ifname)
    return Request(req.command, a.container_id, a.netns, a.ifname, req.args, req.path, env)


@_one_nft_context
def _firewall_teardown(nc: NetConf, a: Attachment, store: StateStore) -> None:
    backends = fwb.all_present(nc.state_dir)
    if a.backend and a.backend not in [b.name for b in backends] and a.backend != "none":
        b = fwb.make(a.backend, nc.state_dir)
        if b.unavailable() is None:
            backends.append(b)
    if not backends:
        return
    with store.network_lock():
        store.mark_deleting(a.owner)
        last = not (store.live_owners() - {a.owner})
        remove = [P.container_tag(a.owner)] + ([P.network_tag(nc.name)] if last else [])
        scope = {("nat", P.HOSTPORTS), ("nat", P.dn_chain(a.owner))}
        for b in backends:
            b.sync(P.Plan(), remove=remove, remove_chains=[("nat", P.dn_chain(a.owner))], prune=last,
                   scope=scope)


# --- CHECK -------------------------------------------------------------------------------------

@_one_nft_context
def check(req: Request, nc: NetConf) -> None:
    from ..netlink.link import Links

    if not nc.prev_result:
        raise ConfigError("CHECK needs prevResult (the result of ADD)")
    prev = parse_result(nc.prev_result)
    owner = P.owner_hash(nc.name, req.container_id, req.ifname)
    store = StateStore(nc.state_dir, nc.name)
    a = store.get(owner)
    if a is None or not a.complete:
        raise ConfigError(f"container {req.container_id} interface {req.ifname} is not attached to "
                          f"network {nc.name}")
    ipam_run(req, nc, "CHECK", hint=[ipaddress.ip_interface(x).ip for x in a.ips])
    mine = [i for i, itf in enumerate(prev.interfaces) if itf.name == req.ifname and itf.sandbox]
    want = [ip.address for ip in prev.ips if ip.interface in mine or (ip.interface is None and not mine)]
    cont_fd = ns.open_netns(req.netns)
    try:
        with Links() as host:
            br = host.index(nc.bridge)
            if br is None or host.kind(br) != "bridge":
                raise ConfigError(f"bridge {nc.bridge} is missing or not a bridge")
            hv = host.index(a.host_veth)
            if hv is None:
                raise ConfigError(f"host veth {a.host_veth} of container {req.container_id} is missing")
            if host.info(hv)["master"] != br:
                raise ConfigError(f"host veth {a.host_veth} is not a port of {nc.bridge}")
        with ns.entered(cont_fd):
            cont = Links()
        with cont:
            ci = cont.index(req.ifname)
            if ci is None:
                raise ConfigError(f"interface {req.ifname} is missing in {req.netns}")
            have = cont.all_addresses(ci)
            for addr in want:
                if addr not in have:
                    raise ConfigError(f"{req.ifname} in {req.netns} lacks address {addr}")
            if nc.is_default_gateway:
                if not any(r["dst"].prefixlen == 0 and r["oif"] == ci for r in cont.routes()):
                    raise ConfigError(f"default route via {req.ifname} is missing in {req.netns}")
    finally:
        os.close(cont_fd)
    if a.backend:
        b = fwb.make(a.backend, nc.state_dir)
        ip = next((x.split("/")[0] for x in a.ips if ":" not in x), "")
        subnet = str(nc.ipam.first_range.subnet) if nc.ipam and nc.ipam.ranges else ""
        plan = P.base() + P.network(nc.name, subnet, nc.bridge, nc.ip_masq, nc.cluster_cidr) + P.container(
            nc.name, req.container_id, owner, ip, subnet,
            [PortMapping(m["hostPort"], m["containerPort"], m["protocol"], m.get("hostIP", ""))
             for m in a.port_mappings])
        missing = b.missing(plan)
        if missing:
            raise ConfigError(f"firewall rules of container {req.container_id} are not as set up "
                              f"({b.name})", "; ".join(missing))


# --- GC / STATUS ---------------------------------------------------------------------------------

@_one_nft_context
def gc(req: Request, nc: NetConf) -> None:
    valid = set(nc.valid_attachments or [])
    store = StateStore(nc.state_dir, nc.name)
    errors: list[NetplugError] = []
    for a in store.all():
        if (a.container_id, a.ifname) in valid:
            continue
        try:
            _teardown(_req_for(req, a), nc, a, store, keep_record=False)
        except NetplugError as e:
            errors.append(e)
    # rules whose owner has no record (a record lost with /run, or a foreign older install)
    valid_owners = {P.owner_hash(nc.name, c, i) for c, i in valid}
    for b in fwb.all_present(nc.state_dir):
        try:
            stale = [h for h, net in b.owners().items() if net == nc.name and h not in valid_owners]
            if stale:
                with store.network_lock():
                    last = not store.live_owners()
                    b.sync(P.Plan(), remove=[frozenset({f"np:{h}"}) for h in stale]
                           + ([P.network_tag(nc.name)] if last else []),
                           remove_chains=[("nat", P.dn_chain(h)) for h in stale], prune=last)
        except NetplugError as e:
            errors.append(e)
    try:
        ipam_run(req, nc, "GC")
    except NetplugError as e:
        errors.append(e)
    if errors:
        raise NetplugError(f"GC finished with {len(errors)} error(s): {errors[0].msg}",
                           "; ".join(e.msg for e in errors), code=errors[0].code)


@_one_nft_context
def status(req: Request, nc: NetConf) -> None:
    from ..netlink.link import Links

    with Links() as host:
        idx = host.index(nc.bridge)
        if idx is not None and host.kind(idx) != "bridge":
            raise UnavailableError(f'"{nc.bridge}" exists but is not a bridge')
    if nc.ip_masq or nc.port_mappings:
        b = fwb.choose(nc.firewall_backend, nc.state_dir)
        reason = b.unavailable()
        if reason:
            raise UnavailableError(f"firewall backend {b.name} is not usable: {reason}")
    ipam_run(req, nc, "STATUS")
