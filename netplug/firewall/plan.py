"""Pure rule plans: what netplug wants in the nat and filter tables.

    nat  PREROUTING  -m addrtype --dst-type LOCAL            -j NETPLUG-HOSTPORTS
    nat  OUTPUT      -m addrtype --dst-type LOCAL            -j NETPLUG-HOSTPORTS
    nat  POSTROUTING                                         -j NETPLUG-POSTROUTING
    nat  NETPLUG-POSTROUTING -m mark --mark 0x2000/0x2000    -j MASQUERADE   (hairpin, localhost)
    nat  NETPLUG-POSTROUTING -s <subnet> ! -o <bridge>       -j MASQUERADE   (one per network)
    nat  NETPLUG-HOSTPORTS [-d hostIP] -p P --dport H        -j NETPLUG-DN-<hash>  (per container)
    nat  NETPLUG-DN-<hash>  -s <subnet>/127.0.0.0/8 ...      -j MARK (needs masquerade)
    nat  NETPLUG-DN-<hash>  -p P --dport H                   -j DNAT --to-destination C:port
    filter FORWARD -j NETPLUG-FORWARD: replies and DNATed traffic to the bridge, all from it
    filter INPUT   -j NETPLUG-INPUT:   drop 127/8 arriving on the bridge (route_localnet guard)

Top-level chain names and comment tokens are an interface: `netplug explain`, GC and older
installs depend on them. Never rename them.
"""

from functools import lru_cache

from ..cni.config import PortMapping
from .model import Rule
from ..record import field, record

HOSTPORTS = "NETPLUG-HOSTPORTS"
POSTROUTING = "NETPLUG-POSTROUTING"
FORWARD = "NETPLUG-FORWARD"
INPUT = "NETPLUG-INPUT"
DN_PREFIX = "NETPLUG-DN-"
MASQ_MARK = "0x2000/0x2000"
SHARED_CHAINS = (("nat", HOSTPORTS), ("nat", POSTROUTING), ("filter", FORWARD), ("filter", INPUT))


def _sha256(data: bytes):
    try:  # the builtin module: hashlib loads OpenSSL, ~7 ms of every exec
        from _sha256 import sha256
    except ImportError:  # Python >= 3.12 names it _sha2
        try:
            from _sha2 import sha256
        except ImportError:
            from hashlib import sha256
    return sha256(data)


def owner_hash(network: str, container_id: str, ifname: str) -> str:
    return _sha256(f"{network}\0{container_id}\0{ifname}".encode()).hexdigest()[:16]


def dn_chain(h: str) -> str:
    return DN_PREFIX + h  # 27 characters: iptables allows 28


def container_tag(h: str) -> frozenset[str]:
    return frozenset({f"np:{h}"})


def network_tag(network: str) -> frozenset[str]:
    return frozenset({"netplug", f"net={network}"})


BASE_TAG = frozenset({"netplug", "base"})


@record
class Plan:
    """Rules to make present (`ensure`, identified by comment) and chains we own outright
    (`fill`, flushed and refilled)."""

    ensure: list[Rule] = field(default_factory=list)
    fill: dict[tuple[str, str], list[Rule]] = field(default_factory=dict)

    def __add__(self, other: "Plan") -> "Plan":
        return Plan(self.ensure + other.ensure, {**self.fill, **other.fill})

    def all_rules(self) -> list[Rule]:
        return self.ensure + [r for rules in self.fill.values() for r in rules]


# base() and network() are remembered: netplugd then sends the very same Rule objects on every
# ADD (their encodings are cached by value). Plans are combined with +, which copies; a returned
# plan is never changed in place.
@lru_cache(maxsize=1)
def base() -> Plan:
    c = "netplug base"
    return Plan(ensure=[
        Rule("nat", "PREROUTING", HOSTPORTS, dst_local=True, comment=f"{c} hostports"),
        Rule("nat", "OUTPUT", HOSTPORTS, dst_local=True, comment=f"{c} hostports-from-host"),
        Rule("nat", "POSTROUTING", POSTROUTING, comment=f"{c} postrouting"),
        Rule("nat", POSTROUTING, "MASQUERADE", mark=MASQ_MARK, comment=f"{c} masquerade-marked"),
        Rule("filter", "FORWARD", FORWARD, comment=f"{c} forward"),
        Rule("filter", "INPUT", INPUT, comment=f"{c} input"),
    ])


@lru_cache(maxsize=64)
def network(name: str, subnet: str, bridge: str, ip_masq: bool, cluster_cidr: str = "") -> Plan:
    c = f"netplug net={name}"
    rules = [
        Rule("filter", FORWARD, "ACCEPT", oif=bridge, ctstate="RELATED,ESTABLISHED,DNAT",
             comment=f"{c} to-containers"),
        Rule("filter", FORWARD, "ACCEPT", iif=bridge, comment=f"{c} from-containers"),
        Rule("filter", INPUT, "DROP", iif=bridge, dst="127.0.0.0/8", ctstate="RELATED,ESTABLISHED,DNAT",
             ctstate_not=True, comment=f"{c} martian-loopback"),
    ]
    if ip_masq:
        # Docker's shape; in a cluster, traffic to other pods keeps its source (no NAT inside)
        rules.insert(0, Rule("nat", POSTROUTING, "MASQUERADE", src=subnet, oif=bridge, oif_not=True,
                             dst=cluster_cidr, dst_not=bool(cluster_cidr), comment=f"{c} masquerade"))
    return Plan(ensure=rules)


def container(name: str, cid: str, h: str, ip: str, subnet: str,
              mappings: list[PortMapping]) -> Plan:
    """The published ports of one attachment; empty when it publishes none."""
    v4 = [m for m in mappings if ":" not in m.host_ip]  # an IPv6 hostIP can't reach an IPv4 container
    if not v4:
        return Plan()
    chain = dn_chain(h)
    comment = f"netplug net={name} id={cid} np:{h}"
    entry, body = [], []
    for m in v4:
        entry.append(Rule("nat", HOSTPORTS, chain, dst=m.host_ip, proto=m.protocol,
                          dport=m.host_port, comment=f"{comment} {m.protocol}/{m.host_port}"))
        port = dict(proto=m.protocol, dport=m.host_port)
        body += [
            Rule("nat", chain, "MARK", src=subnet, set_mark=MASQ_MARK, **port),      # hairpin
            Rule("nat", chain, "MARK", src="127.0.0.0/8", set_mark=MASQ_MARK, **port),  # localhost
            Rule("nat", chain, "DNAT", to=f"{ip}:{m.container_port}", **port),
        ]
    return Plan(ensure=entry, fill={("nat", chain): body})
