"""Three simulated nodes on one L2 segment (198.51.100.0/24, a bridge in a "fabric" namespace),
each with its own pod CIDR from 172.17.0.0/16, driven with the CNI calls kubelet makes."""

import json
import os
import subprocess
import sys
import uuid

import pytest
from netns_tools import World, nsexec, sh

pytestmark = pytest.mark.netns
NETPLUG = os.path.join(os.path.dirname(sys.executable), "netplug")
CLUSTER = "172.17.0.0/16"
OUTSIDE_IP = "198.51.100.200"


@pytest.fixture
def cluster(tmp_path, cni_bin):
    w = World(tmp_path, cni_bin)  # its "host" netns plays the fabric switch
    try:
        fabric = w.host
        sh("ip", "-n", fabric, "link", "add", "fab0", "type", "bridge")
        sh("ip", "-n", fabric, "link", "set", "fab0", "up")
        nodes = []
        for i in (1, 2, 3, 200):
            ns = w.add_ns(f"n{i}" if i != 200 else "out")
            sh("ip", "link", "add", f"p{i}", "netns", fabric, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "-n", fabric, "link", "set", f"p{i}", "master", "fab0", "up")
            sh("ip", "-n", ns, "addr", "add", f"198.51.100.{i}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            if i != 200:
                nodes.append({"name": f"node{i}", "ns": ns, "ip": f"198.51.100.{i}", "cidr": f"172.17.{i}.0/24"})
        w.outside_ns = ns
        yield w, nodes
    finally:
        w.close()


def kubelet_add(w, node, pod, ports=None):
    """ADD exactly as kubelet (via containerd/CRI-O) calls it."""
    conf = json.loads(subprocess.run([NETPLUG, "kube-config", "--pod-cidr", node["cidr"], "--cluster-cidr", CLUSTER,
                                      "--backend", "nftables"], check=True, capture_output=True, text=True).stdout)
    plugin = dict(conf["plugins"][0], cniVersion=conf["cniVersion"], name=conf["name"])
    plugin["stateDir"] = os.path.join(w.tmp, node["name"], "state")
    plugin["ipam"]["dataDir"] = os.path.join(w.tmp, node["name"], "ipam")
    plugin.pop("capabilities")
    if ports:
        plugin["runtimeConfig"] = {"portMappings": ports}
    ns = w.add_ns(pod)
    sh("ip", "-n", ns, "link", "set", "lo", "up")
    cid = uuid.uuid4().hex + uuid.uuid4().hex  # 64 hex, like a sandbox ID
    args = (f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod};"
            f"K8S_POD_INFRA_CONTAINER_ID={cid};K8S_POD_UID={uuid.uuid4()}")
    r = w.cni("ADD", plugin, cid, ns, env={"CNI_ARGS": args}, in_ns=node["ns"])
    assert r.rc == 0, r
    return ns, r.json["ips"][0]["address"].split("/")[0]


def test_three_nodes_host_gw(cluster):
    w, nodes = cluster
    pods = {}
    for node in nodes:
        ports = [{"hostPort": 30080, "containerPort": 80, "protocol": "tcp"}] if node["name"] == "node2" else None
        pods[node["name"]] = kubelet_add(w, node, f"pod{node['name'][-1]}", ports)
    node_list = {"kind": "NodeList", "items": [
        {"metadata": {"name": n["name"]}, "spec": {"podCIDR": n["cidr"]},
         "status": {"addresses": [{"type": "InternalIP", "address": n["ip"]}]}} for n in nodes]}
    nodes_file = os.path.join(w.tmp, "nodes.json")
    with open(nodes_file, "w") as f:
        json.dump(node_list, f)
    for n in nodes:
        out = nsexec(n["ns"], NETPLUG, "kube-routes", "--node", n["name"], "--nodes-file", nodes_file, "--once").stdout
        assert out.count("route 172.17.") == 2, out
        # idempotent: a second sync changes nothing
        assert nsexec(n["ns"], NETPLUG, "kube-routes", "--node", n["name"], "--nodes-file", nodes_file,
                      "--once").stdout == ""
    (p1, ip1), (p2, ip2), (p3, ip3) = pods["node1"], pods["node2"], pods["node3"]
    assert ip1.startswith("172.17.1.") and ip2.startswith("172.17.2.") and ip3.startswith("172.17.3.")
    # pod to pod across nodes: their own addresses, no NAT inside the cluster CIDR
    w.serve(p2, 80)
    w.serve(p3, 81)
    assert w.ask(p1, ip2, 80) == ip1
    assert w.ask(p1, ip3, 81) == ip1
    # leaving the cluster: masqueraded to the node's address
    w.serve(w.outside_ns, 7000)
    assert w.ask(p3, OUTSIDE_IP, 7000) == "198.51.100.3"
    # a hostPort on node 2 answers from the outside peer
    assert w.ask(w.outside_ns, "198.51.100.2", 30080) == OUTSIDE_IP
    # a node that leaves the list loses its route
    node_list["items"] = node_list["items"][:2]
    with open(nodes_file, "w") as f:
        json.dump(node_list, f)
    out = nsexec(nodes[0]["ns"], NETPLUG, "kube-routes", "--node", "node1", "--nodes-file", nodes_file, "--once").stdout
    assert "removed route 172.17.3.0/24 via 198.51.100.3" in out
