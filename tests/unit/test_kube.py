"""Kubernetes: conflist rendering, CIDR handling, routes from Node objects, manifest schema."""

import json
import os

import pytest
import yaml

from netplug.cli import main
from netplug.errors import ConfigError
from netplug.kube import desired_routes, render_conflist

DEPLOY = os.path.join(os.path.dirname(__file__), "..", "..", "deploy", "kubernetes")


def test_conflist_for_a_node():
    c = render_conflist("172.17.2.0/24", "172.17.0.0/16")
    p = c["plugins"][0]
    assert c["cniVersion"] == "1.1.0" and p["type"] == "netplug"
    assert p["ipam"]["ranges"] == [[{"subnet": "172.17.2.0/24", "gateway": "172.17.2.1"}]]
    assert p["clusterCIDR"] == "172.17.0.0/16" and p["ipMasq"] is True
    assert p["capabilities"] == {"portMappings": True}


@pytest.mark.parametrize("pod,cluster,msg", [
    ("172.17.2.1/24", "172.17.0.0/16", "not an IPv4 network address"),
    ("10.0.0.0/24", "172.17.0.0/16", "not inside"),
    ("172.17.2.0/30", "172.17.0.0/16", "too small"),
    ("fd00::/64", "172.17.0.0/16", "IPv6"),
    ("", "172.17.0.0/16", "not an IPv4"),
    ("172.17.2.0/24", "garbage", "not an IPv4"),
    ("172.17.0.0/15", "172.17.0.0/16", "not an IPv4"),
])
def test_bad_cidrs(pod, cluster, msg):
    with pytest.raises(ConfigError) as e:
        render_conflist(pod, cluster)
    assert msg in e.value.msg


def test_cli_one_line_error(capsys):
    assert main(["kube-config", "--pod-cidr", "10.0.0.0/24", "--cluster-cidr", "172.17.0.0/16"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not inside the cluster CIDR" in err


def test_cli_writes_atomically(tmp_path, capsys):
    out = tmp_path / "10-netplug.conflist"
    assert main(["kube-config", "--pod-cidr", "172.17.3.0/24", "--cluster-cidr", "172.17.0.0/16",
                 "--out", str(out)]) == 0
    assert json.loads(out.read_text())["plugins"][0]["ipam"]["ranges"][0][0]["subnet"] == "172.17.3.0/24"


def node(name, cidr, ip):
    n = {"metadata": {"name": name}, "spec": {}, "status": {"addresses": [{"type": "Hostname", "address": name}]}}
    if cidr:
        n["spec"]["podCIDR"] = cidr
    if ip:
        n["status"]["addresses"].append({"type": "InternalIP", "address": ip})
    return n


def test_desired_routes():
    nodes = [node("n1", "172.17.1.0/24", "198.51.100.1"), node("n2", "172.17.2.0/24", "198.51.100.2"),
             node("n3", None, "198.51.100.3"), node("n4", "bad", "198.51.100.4"),
             node("n5", "172.17.5.0/24", None)]
    assert desired_routes(nodes, "n1") == {"172.17.2.0/24": "198.51.100.2"}


def test_manifests_validate_against_the_api_schema():
    import kubernetes_validate

    with open(os.path.join(DEPLOY, "netplug.yaml")) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    kinds = [d["kind"] for d in docs]
    assert {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet"} <= set(kinds)
    for d in docs:
        kubernetes_validate.validate(d, "1.30", strict=True)
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True
    assert spec["initContainers"][0]["securityContext"]["privileged"] is True
    rules = next(d for d in docs if d["kind"] == "ClusterRole")["rules"]
    assert rules == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}]
