"""NAT with real packets between namespaces, on every firewall backend (issue 3)."""

import os
import re

import pytest
from netns_tools import PY, netplug_conf, nsexec, sh

pytestmark = pytest.mark.netns
BACKENDS = ["nftables", "iptables", "iptables-legacy"]


def all_rules(world) -> str:
    """Every rule in the host netns, from every backend (nft shows iptables-nft too)."""
    nft = nsexec(world.host, "nft", "list", "ruleset").stdout
    ipt = nsexec(world.host, "iptables-nft-save", check=False).stdout
    legacy = nsexec(world.host, "iptables-legacy-save", check=False).stdout
    text = "".join(l + "\n" for l in (nft + ipt + legacy).splitlines() if not l.startswith("#"))
    return re.sub(r"\[\d+:\d+\]|counter packets \d+ bytes \d+", "", text)


def netplug_rules(world) -> list[str]:
    return [l for l in all_rules(world).splitlines() if "netplug" in l.lower() or "NETPLUG" in l]


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def published(world, backend, ports, n=2):
    world.add_outside()
    conf = netplug_conf(world, backend=backend, hairpinMode=True)
    cs, res = [], []
    for i in range(n):
        c = world.container(i + 1)
        c_conf = dict(conf, runtimeConfig={"portMappings": ports}) if i == 0 else conf
        r = world.cni("ADD", c_conf, f"c{i + 1}", c)
        assert r.rc == 0, r
        cs.append(c)
        res.append(r.json)
    return conf, cs, res


def test_masquerade_outbound_and_direct_between_containers(world, backend):  # acceptance 1
    conf, (c1, c2), _ = published(world, backend, [])
    world.serve(world.outside, 7000)
    assert world.ask(c1, world.peer_ip, 7000) == world.uplink_ip
    world.serve(c2, 7001)
    assert world.ask(c1, "172.17.0.3", 7001) == "172.17.0.2"


def test_published_port_from_everywhere(world, backend):  # acceptance 2, items 31, 35
    ports = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
             {"hostPort": 9053, "containerPort": 53, "protocol": "udp"}]
    conf, (c1, c2), _ = published(world, backend, ports)
    world.serve(c1, 80)
    world.serve(c1, 53, proto="udp")
    up = world.uplink_ip
    assert world.ask(world.outside, up, 8080) == world.peer_ip          # from outside
    assert world.ask(world.host, up, 8080) == up                        # from the host, own address
    assert world.ask(world.host, "127.0.0.1", 8080) == "172.17.0.1"     # from the host, localhost
    assert world.ask(c2, up, 8080) == "172.17.0.1"                      # another container
    assert world.ask(c1, up, 8080) == "172.17.0.1"                      # itself (hairpin)
    assert world.ask(world.outside, up, 9053, proto="udp") == world.peer_ip
    assert world.ask(c2, up, 9053, proto="udp") == "172.17.0.1"


def test_localhost_guard(world, backend):
    """route_localnet is on for the bridge only, and 127/8 arriving from it is dropped."""
    conf, _, _ = published(world, backend, [{"hostPort": 8080, "containerPort": 80}])
    ex = lambda *a: sh("ip", "netns", "exec", world.host, *a).stdout.strip()  # noqa: E731
    assert ex("cat", "/proc/sys/net/ipv4/conf/netplug0/route_localnet") == "1"
    assert ex("cat", "/proc/sys/net/ipv4/conf/up0/route_localnet") == "0"
    # switched off behind netplug's back: the next ADD (it reads both through netlink) sees it
    ex("sysctl", "-qw", "net.ipv4.ip_forward=0", "net.ipv4.conf.netplug0.route_localnet=0")
    r = world.cni("ADD", dict(conf, runtimeConfig={"portMappings": [{"hostPort": 8081, "containerPort": 80}]}),
                  "c7", world.container(7))
    assert r.rc == 0, r
    assert ex("cat", "/proc/sys/net/ipv4/ip_forward") == "1"
    assert ex("cat", "/proc/sys/net/ipv4/conf/netplug0/route_localnet") == "1"
    world.serve(world.host, 6000, addr="127.0.0.1")
    c2 = world.namespaces[-1]
    nsexec(c2, "ip", "route", "add", "127.0.0.0/8", "via", "172.17.0.1", check=False)
    assert world.ask(c2, "127.0.0.1", 6000, timeout=1) is None


def test_del_leaves_no_rule_for_the_container(world, backend):  # acceptance 3, items 37-41
    ports = [{"hostPort": 8080, "containerPort": 80}]
    conf, (c1, c2), _ = published(world, backend, ports)
    assert "id=c1" in all_rules(world)
    sh("ip", "netns", "del", c1)
    r = world.cni("DEL", conf, "c1", c1)  # netns gone, no runtimeConfig, no prevResult
    assert r.rc == 0, r
    assert "id=c1" not in all_rules(world) and "8080" not in all_rules(world)
    assert "net=testnet" in all_rules(world)  # c2 still needs the masquerade
    assert world.cni("DEL", conf, "c2", c2, netns_path="").rc == 0
    assert netplug_rules(world) == []
    if backend == "nftables":  # the last container took netplug's table along
        assert nsexec(world.host, "nft", "list", "tables", check=False).stdout.strip() == ""
    assert world.cni("DEL", conf, "c2", c2).rc == 0  # twice


