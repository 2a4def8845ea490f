"""Who owns a chain or a rule: recognised from chain names, comments and interfaces (pure)."""

import re

NETPLUG, DOCKER, NETAVARK, CNI, KUBE = "netplug", "Docker", "podman/netavark", "CNI plugins", "kube-proxy"
CHAIN_PATTERNS = [
    (re.compile(r"^NETPLUG-"), NETPLUG),
    (re.compile(r"^DOCKER(-USER|-ISOLATION(-STAGE-[12])?|-FORWARD|-BRIDGE|-CT|-INTERNAL|-INGRESS)?$"), DOCKER),
    (re.compile(r"^NETAVARK"), NETAVARK),
    (re.compile(r"^nv_[0-9a-f]{8}_"), NETAVARK),
    (re.compile(r"^CNI-(HOSTPORT-(DNAT|SETMARK|MASQ|SNAT)|DN-[0-9a-f]{21}|[0-9a-f]{24}|FORWARD|ADMIN)$"), CNI),
    (re.compile(r"^KUBE-"), KUBE),
    (re.compile(r"^FLANNEL-"), "flannel"),
    (re.compile(r"^(KUBE-ROUTER-|KUBE-POD-FW-)"), "kube-router"),
    (re.compile(r"^cali-"), "Calico"),
    (re.compile(r"^CILIUM_"), "Cilium"),
    (re.compile(r"^ufw6?-"), "ufw"),
    (re.compile(r"^LIBVIRT_"), "libvirt"),
    (re.compile(r"(_direct|_ZONES(_SOURCE)?|^(PRE|POST)_\w+|^FWDI_|^FWDO_|^IN_\w+)$"), "firewalld"),
]
NFT_TABLES = {"netplug": NETPLUG, "docker-bridges": DOCKER, "netavark": NETAVARK, "cni_hostport": CNI,
              "cni_plugins_masquerade": CNI, "kube-proxy": KUBE, "firewalld": "firewalld"}


def chain_owner(name: str) -> str | None:
    for pat, owner in CHAIN_PATTERNS:
        if pat.search(name):
            return owner
    return None


def rule_owner(rule, table_owner: str | None = None) -> str:
    """Owner of one rule: its comment, the chain it sits in, the chain it jumps to, or
    telltale interfaces (docker0/br-*, podman*, virbr*)."""
    c = rule.comment
    if c.startswith("netplug") or " np:" in f" {c}":
        return NETPLUG
    if c.startswith(("dnat name:", "name: ", "CNI ")):
        return NETAVARK if c.startswith("dnat name: podman") and "NETAVARK" in rule.target else CNI
    if c.startswith("netavark"):
        return NETAVARK
    if c.startswith(("kubernetes", "kube-system/")) or "/" in c and rule.chain.startswith("KUBE-"):
        return KUBE
    if table_owner:
        return table_owner
    for name in (rule.chain, rule.target):
        o = chain_owner(name or "")
        if o:
            return o
    for iface in (rule.iif, rule.oif):
        if iface.startswith(("docker", "br-")):
            return DOCKER
        if iface.startswith(("podman", "cni-podman")):
            return NETAVARK
        if iface.startswith("virbr"):
            return "libvirt"
        if iface.startswith(("netplug", "np")):
            return NETPLUG
    return "unknown"
