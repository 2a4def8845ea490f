"""Interop with the reference plugins (Debian containernetworking-plugins, spec <= 1.0.0)."""

import json
import os

import pytest
from netns_tools import netplug_conf, nsexec, run_chain

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(not os.path.exists("/usr/lib/cni/bridge"),
                                 reason="containernetworking-plugins not installed")]


def test_netplug_with_host_local(world):
    conf = netplug_conf(world, version="1.0.0")
    conf["ipam"]["type"] = "host-local"
    c = world.container(1)
    r = world.cni("ADD", conf, "c1", c)
    assert r.rc == 0, r
    assert r.json["ips"][0]["address"] == "172.17.0.2/16"
    assert world.cni("CHECK", dict(conf, prevResult=r.json), "c1", c).rc == 0
    assert nsexec(c, "ping", "-c1", "-W2", "172.17.0.1", check=False).returncode == 0
    d = world.cni("DEL", conf, "c1", c)
    assert d.rc == 0, d
    assert sorted(os.listdir(os.path.join(world.tmp, "ipam", "testnet"))) == ["last_reserved_ip.0", "lock"]


def test_host_local_binary_missing(world):  # item 54
    conf = netplug_conf(world, version="1.0.0")
    conf["ipam"]["type"] = "no-such-ipam"
    c = world.container(1)
    r = world.cni("ADD", conf, "c1", c)
    assert r.rc != 0 and "no-such-ipam" in r.json["msg"]
    assert not [l for l in nsexec(world.host, "ip", "-br", "link").stdout.splitlines() if l.startswith("np")]
    d = world.cni("DEL", conf, "c1", c)
    assert d.rc == 0 and d.out == "", d


def test_reference_bridge_with_netplug_ipam(world):
    conf = {"cniVersion": "1.0.0", "name": "refnet", "type": "bridge", "bridge": "cni-ref0",
            "isGateway": True, "ipMasq": False,
            "ipam": {"type": "netplug-ipam", "ranges": [[{"subnet": "172.17.0.0/16"}]],
                     "routes": [{"dst": "0.0.0.0/0"}], "dataDir": os.path.join(world.tmp, "ipam")}}
    c = world.container(1)
    r = world.cni("ADD", conf, "c1", c, plugin="bridge")
    assert r.rc == 0, r
    assert r.json["ips"][0]["address"] == "172.17.0.2/16"
    assert open(os.path.join(world.tmp, "ipam", "refnet", "172.17.0.2"), "rb").read() == b"c1\r\neth0"
    assert nsexec(c, "ping", "-c1", "-W2", "172.17.0.1", check=False).returncode == 0
    assert world.cni("CHECK", dict(conf, prevResult=r.json), "c1", c, plugin="bridge").rc == 0
    assert world.cni("DEL", conf, "c1", c, plugin="bridge").rc == 0
    assert sorted(os.listdir(os.path.join(world.tmp, "ipam", "refnet"))) == ["last_reserved_ip.0", "lock"]


def test_chain_netplug_tuning_firewall(world):
    np_conf = netplug_conf(world, version="1.0.0")
    for k in ("cniVersion", "name"):
        np_conf.pop(k)
    conflist = {"cniVersion": "1.0.0", "name": "testnet", "plugins": [
        np_conf,
        {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.arp_filter": "1"}},
        {"type": "firewall", "backend": "iptables"},
    ]}
    c = world.container(1)
    res = run_chain(world, "ADD", conflist, "c1", c)
    assert [i["name"] for i in res["interfaces"]][2] == "eth0"
    assert "CNI-FORWARD" in nsexec(world.host, "iptables-nft-save", "-t", "filter").stdout
    run_chain(world, "CHECK", conflist, "c1", c, prev=res)
    run_chain(world, "DEL", conflist, "c1", c, prev=res)
    assert "172.17.0.2" not in nsexec(world.host, "iptables-nft-save", "-t", "filter").stdout
    assert not os.path.exists(os.path.join(world.tmp, "ipam", "testnet", "172.17.0.2"))


def test_conflist_in_repo_matches_generated():
    from netplug.install import default_conflist

    here = os.path.dirname(__file__)
    with open(os.path.join(here, "..", "..", "cni-conf", "10-netplug.conflist")) as f:
        assert json.load(f) == default_conflist()


FAKE_IPAM = """#!/bin/sh
# records every call (command, then the config on stdin) and answers like an IPAM plugin
dir=$(dirname "$0")
{ echo "CMD=$CNI_COMMAND ID=$CNI_CONTAINERID"; cat; echo; } >> "$dir/calls.log"
case "$CNI_COMMAND" in
  ADD) echo '{"cniVersion":"1.1.0","ips":[{"address":"172.17.0.9/16","gateway":"172.17.0.1"}]}';;
  STATUS) if [ -e "$dir/full" ]; then
            echo '{"cniVersion":"1.1.0","code":51,"msg":"no addresses left"}'; exit 1; fi;;
esac
exit 0
"""


def test_gc_and_status_reach_a_delegated_ipam(world):
    """CNI 1.1: GC and STATUS go on to the IPAM plugin, with the valid attachments for GC
    (the reference host-local 1.1.1 has neither verb, so a recording plugin stands in)."""
    d = os.path.join(world.tmp, "fake-ipam")
    os.makedirs(d)
    exe = os.path.join(d, "recording-ipam")
    with open(exe, "w") as f:
        f.write(FAKE_IPAM)
    os.chmod(exe, 0o755)
    env = {"CNI_PATH": f"{d}:{world.bin_dir}"}
    conf = netplug_conf(world)
    conf["ipam"] = {"type": "recording-ipam"}
    c = world.container(1)
    r = world.cni("ADD", conf, "c1", c, env=env)
    assert r.rc == 0, r
    assert r.json["ips"][0]["address"] == "172.17.0.9/16"

    assert world.cni("STATUS", conf, env=env, ifname="").rc == 0
    open(os.path.join(d, "full"), "w").close()
    s = world.cni("STATUS", conf, env=env, ifname="")
    assert s.rc == 1 and s.json["code"] == 51 and "no addresses left" in s.json["msg"]

    gc = dict(conf, **{"cni.dev/valid-attachments": []})
    g = world.cni("GC", gc, env=env, ifname="")
    assert g.rc == 0, g
    calls = open(os.path.join(d, "calls.log")).read().split("CMD=")[1:]
    assert [x.split()[0] for x in calls] == ["ADD", "STATUS", "STATUS", "DEL", "GC"]
    assert calls[3].split()[1] == "ID=c1"  # GC released the stale attachment's address first
    assert '"cni.dev/valid-attachments": []' in calls[4]
    assert not [l for l in nsexec(world.host, "ip", "-br", "link").stdout.splitlines() if l.startswith("np")]