def test_check_after_add_and_after_tampering(world, backend):  # acceptance 4, item 44, 46
    ports = [{"hostPort": 8080, "containerPort": 80}]
    conf, (c1, _), (res, _) = published(world, backend, ports)
    c_conf = dict(conf, runtimeConfig={"portMappings": ports}, prevResult=res)
    r = world.cni("CHECK", c_conf, "c1", c1)
    assert r.rc == 0 and r.out == "", r
    if backend == "nftables":
        nsexec(world.host, "nft", "flush", "chain", "ip", "netplug", "NETPLUG-POSTROUTING")
    elif backend == "iptables":
        nsexec(world.host, "iptables-nft", "-t", "nat", "-F", "NETPLUG-POSTROUTING")
    else:
        nsexec(world.host, "iptables-legacy", "-t", "nat", "-F", "NETPLUG-POSTROUTING")
    bad = world.cni("CHECK", c_conf, "c1", c1)
    assert bad.rc != 0 and "firewall" in bad.json["msg"], bad


def test_duplicate_host_port_refused(world, backend):  # item 34
    ports = [{"hostPort": 8080, "containerPort": 80}]
    conf, _, _ = published(world, backend, ports, n=1)
    before = all_rules(world)
    c2 = world.container(9)
    r = world.cni("ADD", dict(conf, runtimeConfig={"portMappings": ports}), "c9", c2)
    assert r.rc != 0 and "port is already allocated" in r.json["msg"] and "c1" in r.json["details"]
    assert all_rules(world) == before
    on_ip = [{"hostPort": 8080, "containerPort": 80, "hostIP": world.uplink_ip}]
    assert world.cni("ADD", dict(conf, runtimeConfig={"portMappings": on_ip}), "c9", c2).rc != 0
    udp = [{"hostPort": 8080, "containerPort": 80, "protocol": "udp"}]
    assert world.cni("ADD", dict(conf, runtimeConfig={"portMappings": udp}), "c9", c2).rc == 0
    # the other way round: a port published on one address, then asked for on all of them
    c3, c4 = world.container(10), world.container(11)
    mine = [{"hostPort": 8081, "containerPort": 80, "hostIP": world.uplink_ip}]
    assert world.cni("ADD", dict(conf, runtimeConfig={"portMappings": mine}), "c10", c3).rc == 0
    every = [{"hostPort": 8081, "containerPort": 80}]
    r = world.cni("ADD", dict(conf, runtimeConfig={"portMappings": every}), "c11", c4)
    assert r.rc != 0 and "port is already allocated" in r.json["msg"] and "c10" in r.json["details"]


def test_host_ip_and_many_ports(world, backend):  # item 32
    world.add_outside()
    sh("ip", "-n", world.host, "addr", "add", "203.0.113.9/24", "dev", "up0")
    ports = [{"hostPort": 8100 + i, "containerPort": 80} for i in range(16)]
    ports.append({"hostPort": 8200, "containerPort": 80, "hostIP": "203.0.113.9"})
    ports.append({"hostPort": 8201, "containerPort": 80, "hostIP": "2001:db8::1"})  # skipped
    conf = netplug_conf(world, backend=backend, runtimeConfig={"portMappings": ports})
    c1 = world.container(1)
    assert world.cni("ADD", conf, "c1", c1).rc == 0
    world.serve(c1, 80)
    assert all(world.ask(world.outside, "203.0.113.1", 8100 + i) == world.peer_ip for i in range(16))
    assert world.ask(world.outside, "203.0.113.9", 8200) == world.peer_ip
    assert world.ask(world.outside, "203.0.113.1", 8200, timeout=1) is None
    assert "8201" not in all_rules(world)


def test_udp_conntrack_flushed(world, backend):  # item 36
    world.add_outside()
    conf = netplug_conf(world, backend=backend)
    c1 = world.container(1)
    assert world.cni("ADD", conf, "c0", world.container(0)).rc == 0  # nat hooks => conntrack on
    ports = [{"hostPort": 9053, "containerPort": 53, "protocol": "udp"}]
    # a stale flow: the outside peer sends to 9053 before anything is published
    nsexec(world.outside, PY, "-c", "import socket;s=socket.socket(2,2);s.bind(('',40000));"
           "s.sendto(b'x',('203.0.113.1',9053))", check=False)
    ct = lambda: nsexec(world.host, "conntrack", "-L", "-p", "udp", "--dport", "9053", check=False).stdout  # noqa: E731
    assert "9053" in ct()
    assert world.cni("ADD", dict(conf, runtimeConfig={"portMappings": ports}), "c1", c1).rc == 0
    assert "9053" not in ct()
    world.serve(c1, 53, proto="udp")
    assert world.ask(world.outside, "203.0.113.1", 9053, proto="udp", src="203.0.113.2") == world.peer_ip


