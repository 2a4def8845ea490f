"""The standard-library rtnetlink client against the real kernel, in throwaway namespaces:
every message the CNI verbs send, read back with iproute2 (and its errors as the kernel words them)."""

import errno
import json
import os

import pytest

from netplug.netlink import rtnl
from netplug.netlink.link import Links
from netplug.netlink.rtnl import AF_INET, NetlinkError, Rtnl
from netns_tools import in_ns, sh

pytestmark = pytest.mark.netns


def ipj(ns_name, *args):
    return json.loads(sh("ip", "-j", "-d", "-n", ns_name, *args).stdout or "[]")


def with_fd(path, fn):
    """fn(fd) with an open fd of the netns at `path`, as the plugin passes it (IFLA_NET_NS_FD)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return fn(fd)
    finally:
        os.close(fd)


def test_veth_bridge_address_route_round_trip(world):
    c = world.container(0)
    cpath = world.netns_path(c)

    def host_side(cfd):
        with Rtnl() as nl:
            nl.link_add("br-t", "bridge", 1400)
            br = nl.link_get(name="br-t")
            nl.link_set(br["index"], up=True)
            nl.veth_add("vh-t", "eth7", cfd, 1400, "0a:58:ac:11:00:09")
            v = nl.link_get(name="vh-t")
            nl.link_set(v["index"], master=br["index"])
            nl.request(*rtnl.bridge_port_msg("vh-t", True))
            nl.link_set(v["index"], up=True)
            nl.addr(True, br["index"], AF_INET, "172.17.0.1", 16)
            return br, nl.link_get(index=v["index"]), nl.addrs(AF_INET, br["index"])

    br, v, addrs = in_ns(world.netns_path(world.host), lambda: with_fd(cpath, host_side))
    assert (br["kind"], br["mtu"]) == ("bridge", 1400)
    assert (v["kind"], v["master"], v["up"]) == ("veth", br["index"], True)
    assert [(a["address"], a["prefixlen"]) for a in addrs] == [("172.17.0.1", 16)]
    port = ipj(world.host, "link", "show", "vh-t")[0]
    assert port["linkinfo"]["info_slave_data"]["hairpin"] is True
    inet = [a for a in ipj(world.host, "addr", "show", "br-t")[0]["addr_info"] if a["family"] == "inet"]
    assert (inet[0]["local"], inet[0]["broadcast"]) == ("172.17.0.1", "172.17.255.255")

    def container_side():
        with Rtnl() as nl:
            e = nl.link_get(name="eth7")
            nl.addr(True, e["index"], AF_INET, "172.17.0.9", 16)
            nl.link_set(e["index"], up=True)
            nl.route_add(AF_INET, "0.0.0.0", 0, e["index"], "172.17.0.1")
            nl.route_add(AF_INET, "198.51.100.0", 24, e["index"])
            return e, nl.routes(AF_INET)

    e, routes = in_ns(cpath, container_side)
    assert (e["mac"], e["mtu"]) == ("0a:58:ac:11:00:09", 1400)
    got = {(r["dst"], r["dst_len"], r["gateway"]) for r in routes}
    assert {(None, 0, "172.17.0.1"), ("198.51.100.0", 24, None), ("172.17.0.0", 16, None)} <= got
    shown = sh("ip", "-n", c, "route").stdout
    assert "default via 172.17.0.1 dev eth7" in shown and "198.51.100.0/24 dev eth7" in shown


def test_kernel_refusals_carry_errno_and_text(world):
    def go():
        with Rtnl() as nl:
            with pytest.raises(NetlinkError) as missing:
                nl.link_get(name="no-such-dev")
            nl.link_add("dup0", "bridge")
            with pytest.raises(NetlinkError) as dup:
                nl.link_add("dup0", "bridge")
            with pytest.raises(NetlinkError) as bad:
                nl.link_add("x0", "no-such-kind")
            return missing.value, dup.value, bad.value

    missing, dup, bad = in_ns(world.netns_path(world.host), go)
    assert missing.code == errno.ENODEV
    assert dup.code == errno.EEXIST
    assert bad.code == errno.EOPNOTSUPP and "Unknown device type" in bad.strerror


def test_links_verbs_map_errors_to_cni_errors(world):
    """A peer name taken in the container is the runtime's mistake (a config error), named."""
    from netplug.errors import ConfigError

    c = world.container(0)
    sh("ip", "-n", c, "link", "add", "eth0", "type", "bridge")
    cpath = world.netns_path(c)

    def go(cfd):
        with Links() as links:
            with pytest.raises(ConfigError, match="eth0 already exists"):
                links.create_veth("vh-x", "eth0", cfd, 1500)
            return links.lookup("vh-x"), links.delete("vh-x")

    assert in_ns(world.netns_path(world.host), lambda: with_fd(cpath, go)) == (None, False)  # nothing half-made


