"""`netplug explain` on live namespaces: names the right containers, traces agree with the
kernel, and --check finds each planted problem (and nothing on a healthy host)."""

import json
import os
import subprocess
import sys

import pytest
from netns_tools import netplug_conf, nsexec, sh

pytestmark = pytest.mark.netns
NETPLUG = os.path.join(os.path.dirname(sys.executable), "netplug")
BACKENDS = ["nftables", "iptables", "iptables-legacy"]


def explain(world, *args, check_rc=None):
    p = subprocess.run([NETPLUG, "explain", "--netns", world.host, "--state-dir",
                        os.path.join(world.tmp, "state"), "--data-dir", os.path.join(world.tmp, "ipam"),
                        *args], capture_output=True, text=True)
    if check_rc is not None:
        assert p.returncode == check_rc, p
    return p


def setup(world, backend, masq=True, ports=True):
    world.add_outside()
    conf = netplug_conf(world, backend=backend, ipMasq=masq, hairpinMode=True)
    c1, c2 = world.container(1), world.container(2)
    m = [{"hostPort": 8080, "containerPort": 80}] if ports else []
    assert world.cni("ADD", dict(conf, runtimeConfig={"portMappings": m}), "c1", c1).rc == 0
    assert world.cni("ADD", conf, "c2", c2).rc == 0
    return conf, c1, c2


@pytest.mark.parametrize("backend", BACKENDS)
def test_names_containers_and_ports(world, backend):
    setup(world, backend)
    doc = json.loads(explain(world, "--json", check_rc=0).stdout)
    assert backend in doc["backends"]
    ports = [p for p in doc["published_ports"] if p["owner"] == "netplug"]
    assert [(p["protocol"], p["host_port"], p["target_ip"], p["target_port"], p["container_id"], p["network"])
            for p in ports] == [("tcp", 8080, "172.17.0.2", 80, "c1", "testnet")]
    assert any(m["subnet"] == "172.17.0.0/16" for m in doc["outbound_nat"])
    assert all(r["owner"] == "netplug" for r in doc["rules"] if r["table"] == "nat")
    text = explain(world, check_rc=0).stdout
    assert "container c1 (network testnet" in text.replace("Serves container", "container")


@pytest.mark.parametrize("backend", BACKENDS)
def test_trace_agrees_with_kernel(world, backend):
    setup(world, backend)
    world.serve(world.namespaces[-2], 80)  # c1
    t = json.loads(explain(world, "--json", "--trace",
                           f"tcp {world.peer_ip}:40000 -> {world.uplink_ip}:8080 in up0").stdout)["trace"]
    assert t["result"]["dst"] == "172.17.0.2:80" and t["result"]["src"] == f"{world.peer_ip}:40000"
    assert world.ask(world.outside, world.uplink_ip, 8080) == world.peer_ip  # what the kernel did
    world.serve(world.outside, 7000)
    t = json.loads(explain(world, "--json", "--trace",
                           f"tcp 172.17.0.3:40000 -> {world.peer_ip}:7000 in netplug0").stdout)["trace"]
    assert t["result"]["src"] == f"{world.uplink_ip}:40000" and t["result"]["out_interface"] == "up0"
    assert world.ask(world.namespaces[-1], world.peer_ip, 7000) == world.uplink_ip
    t = json.loads(explain(world, "--json", "--trace", "tcp 127.0.0.1:40000 -> 127.0.0.1:8080").stdout)["trace"]
    assert t["result"]["dst"] == "172.17.0.2:80" and t["result"]["src"] == "172.17.0.1:40000"
    assert world.ask(world.host, "127.0.0.1", 8080) == "172.17.0.1"


def codes(world, *extra):
    p = explain(world, "--check", "--json", *extra)
    return {f["code"] for f in json.loads(p.stdout)["findings"]}, p


def test_check_healthy_is_silent(world):
    setup(world, "nftables")
    found, _ = codes(world)
    assert found == set()
    assert explain(world, "--check").returncode == 0


def test_check_forwarding_off(world):
    setup(world, "nftables")
    sh("ip", "netns", "exec", world.host, "sysctl", "-qw", "net.ipv4.ip_forward=0")
    found, _ = codes(world)
    assert "forwarding-off" in found
    assert explain(world, "--check").returncode == 1


def test_check_missing_masquerade(world):
    setup(world, "nftables", masq=False)
    assert "no-masquerade" in codes(world)[0]


def test_check_stale_dnat_and_duplicate_port(world):
    setup(world, "iptables")
    nsexec(world.host, "iptables-nft", "-t", "nat", "-A", "NETPLUG-HOSTPORTS", "-p", "tcp", "--dport", "8080",
           "-j", "DNAT", "--to-destination", "172.17.0.99:80")
    found, _ = codes(world)
    assert {"stale-dnat", "duplicate-port"} <= found


def test_check_legacy_nft_split(world):
    setup(world, "iptables")
    nsexec(world.host, "iptables-legacy", "-t", "nat", "-A", "POSTROUTING", "-s", "172.17.0.0/16", "-j", "MASQUERADE")
    assert "legacy-nft-split" in codes(world)[0]


def test_check_localhost_without_route_localnet(world):
    setup(world, "nftables")
    sh("ip", "netns", "exec", world.host, "sysctl", "-qw", "net.ipv4.conf.netplug0.route_localnet=0")
    assert "no-route-localnet" in codes(world)[0]


def test_check_forward_drop(world):
    setup(world, "nftables")
    nsexec(world.host, "iptables-nft", "-P", "FORWARD", "DROP")
    assert "forward-drop" in codes(world)[0]


def test_check_subnet_overlap(world):
    setup(world, "nftables")
    sh("ip", "-n", world.host, "route", "add", "172.17.128.0/17", "via", world.peer_ip)
    assert "subnet-overlap" in codes(world)[0]


def test_check_missing_hairpin(world):
    world.add_outside()
    sh("ip", "-n", world.host, "link", "add", "docker0", "type", "bridge")
    sh("ip", "-n", world.host, "addr", "add", "172.17.0.1/16", "dev", "docker0")
    with open(os.path.join(os.path.dirname(__file__), "..", "fixtures", "layouts", "docker-29.save")) as f:
        nsexec(world.host, "iptables-nft-restore", input=f.read())
    found, _ = codes(world)
    assert "no-hairpin" in found