def test_udp_conntrack_flush_without_conntrack_tools(world):
    """Where conntrack-tools is not installed the flush goes through pyroute2: same effect."""
    from netns_tools import in_ns
    from netplug.cni.config import PortMapping
    from netplug.plugin.bridge import _flush_udp_pyroute2

    world.add_outside()
    assert world.cni("ADD", netplug_conf(world), "c0", world.container(0)).rc == 0
    nsexec(world.outside, PY, "-c", "import socket;s=socket.socket(2,2);s.bind(('',40000));"
           "s.sendto(b'x',('203.0.113.1',9054))", check=False)
    ct = lambda: nsexec(world.host, "conntrack", "-L", "-p", "udp", "--dport", "9054", check=False).stdout  # noqa: E731
    assert "9054" in ct()
    in_ns(world.netns_path(world.host), lambda: _flush_udp_pyroute2([PortMapping(9054, 53, "udp")]))
    assert "9054" not in ct()


def test_gc_removes_rules_of_invalid_attachments(world, backend):  # item 48
    conf, (c1, c2), _ = published(world, backend, [{"hostPort": 8080, "containerPort": 80}])
    sh("ip", "netns", "del", c1)
    gc = dict(conf, **{"cni.dev/valid-attachments": [{"containerID": "c2", "ifname": "eth0"}]})
    r = world.cni("GC", gc, ifname="")
    assert r.rc == 0, r
    rules = all_rules(world)
    assert "id=c1" not in rules and "8080" not in rules and "net=testnet" in rules


def test_iptables_listing_shows_docker_shape(world):  # acceptance 6
    published(world, "iptables", [{"hostPort": 8080, "containerPort": 80}])
    out = nsexec(world.host, "iptables", "-t", "nat", "-nL").stdout
    masq = [l for l in out.splitlines() if l.startswith("MASQUERADE") and "172.17.0.0/16" in l]
    dnat = [l for l in out.splitlines() if l.startswith("DNAT") and "tcp dpt:8080 to:172.17.0.2:80" in l]
    assert masq and dnat, out


def test_stale_rules_from_killed_add_are_replaced(world, backend):
    """A killed ADD left rules; the runtime's retry after DEL (or a new ADD) converges."""
    world.add_outside()
    conf = netplug_conf(world, backend=backend, runtimeConfig={"portMappings": [{"hostPort": 8080, "containerPort": 80}]})
    c1 = world.container(1)
    r = world.cni("ADD", conf, "c1", c1, env={"NETPLUG_TEST_CRASH": "after-firewall"})
    assert r.rc != 0
    assert "id=c1" in all_rules(world)
    # the runtime retries: netplug finds the half-done attachment, tears it down, starts over
    r = world.cni("ADD", conf, "c1", c1)
    assert r.rc == 0, r
    ipam = os.listdir(os.path.join(world.tmp, "ipam", "testnet"))
    assert [f for f in ipam if f[0].isdigit()] == [r.json["ips"][0]["address"].split("/")[0]]
    world.serve(c1, 80)
    assert world.ask(world.outside, world.uplink_ip, 8080) == world.peer_ip
    assert world.cni("DEL", conf, "c1", c1).rc == 0
    assert netplug_rules(world) == []


def test_auto_backend_follows_host_iptables_and_logs_it(world):
    conf = netplug_conf(world, backend="auto", capabilities={"portMappings": True}, somethingNew=1,
                        args={"cni": {"labels": [{"key": "a", "value": "b"}]}},
                        runtimeConfig={"portMappings": [{"hostPort": 8080, "containerPort": 80}]})
    r = world.cni("ADD", conf, "c1", world.container(1), env={"NETPLUG_LOG": "info"})
    assert r.rc == 0, r  # item 11: capabilities, args and unknown keys are accepted
    assert "firewall backend auto: using iptables (iptables is nft)" in r.err
    assert "NETPLUG-DN-" in nsexec(world.host, "iptables-nft-save", "-t", "nat").stdout


def test_del_cleans_every_backend_whatever_the_config_says(world):
    """Rules written by an older config on another backend still go with DEL."""
    conf = netplug_conf(world, backend="iptables-legacy",
                        runtimeConfig={"portMappings": [{"hostPort": 8080, "containerPort": 80}]})
    c1 = world.container(1)
    assert world.cni("ADD", conf, "c1", c1).rc == 0
    assert "id=c1" in all_rules(world)
    os.unlink(next(os.path.join(d, f) for d, _, fs in os.walk(os.path.join(world.tmp, "state"))
                   for f in fs if f.endswith(".json")))  # the record is lost too
    assert world.cni("DEL", netplug_conf(world, backend="nftables"), "c1", c1).rc == 0
    assert "id=c1" not in all_rules(world) and netplug_rules(world) == []