def test_dump_of_many_links_spans_several_reads(world):
    """Dumps arrive in several datagrams; all of them are read and none is left to confuse the
    next request on the same socket."""
    def go():
        with Rtnl() as nl:
            for i in range(150):
                nl.link_add(f"b{i}", "bridge")
            idx = [nl.link_get(name=f"b{i}")["index"] for i in range(150)]
            for i in idx:
                nl.addr(True, i, AF_INET, f"198.51.100.{idx.index(i) + 1}", 32)
            n = len([a for a in nl.addrs(AF_INET) if a["address"].startswith("198.51.100.")])
            return n, nl.link_get(name="b149")["name"]

    n, name = in_ns(world.netns_path(world.host), go)
    assert n == 150 and name == "b149"


def test_nft_text_listing_reads_what_the_json_listing_reads(world):
    """DEL and ADD read chains as text (3x cheaper than JSON at 200 rules): same rules, handles,
    comments and chains as the JSON reading of the whole table."""
    from netplug.firewall.nftables import NftBackend

    base = {"cniVersion": "1.1.0", "name": "lst", "type": "netplug", "bridge": "np-lst",
                    "ipMasq": True, "firewallBackend": "nftables", "stateDir": f"{world.tmp}/state",
                    "ipam": {"type": "netplug-ipam", "ranges": [[{"subnet": "172.17.0.0/16"}]],
                             "dataDir": f"{world.tmp}/ipam"}}
    for i in range(3):
        c = world.container(i)
        conf = dict(base, runtimeConfig={"portMappings": [{"hostPort": 8080 + i, "containerPort": 80}]})
        r = world.cni("ADD", conf, cid=f"c{i}", ns=c)
        assert r.rc == 0, r.out + r.err

    def both():
        b = NftBackend(f"{world.tmp}/state")
        live_j, chains_j = b._list()
        scope = {(t, c) for t, c in chains_j}
        live_t, chains_t = b._list(scope)
        return live_j, chains_j, live_t, chains_t

    live_j, chains_j, live_t, chains_t = in_ns(world.netns_path(world.host), both)
    key = lambda lr: (lr.table, lr.chain, lr.comment, lr.ref)  # noqa: E731
    assert sorted(map(key, live_t)) == sorted(map(key, live_j))
    assert chains_t == chains_j
    assert sum(1 for lr in live_t if lr.comment) >= 6


def test_veth_made_as_an_up_bridge_port_with_hairpin_and_a_down_peer(world):
    """One request makes the pair with its host end enslaved and up; the peer waits for its
    addresses, so no frame crosses before hairpin is set."""
    c = world.container(0)
    cpath = world.netns_path(c)

    def go(cfd):
        with Links() as links:
            br = links.ensure_bridge("br-h", 1500, False)
            return br, links.create_veth("vh-h", "eth0", cfd, 1500, "", br["index"], True)

    br, v = in_ns(world.netns_path(world.host), lambda: with_fd(cpath, go))
    assert (v["master"], v["up"]) == (br["index"], True)
    port = ipj(world.host, "link", "show", "vh-h")[0]
    assert port["linkinfo"]["info_slave_data"]["hairpin"] is True
    assert "UP" not in ipj(c, "link", "show", "eth0")[0]["flags"]


