"""Kubernetes: the node's conflist from its pod CIDR, and host-gw routes to other nodes' pods.

Pure parts (render_conflist, desired_routes) are unit-tested; the edges read the Node objects
through the official `kubernetes` client (in the cluster) or a JSON file, and set routes with
pyroute2 in the calling namespace, tagged with their own routing protocol number so that only
netplug's routes are ever changed or removed.
"""

import ipaddress
import json

from .errors import ConfigError
from .log import log

RTPROT_NETPLUG = 77  # marks the routes we own (see /etc/iproute2/rt_protos)


def _v4net(text: str, what: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(text, strict=True)
    except (ValueError, TypeError):
        raise ConfigError(f"{what} {text!r} is not an IPv4 network address (e.g. 172.17.1.0/24)") from None
    if net.version != 4:
        raise ConfigError(f"{what} {text} is IPv6; this netplug supports IPv4 pod networks")
    return net


def render_conflist(pod_cidr: str, cluster_cidr: str, bridge: str = "cni0", mtu: int = 1500,
                    backend: str = "auto", name: str = "netplug") -> dict:
    pod = _v4net(pod_cidr, "pod CIDR")
    cluster = _v4net(cluster_cidr, "cluster CIDR")
    if not pod.subnet_of(cluster):
        raise ConfigError(f"pod CIDR {pod} is not inside the cluster CIDR {cluster}")
    if pod.prefixlen > 29:
        raise ConfigError(f"pod CIDR {pod} is too small: use /29 or larger")
    gateway = str(pod.network_address + 1)
    return {
        "cniVersion": "1.1.0",
        "name": name,
        "plugins": [{
            "type": "netplug",
            "bridge": bridge,
            "isGateway": True,
            "isDefaultGateway": True,
            "ipMasq": True,
            "clusterCIDR": str(cluster),  # no NAT between pods, only for traffic leaving the cluster
            "hairpinMode": True,
            "mtu": mtu,
            "firewallBackend": backend,
            "capabilities": {"portMappings": True},
            "ipam": {"type": "netplug-ipam", "ranges": [[{"subnet": str(pod), "gateway": gateway}]],
                     "routes": [{"dst": "0.0.0.0/0"}]},
        }],
    }


def node_facts(node: dict) -> tuple[str, str, str]:
    """(name, podCIDR, InternalIP) of a Node object (dict form)."""
    name = node.get("metadata", {}).get("name", "")
    pod_cidr = node.get("spec", {}).get("podCIDR", "")
    ip = next((a.get("address") for a in node.get("status", {}).get("addresses", [])
               if a.get("type") == "InternalIP"), "")
    return name, pod_cidr, ip


def desired_routes(nodes: list[dict], self_name: str) -> dict[str, str]:
    """podCIDR -> next hop (the node's InternalIP) for every other node that has both."""
    out = {}
    for n in nodes:
        name, cidr, ip = node_facts(n)
        if name == self_name or not cidr or not ip:
            continue
        try:
            out[str(_v4net(cidr, f"node {name} podCIDR"))] = str(ipaddress.IPv4Address(ip))
        except (ConfigError, ValueError) as e:
            log.warning("skipping node %s: %s", name, e)
    return out


def sync_routes(desired: dict[str, str]) -> tuple[list[str], list[str]]:
    """Make the kernel's netplug-owned routes equal `desired`. Returns (added, removed)."""
    import socket

    from .netlink.link import _iproute

    added, removed = [], []
    with _iproute() as ipr:
        have = {}
        for r in ipr.get_routes(family=socket.AF_INET, table=254, proto=RTPROT_NETPLUG):
            if r["proto"] != RTPROT_NETPLUG:
                continue
            dst = f"{r.get_attr('RTA_DST')}/{r['dst_len']}"
            have[dst] = r.get_attr("RTA_GATEWAY")
        for dst, gw in have.items():
            if desired.get(dst) != gw:
                ipr.route("del", dst=dst, gateway=gw, proto=RTPROT_NETPLUG)
                removed.append(f"{dst} via {gw}")
        for dst, gw in desired.items():
            if have.get(dst) != gw:
                ipr.route("replace", dst=dst, gateway=gw, proto=RTPROT_NETPLUG)
                added.append(f"{dst} via {gw}")
    return added, removed


def list_nodes(nodes_file: str | None) -> list[dict]:
    if nodes_file:
        with open(nodes_file) as f:
            doc = json.load(f)
        return doc.get("items", doc) if isinstance(doc, dict) else doc
    api = _api()
    return [api.api_client.sanitize_for_serialization(n) for n in api.list_node().items]


def pod_cidr_of(node_name: str) -> str:
    api = _api()
    node = api.read_node(node_name)
    if not node.spec.pod_cidr:
        raise ConfigError(f"node {node_name} has no spec.podCIDR (is the controller manager allocating "
                          "node CIDRs? kubeadm: --pod-network-cidr)")
    return node.spec.pod_cidr


def _api():
    try:
        from kubernetes import client, config
    except ImportError:
        raise ConfigError("the kubernetes client is not installed (pip install kubernetes), "
                          "or pass --pod-cidr/--nodes-file") from None
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CoreV1Api()


# --- CLI -----------------------------------------------------------------------------------------

def add_parsers(sub) -> None:
    k = sub.add_parser("kube-config", help="render this node's conflist from its pod CIDR")
    k.add_argument("--pod-cidr", help="this node's spec.podCIDR (read from the API when omitted)")
    k.add_argument("--cluster-cidr", required=True, help="the cluster's pod network, e.g. 172.17.0.0/16")
    k.add_argument("--node", help="node name (in the cluster: the NODE_NAME env var)")
    k.add_argument("--bridge", default="cni0")
    k.add_argument("--mtu", type=int, default=1500)
    k.add_argument("--backend", default="auto", choices=["auto", "nftables", "iptables", "iptables-legacy"])
    k.add_argument("--out", help="write here (atomically) instead of stdout")
    k.set_defaults(func=_kube_config)
    r = sub.add_parser("kube-routes", help="keep routes to other nodes' pod CIDRs (host-gw)")
    r.add_argument("--node", required=True)
    r.add_argument("--nodes-file", help="a NodeList as JSON instead of the API (tests, offline)")
    r.add_argument("--once", action="store_true")
    r.add_argument("--interval", type=float, default=30)
    r.set_defaults(func=_kube_routes)


def _kube_config(a) -> int:
    import os

    pod = a.pod_cidr
    if not pod:
        node = a.node or os.environ.get("NODE_NAME")
        if not node:
            raise ConfigError("give --pod-cidr, or --node (or NODE_NAME) to read it from the API")
        pod = pod_cidr_of(node)
    conf = render_conflist(pod, a.cluster_cidr, a.bridge, a.mtu, a.backend)
    text = json.dumps(conf, indent=2) + "\n"
    if a.out:
        tmp = a.out + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, a.out)
        print(f"wrote {a.out} (pod CIDR {pod})")
    else:
        print(text, end="")
    return 0


def _kube_routes(a) -> int:
    import time

    while True:
        desired = desired_routes(list_nodes(a.nodes_file), a.node)
        added, removed = sync_routes(desired)
        for x in added:
            print(f"route {x}")
        for x in removed:
            print(f"removed route {x}")
        if a.once:
            return 0
        time.sleep(a.interval)
