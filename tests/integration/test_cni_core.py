"""CNI conformance (cni-conformance.md §7) by exec'ing the installed plugin in throwaway netns."""

import concurrent.futures as cf
import json
import os

import pytest
from netns_tools import netplug_conf, nsexec, sh

pytestmark = pytest.mark.netns
VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


def links(ns):
    return {l["ifname"]: l for l in json.loads(nsexec(ns, "ip", "-j", "-d", "link").stdout)}


def ipam_files(world, net="testnet"):
    d = os.path.join(world.tmp, "ipam", net)
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def test_add_result_and_kernel_state(world):  # items 12, 14, 28, 30
    c = world.container(1)
    r = world.cni("ADD", netplug_conf(world, mtu=1400), "c1", c)
    assert r.rc == 0, r
    res = r.json
    names = [i["name"] for i in res["interfaces"]]
    assert names[0] == "netplug0" and names[2] == "eth0"
    assert res["interfaces"][2]["sandbox"] == world.netns_path(c)
    assert res["ips"][0]["interface"] == 2
    assert res["ips"][0]["address"] == "172.17.0.2/16" and res["ips"][0]["gateway"] == "172.17.0.1"
    cl, hl = links(c), links(world.host)
    assert cl["eth0"]["address"] == res["interfaces"][2]["mac"]
    assert hl[names[1]]["address"] == res["interfaces"][1]["mac"]
    assert cl["eth0"]["mtu"] == hl[names[1]]["mtu"] == hl["netplug0"]["mtu"] == 1400
    assert "UP" in cl["eth0"]["flags"]
    routes = json.loads(nsexec(c, "ip", "-j", "route").stdout)
    assert any(rt["dst"] == "default" and rt["gateway"] == "172.17.0.1" for rt in routes)
    addrs = json.loads(nsexec(world.host, "ip", "-j", "addr", "show", "netplug0").stdout)
    assert any(a["local"] == "172.17.0.1" and a["prefixlen"] == 16 for a in addrs[0]["addr_info"])
    assert nsexec(world.host, "cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"
    assert nsexec(c, "ping", "-c1", "-W2", "172.17.0.1", check=False).returncode == 0


def test_host_end_is_a_bridge_port_without_ipv6(world):
    """The host end only bridges frames: no IPv6 of its own, so the host's IPv6 table does not
    grow by a link-local address and routes per container (the kernel walks that table on
    every link event). The container's end keeps its IPv6 link-local address."""
    from netns_tools import wait_until

    def host_v6_routes():
        return nsexec(world.host, "ip", "-6", "route", "show", "table", "all").stdout.splitlines()

    veths, conts = [], []
    for n in range(1, 4):
        c = world.container(n)
        conts.append(c)
        r = world.cni("ADD", netplug_conf(world), f"c{n}", c)
        assert r.rc == 0, r
        veths.append(r.json["interfaces"][1]["name"])
        # the container's end has come up, so the host end has its carrier: addrconf has run
        assert wait_until(lambda: "fe80::" in nsexec(c, "ip", "-6", "addr", "show", "eth0").stdout)
        if n == 1:
            base = host_v6_routes()
    for v in veths:
        assert nsexec(world.host, "cat", f"/proc/sys/net/ipv6/conf/{v}/disable_ipv6").stdout.strip() == "1"
        assert "inet6" not in nsexec(world.host, "ip", "-6", "addr", "show", "dev", v).stdout
    assert host_v6_routes() == base and not any(v in r for r in base for v in veths)
    assert nsexec(conts[0], "ping", "-c1", "-W2", "172.17.0.1", check=False).returncode == 0


def test_host_end_ipv6_is_best_effort(world):
    """Where /proc/sys is read-only (a runtime in a container) the port keeps IPv6, no error."""
    import sys

    script = ("import errno, sys; from netplug.netlink import sysctl\n"
              "try:\n    open('/proc/sys/net/ipv6/conf/lo/disable_ipv6', 'w').write('1')\n"
              "except OSError as e:\n    assert e.errno == errno.EROFS, e\n"
              "else:\n    sys.exit('/proc/sys is writable: the test proves nothing')\n"
              "sysctl.ipv6_off('lo')\n")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    # a private mount namespace inside the test's own netns: the root namespace's mounts stay
    r = nsexec(world.host, "unshare", "--mount", "--propagation", "private", "sh", "-c",
               "mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && "
               f"cd {repo} && exec {sys.executable} -c \"$0\"", script, check=False)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("version", VERSIONS + ["0.2.0"])
def test_result_versions(world, version):  # item 13
    c = world.container(1)
    r = world.cni("ADD", netplug_conf(world, version=version), "c1", c)
    assert r.rc == 0, r
    res = r.json
    assert res["cniVersion"] == version
    if version == "0.2.0":
        assert res["ip4"]["ip"] == "172.17.0.2/16" and res["ip4"]["gateway"] == "172.17.0.1"
    elif version.startswith("0."):
        assert res["ips"][0]["version"] == "4"
        assert "mtu" not in res["interfaces"][2]
    else:
        assert "version" not in res["ips"][0]
    assert world.cni("DEL", netplug_conf(world, version=version), "c1", c).rc == 0


def test_second_add_same_id_fails_and_keeps_first(world):  # items 15, 16
    c = world.container(1)
    conf = netplug_conf(world)
    first = world.cni("ADD", conf, "c1", c)
    assert first.rc == 0
    again = world.cni("ADD", conf, "c1", c)
    assert again.rc != 0 and "already" in again.json["msg"]
    assert ipam_files(world) == ["172.17.0.2", "last_reserved_ip.0", "lock"]
    assert nsexec(c, "ping", "-c1", "-W2", "172.17.0.1", check=False).returncode == 0
    eth1 = world.cni("ADD", conf, "c1", c, ifname="eth1")
    assert eth1.rc == 0, eth1
    assert eth1.json["ips"][0]["address"] != first.json["ips"][0]["address"]


def test_missing_netns_leaves_nothing(world):  # item 17
    r = world.cni("ADD", netplug_conf(world), "c1", netns_path="/run/netns/npt-does-not-exist")
    assert r.rc != 0 and "no such network namespace" in r.json["msg"]
    assert ipam_files(world) in ([], ["last_reserved_ip.0", "lock"], ["lock"])
    assert not [n for n in links(world.host) if n.startswith("np")]


def test_host_netns_refused(world):  # item 18
    r = world.cni("ADD", netplug_conf(world), "c1", world.host)
    assert r.rc != 0 and r.json["code"] == 8
    assert ipam_files(world) == []
    assert "netplug0" not in links(world.host)


def test_failure_after_ipam_rolls_back(world):  # item 19, issue acceptance 4
    c = world.container(1)
    sh("ip", "-n", world.host, "link", "add", "netplug0", "type", "veth", "peer", "name", "squat1")
    conf = netplug_conf(world)
    other = netplug_conf(world, bridge="br-other")
    x = world.container(2)
    assert world.cni("ADD", other, "x", x).rc == 0
    assert world.cni("ADD", other, "y", world.container(3)).rc == 0
    assert world.cni("DEL", other, "y", x).rc == 0
    store = os.path.join(world.tmp, "ipam", "testnet")
    before = {f: open(os.path.join(store, f), "rb").read() for f in ipam_files(world)}
    r = world.cni("ADD", conf, "c1", c)
    assert r.rc != 0 and "not a bridge" in r.json["msg"], r
    assert {f: open(os.path.join(store, f), "rb").read() for f in ipam_files(world)} == before
    assert "eth0" not in links(c)
    assert not [f for f in os.listdir(os.path.join(world.tmp, "state", "testnet")) if "json" in f
                and json.loads(open(os.path.join(world.tmp, "state", "testnet", f)).readline())["container_id"] == "c1"]


def test_injected_failure_after_veth_rolls_back(world):
    c = world.container(1)
    r = world.cni("ADD", netplug_conf(world, ports=[{"hostPort": 8080, "containerPort": 80}]), "c1", c,
                  env={"NETPLUG_TEST_FAIL": "after-firewall"})
    assert r.rc != 0 and "injected" in r.json["msg"]
    assert [f for f in ipam_files(world) if f[0].isdigit()] == []
    assert not [n for n in links(world.host) if n.startswith("np")]
    assert "NETPLUG-DN" not in nsexec(world.host, "nft", "list", "ruleset").stdout


def test_pool_exhausted_and_status(world):  # item 20, 52
    conf = netplug_conf(world, subnet="172.17.5.0/30")
    assert world.cni("STATUS", conf).rc == 0
    assert world.cni("ADD", conf, "c1", world.container(1)).rc == 0
    r = world.cni("ADD", conf, "c2", world.container(2))
    assert r.rc != 0 and "172.17.5.1-172.17.5.2" in r.json["msg"], r
    s = world.cni("STATUS", conf)
    assert s.rc != 0 and s.json["code"] == 50 and s.out.count("\n") == 1


def test_parallel_adds(world):  # item 21, issue acceptance 3
    conf = netplug_conf(world)
    nss = [world.container(i) for i in range(64)]
    with cf.ThreadPoolExecutor(16) as ex:
        results = list(ex.map(lambda i: world.cni("ADD", conf, f"p{i}", nss[i]), range(64)))
    assert all(r.rc == 0 for r in results), [r for r in results if r.rc]
    addrs = {r.json["ips"][0]["address"] for r in results}
    assert len(addrs) == 64
    with cf.ThreadPoolExecutor(16) as ex:
        dels = list(ex.map(lambda i: world.cni("DEL", conf, f"p{i}", nss[i]), range(64)))
    assert all(r.rc == 0 and r.out == "" for r in dels), [r for r in dels if r.rc]
    assert ipam_files(world) == ["last_reserved_ip.0", "lock"]
    assert not [n for n in links(world.host) if n.startswith("np")]
    assert nsexec(world.host, "nft", "list", "ruleset").stdout.strip() == ""


def test_static_ip_requests(world):  # items 22, 24
    conf = netplug_conf(world)
    r = world.cni("ADD", conf, "c1", world.container(1), env={"CNI_ARGS": "IP=172.17.0.50"})
    assert r.json["ips"][0]["address"] == "172.17.0.50/16"
    for ip, why in (("172.17.0.50", "already allocated"), ("10.9.9.9", "not in any"),
                    ("172.17.0.1", "gateway")):
        bad = world.cni("ADD", conf, f"x{ip}", world.container(ip.replace(".", "")),
                        env={"CNI_ARGS": f"IP={ip}"})
        assert bad.rc != 0 and why in bad.json["msg"], bad
    c2 = dict(conf, runtimeConfig={"ips": ["172.17.0.60/16"]}, args={"cni": {"ips": ["172.17.0.61"]}})
    r = world.cni("ADD", c2, "c2", world.container(2), env={"CNI_ARGS": "IP=172.17.0.62"})
    assert r.json["ips"][0]["address"] == "172.17.0.60/16"
    c3 = dict(conf, args={"cni": {"ips": ["172.17.0.61"]}})
    r = world.cni("ADD", c3, "c3", world.container(3), env={"CNI_ARGS": "IP=172.17.0.62"})
    assert r.json["ips"][0]["address"] == "172.17.0.61/16"


def test_cni_args_strictness(world):  # item 23
    conf = netplug_conf(world)
    r = world.cni("ADD", conf, "c1", world.container(1), env={"CNI_ARGS": "K8S_POD_NAME=x"})
    assert r.rc != 0 and "K8S_POD_NAME" in r.json["msg"]
    r = world.cni("ADD", conf, "c1", world.container(2), env={"CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=x"})
    assert r.rc == 0, r


def test_dns(world, tmp_path):  # item 25
    rc = tmp_path / "resolv.conf"
    rc.write_text("nameserver 192.0.2.53\nsearch example.test\noptions ndots:2\n")
    conf = netplug_conf(world)
    conf["ipam"]["resolvConf"] = str(rc)
    r = world.cni("ADD", conf, "c1", world.container(1))
    assert r.json["dns"] == {"nameservers": ["192.0.2.53"], "search": ["example.test"], "options": ["ndots:2"]}
    conf2 = netplug_conf(world, dns={"nameservers": ["198.51.100.53"]})
    r = world.cni("ADD", conf2, "c2", world.container(2))
    assert r.json["dns"] == {"nameservers": ["198.51.100.53"]}


def test_foreign_bridge_address_and_force(world):  # item 28
    sh("ip", "-n", world.host, "link", "add", "netplug0", "type", "bridge")
    sh("ip", "-n", world.host, "addr", "add", "198.51.100.1/24", "dev", "netplug0")
    r = world.cni("ADD", netplug_conf(world), "c1", world.container(1))
    assert r.rc != 0 and "already has an IP address different" in r.json["msg"]
    assert [f for f in ipam_files(world) if f[0].isdigit()] == []
    r = world.cni("ADD", netplug_conf(world, forceAddress=True), "c1", world.container(2))
    assert r.rc == 0, r


def test_hairpin_and_promisc(world):  # item 29
    c = world.container(1)
    r = world.cni("ADD", netplug_conf(world, hairpinMode=True), "c1", c)
    veth = r.json["interfaces"][1]["name"]
    assert sh("ip", "netns", "exec", world.host, "cat", f"/sys/class/net/{veth}/brport/hairpin_mode").stdout.strip() == "1"
    bad = world.cni("ADD", netplug_conf(world, hairpinMode=True, promiscMode=True), "c2", world.container(2))
    assert bad.rc != 0 and bad.json["code"] == 7


def test_subnet_overlapping_host_route_refused(world):
    sh("ip", "-n", world.host, "link", "add", "d0", "type", "veth", "peer", "name", "d0p")
    sh("ip", "-n", world.host, "link", "set", "d0", "up")
    sh("ip", "-n", world.host, "route", "add", "172.17.128.0/17", "dev", "d0")
    r = world.cni("ADD", netplug_conf(world), "c1", world.container(1))
    assert r.rc != 0 and "overlaps route 172.17.128.0/17 via d0" in r.json["msg"]


def test_del_variants(world):  # items 37-41
    conf = netplug_conf(world, ports=[{"hostPort": 8080, "containerPort": 80}])
    c = world.container(1)
    assert world.cni("ADD", conf, "c1", c).rc == 0
    plain = netplug_conf(world)  # no runtimeConfig, no prevResult
    r = world.cni("DEL", plain, "c1", netns_path="")
    assert r.rc == 0 and r.out == "", r
    assert [f for f in ipam_files(world) if f[0].isdigit()] == []
    assert nsexec(world.host, "nft", "list", "ruleset").stdout.strip() == ""
    assert not [n for n in links(world.host) if n.startswith("np")]
    assert world.cni("DEL", plain, "c1", c).rc == 0
    assert world.cni("DEL", plain, "never-added", c).rc == 0
    c2 = world.container(2)
    assert world.cni("ADD", conf, "c2", c2).rc == 0
    sh("ip", "netns", "del", c2)
    r = world.cni("DEL", conf, "c2", c2)
    assert r.rc == 0, r
    assert nsexec(world.host, "nft", "list", "ruleset").stdout.strip() == ""
    assert [f for f in ipam_files(world) if f[0].isdigit()] == []


def test_check(world):  # items 44-47
    conf = netplug_conf(world, ports=[{"hostPort": 8080, "containerPort": 80}])
    c = world.container(1)
    add = world.cni("ADD", conf, "c1", c)
    prev = add.json
    ok = world.cni("CHECK", dict(conf, prevResult=prev), "c1", c)
    assert ok.rc == 0 and ok.out == "", ok
    assert world.cni("CHECK", conf, "c1", c).rc != 0  # no prevResult
    later = json.loads(json.dumps(prev))
    later["routes"].append({"dst": "192.0.2.0/24", "gw": "172.17.0.1"})
    later["interfaces"][2]["mac"] = "02:00:00:00:00:99"
    assert world.cni("CHECK", dict(conf, prevResult=later), "c1", c).rc == 0
    chain = [l for l in nsexec(world.host, "nft", "list", "table", "ip", "netplug").stdout.splitlines()
             if "chain NETPLUG-DN-" in l][0].split()[1]
    nsexec(world.host, "nft", "flush", "chain", "ip", "netplug", chain)
    bad = world.cni("CHECK", dict(conf, prevResult=prev), "c1", c)
    assert bad.rc != 0 and "firewall" in bad.json["msg"]
    nsexec(c, "ip", "addr", "flush", "dev", "eth0")
    assert world.cni("CHECK", dict(conf, prevResult=prev), "c1", c).rc != 0
    sh("ip", "-n", world.host, "link", "del", prev["interfaces"][1]["name"])
    assert "missing" in world.cni("CHECK", dict(conf, prevResult=prev), "c1", c).json["msg"]


@pytest.mark.parametrize("tamper", ["removed", "taken by another container"])
def test_check_detects_a_lost_ipam_reservation(world, tamper):
    conf = netplug_conf(world)
    c = world.container(1)
    prev = world.cni("ADD", conf, "c1", c).json
    path = os.path.join(world.tmp, "ipam", "testnet", "172.17.0.2")
    os.unlink(path)
    if tamper != "removed":
        with open(path, "w") as f:
            f.write("someone-else\r\neth0")
    r = world.cni("CHECK", dict(conf, prevResult=prev), "c1", c)
    assert r.rc != 0 and "172.17.0.2 is no longer reserved" in r.json["msg"], r


@pytest.mark.parametrize("key", ["cni.dev/valid-attachments", "cni.dev/attachments", None])
def test_gc(world, key):  # items 48-51
    conf = netplug_conf(world, ports=[{"hostPort": 8080, "containerPort": 80}])
    a, b = world.container(1), world.container(2)
    assert world.cni("ADD", conf, "A", a).rc == 0
    conf_b = netplug_conf(world, ports=[{"hostPort": 8081, "containerPort": 80}])
    assert world.cni("ADD", conf_b, "B", b).rc == 0
    sh("ip", "netns", "del", b)
    gc = netplug_conf(world)
    if key:
        gc[key] = [{"containerID": "A", "ifname": "eth0"}]
    r = world.cni("GC", gc, ifname="")
    assert r.rc == 0 and r.out == "", r
    files = ipam_files(world)
    assert "lock" in files and "last_reserved_ip.0" in files
    rules = nsexec(world.host, "nft", "list", "ruleset").stdout
    if key:
        assert "172.17.0.2" in files and "172.17.0.3" not in files
        assert "id=A " in rules and "id=B " not in rules and "8081" not in rules
    else:
        assert not [f for f in files if f[0].isdigit()] and rules.strip() == ""


def test_gc_keeps_other_networks(world):  # item 49
    assert world.cni("ADD", netplug_conf(world, subnet="172.17.0.0/24"), "A", world.container(1)).rc == 0
    other = netplug_conf(world, name="other", bridge="br-other", subnet="172.17.200.0/24")
    assert world.cni("ADD", other, "B", world.container(2)).rc == 0
    gc = dict(netplug_conf(world, subnet="172.17.0.0/24"), **{"cni.dev/valid-attachments": []})
    assert world.cni("GC", gc, ifname="").rc == 0
    assert ipam_files(world, "other") == ["172.17.200.2", "last_reserved_ip.0", "lock"]
    assert "net=other" in nsexec(world.host, "nft", "list", "ruleset").stdout


def test_ipam_store_is_host_local_compatible(world):  # items 55, 56
    conf = netplug_conf(world)
    assert world.cni("ADD", conf, "c1", world.container(1)).rc == 0
    path = os.path.join(world.tmp, "ipam", "testnet", "172.17.0.2")
    assert open(path, "rb").read() == b"c1\r\neth0"
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    # the reference host-local reads it: its next address is .3 and it knows .2 is taken
    hl = netplug_conf(world)
    hl["ipam"]["type"] = "host-local"
    hl["cniVersion"] = "1.0.0"
    r = world.cni("ADD", dict(hl, type="netplug"), "c2", world.container(2))
    assert r.rc == 0 and r.json["ips"][0]["address"] == "172.17.0.3/16", r