def test_exchange_answers_each_request_of_one_datagram(world):
    """Several requests in one datagram: each gets its own answer, a refusal in the middle stops
    nothing after it, and the socket is clean for the next request."""
    def go():
        with Rtnl() as nl:
            nl.link_add("br-x", "bridge")
            idx = nl.link_get(name="br-x")["index"]
            answers = nl.exchange([
                rtnl.addr_msg(True, idx, AF_INET, "198.51.100.1", 24),
                rtnl.addr_msg(True, idx, AF_INET, "198.51.100.1", 24),  # the same again: refused
                rtnl.link_get_msg("no-such-dev"),
                rtnl.link_set_msg(idx, up=True),
                rtnl.link_get_msg("br-x"),
                rtnl.addr_dump_msg(AF_INET),
            ])
            return idx, answers, nl.link_get(index=idx)

    idx, answers, after = in_ns(world.netns_path(world.host), go)
    errs = [e.code if e else 0 for _, e in answers]
    assert errs == [0, errno.EEXIST, errno.ENODEV, 0, 0, 0]
    assert rtnl.parse_link(answers[4][0][0])["index"] == idx and after["up"]
    assert [a["address"] for a in rtnl.addrs_of(answers[5][0], AF_INET, idx)] == ["198.51.100.1"]


def test_create_veth_replaces_a_stale_host_end_and_names_the_peer(world):
    """A host end left by a killed ADD of the same attachment is replaced; the result carries
    the container end's index (the echo's IFLA_LINK), so nothing is looked up over there."""
    c = world.container(0)
    cpath = world.netns_path(c)
    sh("ip", "-n", world.host, "link", "add", "vh-s", "type", "veth", "peer", "name", "vh-s-old")

    def go(cfd):
        with Links() as links:
            return links.create_veth("vh-s", "eth0", cfd, 1500, "02:00:00:00:00:05")

    v = in_ns(world.netns_path(world.host), lambda: with_fd(cpath, go))
    eth0 = ipj(c, "link", "show", "eth0")[0]
    assert (v["link"], eth0["address"]) == (eth0["ifindex"], "02:00:00:00:00:05")
    assert ipj(world.host, "link", "show", "vh-s")[0]["link_netnsid"] is not None
    assert sh("ip", "-n", world.host, "link", "show", "vh-s-old", check=False).returncode != 0


def test_configure_names_the_step_the_kernel_refused(world):
    """Addresses, up and routes go in one datagram; a refused route is reported as that route."""
    import ipaddress

    from netplug.errors import SetupError

    c = world.container(0)
    sh("ip", "-n", c, "link", "add", "eth0", "type", "veth", "peer", "name", "p0")

    def go():
        with Links() as links:
            idx = links.index("eth0")
            with pytest.raises(SetupError, match="add route 0.0.0.0/0 via 192.0.2.1"):
                links.configure(idx, [ipaddress.ip_interface("172.17.0.5/16")], [("0.0.0.0/0", "192.0.2.1")])
            links.configure(idx, [ipaddress.ip_interface("172.17.0.5/16")], [("0.0.0.0/0", "172.17.0.1")])
            return links.info(idx)["up"]

    assert in_ns(world.netns_path(c), go) is True  # the address already there is no error
    assert "default via 172.17.0.1 dev eth0" in sh("ip", "-n", c, "route").stdout


def test_bridge_lookup_dumps_one_device_and_survives_a_stale_hint(world):
    """The address dump names the bridge's last index, and the kernel (strict checking) walks
    only that device. A hint that names another device, or none, is corrected."""
    from netplug.netlink import link as link_mod

    def go():
        with Rtnl() as nl:
            nl.link_add("dm-x", "bridge")  # another device with an address
            dm = nl.link_get(name="dm-x")["index"]
            nl.addr(True, dm, AF_INET, "192.0.2.5", 24)
            nl.link_add("br-y", "bridge")
            br = nl.link_get(name="br-y")["index"]
            nl.addr(True, br, AF_INET, "172.17.0.1", 16)
            mtype, body, flags = rtnl.addr_dump_msg(AF_INET, br)
            only = [rtnl.parse_addr(b)["index"] for b in nl.dump(mtype, body)]
        seen = []
        with Links() as links:
            for hint in (None, dm, 99999):  # none yet, another device's, a device that is gone
                if hint is None:
                    link_mod._last_index.pop("br-y", None)
                else:
                    link_mod._last_index["br-y"] = hint
                got, held, _ = links.lookup_with_addresses("br-y", {4})
                seen.append((got["index"], [str(a) for a in held[4]], link_mod._last_index["br-y"]))
            got, held, _ = links.lookup_with_addresses("br-y", {4})  # the hint is right now
            seen.append((got["index"], [str(a) for a in held[4]], link_mod._last_index["br-y"]))
        return br, only, seen

    br, only, seen = in_ns(world.netns_path(world.host), go)
    assert only == [br]  # the kernel filtered: the dummy's address was not dumped
    assert seen == [(br, ["172.17.0.1/16"], br)] * 4


def test_link_and_netconf_carry_the_sysctls_the_add_needs(world):
    """route_localnet of the bridge (in the link's IFLA_AF_SPEC) and ip_forward (netconf) read
    through netlink say what /proc/sys says, both ways."""
    def go(fwd, localnet):
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write(fwd)
        with Links() as links:
            if links.lookup("br-s") is None:
                links.nl.link_add("br-s", "bridge")
            with open("/proc/sys/net/ipv4/conf/br-s/route_localnet", "w") as f:
                f.write(localnet)
            got, _, forwarding = links.lookup_with_addresses("br-s", set(), forwarding=True)
            return got["route_localnet"], forwarding

    for fwd, localnet in (("0", "1"), ("1", "0"), ("1", "1")):
        assert in_ns(world.netns_path(world.host), lambda: go(fwd, localnet)) == (int(localnet), fwd == "1")


def test_ipv6_off_writes_in_the_callers_namespace_each_time(world):
    """The IPv6 switch-off keeps /proc/sys/net/ipv6/conf open per namespace: a second namespace
    gets its own, and a kept directory that lacks the device (as a gone namespace's would) is
    opened again."""
    from netplug.netlink import sysctl

    other = world.container(1)  # another namespace, with a bridge of the same name

    def make_and_switch_off():
        with Rtnl() as nl:
            nl.link_add("br-6", "bridge")
        sysctl.ipv6_off("br-6")
        with open("/proc/sys/net/ipv6/conf/br-6/disable_ipv6") as f:
            return f.read().strip()

    assert in_ns(world.netns_path(world.host), make_and_switch_off) == "1"
    assert in_ns(world.netns_path(other), make_and_switch_off) == "1"

    def kept_dir_of_a_namespace_without_the_device():
        key = os.stat("/proc/thread-self/ns/net").st_ino
        return key, os.open("/proc/sys/net/ipv6/conf", os.O_PATH | os.O_DIRECTORY)

    third = world.container(2)
    key, _ = in_ns(world.netns_path(third), kept_dir_of_a_namespace_without_the_device)
    _, stale = in_ns(world.netns_path(world.container(3)), kept_dir_of_a_namespace_without_the_device)
    stale_ino = os.fstat(stale).st_ino
    with sysctl._conf6_lock:
        old = sysctl._conf6_dirs.pop(key, None)
        sysctl._conf6_dirs[key] = stale
    if old is not None:
        os.close(old)
    assert in_ns(world.netns_path(third), make_and_switch_off) == "1"
    assert os.fstat(sysctl._conf6_dirs[key]).st_ino != stale_ino  # opened again, in `third`
