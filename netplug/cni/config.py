"""Network configuration: parsed and validated before any side effect (pure).

Code after `parse_netconf` receives typed objects, never raw dicts.
"""

import ipaddress
import os
from functools import lru_cache

from ..errors import ConfigError, DecodeError
from .env import valid_ifname, valid_name
from .version import require
from ..record import field, record

DEFAULT_BRIDGE = "netplug0"
DEFAULT_SUBNET = "172.17.0.0/16"
DEFAULT_DATA_DIR = "/var/lib/cni/networks"  # the reference host-local's default: stores stay shared
DEFAULT_STATE_DIR = "/run/netplug"  # tmpfs: attachments die with the netns they describe
BACKENDS = ("auto", "nftables", "iptables", "iptables-legacy", "none")
PROTOCOLS = ("tcp", "udp", "sctp")

IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


@record(frozen=True)
class Range:
    subnet: IPNet
    start: IPAddr
    end: IPAddr
    gateway: IPAddr

    def __contains__(self, ip: IPAddr) -> bool:
        return ip.version == self.subnet.version and self.start <= ip <= self.end

    def text(self) -> str:
        return f"{self.start}-{self.end}"


@record(frozen=True)
class RouteConf:
    dst: IPNet
    gw: IPAddr | None = None


@record
class IPAMConf:
    type: str
    ranges: list[list[Range]] = field(default_factory=list)
    routes: list[RouteConf] = field(default_factory=list)
    data_dir: str = DEFAULT_DATA_DIR
    resolv_conf: str = ""
    raw: dict = field(default_factory=dict)

    @property
    def first_range(self) -> Range:
        return self.ranges[0][0]


@record(frozen=True)
class PortMapping:
    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""  # "" = every local address

    def key(self) -> tuple[str, str, int]:
        return (self.protocol, self.host_ip or "0.0.0.0", self.host_port)

    def to_json(self) -> dict:
        out = {"hostPort": self.host_port, "containerPort": self.container_port,
               "protocol": self.protocol}
        if self.host_ip:
            out["hostIP"] = self.host_ip
        return out


@record
class NetConf:
    cni_version: str
    name: str
    type: str
    bridge: str = DEFAULT_BRIDGE
    is_gateway: bool = True
    is_default_gateway: bool = True
    force_address: bool = False
    mtu: int = 1500
    hairpin_mode: bool = False
    promisc_mode: bool = False
    ip_masq: bool = False
    cluster_cidr: str = ""  # with ipMasq: no masquerade for destinations inside it (Kubernetes)
    firewall_backend: str = "auto"
    state_dir: str = DEFAULT_STATE_DIR
    ipam: IPAMConf | None = None
    dns: dict = field(default_factory=dict)
    port_mappings: list[PortMapping] = field(default_factory=list)
    requested_ips: list[IPAddr] = field(default_factory=list)
    mac: str = ""
    prev_result: dict | None = None
    valid_attachments: list[tuple[str, str]] | None = None
    raw: dict = field(default_factory=dict)


def _bool(conf: dict, key: str, default: bool) -> bool:
    v = conf.get(key, default)
    if not isinstance(v, bool):
        raise ConfigError(f"{key} must be true or false, got {v!r}")
    return v


def _str(conf: dict, key: str, default: str = "") -> str:
    v = conf.get(key, default)
    if not isinstance(v, str):
        raise ConfigError(f"{key} must be a string, got {v!r}")
    return v


def _net(text: object, what: str) -> IPNet:
    if not isinstance(text, str):
        raise ConfigError(f"{what} must be a CIDR string, got {text!r}")
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        try:
            iface = ipaddress.ip_interface(text)
        except ValueError:
            raise ConfigError(f"{what} {text!r} is not a valid CIDR") from None
        raise ConfigError(
            f"{what} {text!r} is not a network address (host bits set); did you mean {iface.network}?"
        ) from None


def _ip(text: object, what: str) -> IPAddr:
    if not isinstance(text, str):
        raise ConfigError(f"{what} must be an IP address string, got {text!r}")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ConfigError(f"{what} {text!r} is not a valid IP address") from None


def _abs_dir(text: str, what: str) -> str:
    if not os.path.isabs(text) or ".." in text.split("/") or "\0" in text:
        raise ConfigError(f"{what} {text!r} must be an absolute path without '..'")
    return os.path.normpath(text)


def parse_range(d: object) -> Range:
    if not isinstance(d, dict):
        raise ConfigError(f"ipam range must be an object, got {d!r}")
    key = tuple(d.get(k) for k in ("subnet", "gateway", "rangeStart", "rangeEnd"))
    if all(v is None or isinstance(v, str) for v in key):
        return _range(*key)
    return _range.__wrapped__(*key)  # not hashable: parsed (and refused) without the cache


@lru_cache(maxsize=64)  # netplugd parses the same network's range on every call
def _range(subnet_text, gateway_text, start_text, end_text) -> Range:
    subnet = _net(subnet_text, "ipam subnet")
    if subnet.num_addresses < 4:
        raise ConfigError(f"Network {subnet} too small to allocate from")
    first = subnet.network_address + 1
    last = subnet.broadcast_address - (1 if subnet.version == 4 else 0)
    gateway = _ip(gateway_text, "ipam gateway") if gateway_text else first
    if gateway not in subnet:
        raise ConfigError(f"gateway {gateway} is outside subnet {subnet}")
    start = _ip(start_text, "rangeStart") if start_text else first
    end = _ip(end_text, "rangeEnd") if end_text else last
    for ip, what in ((start, "rangeStart"), (end, "rangeEnd")):
        if ip not in subnet or ip == subnet.network_address or (
            subnet.version == 4 and ip == subnet.broadcast_address
        ):
            raise ConfigError(f"{what} {ip} is not a usable address of {subnet}")
    if start > end:
        raise ConfigError(f"rangeStart {start} is after rangeEnd {end}")
    return Range(subnet, start, end, gateway)


def parse_ipam(d: object, runtime: dict) -> IPAMConf:
    if not isinstance(d, dict):
        raise ConfigError("ipam must be an object")
    ipam_type = _str(d, "type")
    if not ipam_type:
        raise ConfigError("ipam.type is missing")
    if not valid_name(ipam_type):
        raise ConfigError(f"ipam.type {ipam_type!r} is not a plugin name")
    conf = IPAMConf(type=ipam_type, raw=d)
    raw_ranges = runtime.get("ipRanges") or d.get("ranges")
    if raw_ranges is None and d.get("subnet"):
        raw_ranges = [[{k: d[k] for k in ("subnet", "rangeStart", "rangeEnd", "gateway") if k in d}]]
    if raw_ranges is not None:
        if not isinstance(raw_ranges, list) or not all(isinstance(s, list) and s for s in raw_ranges):
            raise ConfigError("ipam.ranges must be a list of non-empty lists of ranges")
        conf.ranges = [[parse_range(r) for r in rset] for rset in raw_ranges]
        _check_overlap(conf.ranges)
    routes = d.get("routes", [])
    if not isinstance(routes, list):
        raise ConfigError("ipam.routes must be a list")
    for r in routes:
        if not isinstance(r, dict):
            raise ConfigError(f"ipam route must be an object, got {r!r}")
        gw = _ip(r["gw"], "route gw") if r.get("gw") else None
        conf.routes.append(RouteConf(_net(r.get("dst"), "route dst"), gw))
    conf.data_dir = _abs_dir(_str(d, "dataDir", DEFAULT_DATA_DIR), "ipam.dataDir")
    conf.resolv_conf = _str(d, "resolvConf")
    return conf


def _check_overlap(sets: list[list[Range]]) -> None:
    flat = [r for s in sets for r in s]
    for i, a in enumerate(flat):
        for b in flat[i + 1:]:
            if a.subnet.version == b.subnet.version and a.start <= b.end and b.start <= a.end:
                raise ConfigError(f"ipam ranges {a.text()} and {b.text()} overlap")


def parse_port_mappings(raw: object) -> list[PortMapping]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError("runtimeConfig.portMappings must be a list")
    out = []
    for m in raw:
        if not isinstance(m, dict):
            raise ConfigError(f"port mapping must be an object, got {m!r}")
        hp, cp = m.get("hostPort"), m.get("containerPort")
        for v, what in ((hp, "hostPort"), (cp, "containerPort")):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 < v < 65536:
                raise ConfigError(f"invalid port mapping: {what} {v!r} is not in 1-65535")
        proto = m.get("protocol", "tcp") or "tcp"
        if not isinstance(proto, str) or proto.lower() not in PROTOCOLS:
            raise ConfigError(f"invalid port mapping: protocol {proto!r}, expected tcp, udp or sctp")
        host_ip = m.get("hostIP", "") or ""
        if host_ip:
            ip = _ip(host_ip, "hostIP")
            host_ip = "" if ip.is_unspecified else str(ip)
        out.append(PortMapping(hp, cp, proto.lower(), host_ip))
    seen = set()
    for pm in out:
        if pm.key() in seen:
            raise ConfigError(f"port {pm.host_port}/{pm.protocol} is mapped twice in one request")
        seen.add(pm.key())
    return out


def _obj(d: dict, key: str, what: str) -> dict:
    v = d.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ConfigError(f"{what} must be an object, got {type(v).__name__}")
    return v


def _args_cni(conf: dict) -> dict:
    return _obj(_obj(conf, "args", "args"), "cni", "args.cni")


def _requested_ips(conf: dict, runtime: dict, cni_args: dict) -> list[IPAddr]:
    # Precedence as in host-local: runtimeConfig.ips, then args.cni.ips, then CNI_ARGS IP.
    for src, what in ((runtime.get("ips"), "runtimeConfig.ips"),
                      (_args_cni(conf).get("ips"), "args.cni.ips")):
        if src:
            if not isinstance(src, list):
                raise ConfigError(f"{what} must be a list")
            return [ipaddress.ip_interface(_checked_iface(s, what)).ip for s in src]
    if cni_args.get("IP"):
        return [ipaddress.ip_interface(_checked_iface(s, "CNI_ARGS IP")).ip
                for s in cni_args["IP"].split(",")]
    return []


def _checked_iface(s: object, what: str) -> str:
    if not isinstance(s, str):
        raise ConfigError(f"{what}: {s!r} is not an IP address")
    try:
        ipaddress.ip_interface(s)
    except (ValueError, TypeError):
        raise ConfigError(f"{what}: {s!r} is not an IP address") from None
    return s


def _valid_mac(mac: object) -> bool:
    parts = mac.split(":") if isinstance(mac, str) else []
    return len(parts) == 6 and all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p) for p in parts)


def parse_json(stdin: bytes | str) -> dict:
    from ..jsonlite import loads

    try:
        conf = loads(stdin)
    except (ValueError, UnicodeDecodeError) as e:
        raise DecodeError("network config on stdin is not valid JSON", str(e)) from None
    if not isinstance(conf, dict):
        raise DecodeError("network config on stdin must be a JSON object")
    return conf


def parse_netconf(conf: dict, command: str, cni_args: dict | None = None) -> NetConf:
    """Validate the plugin config for `command`. Raises ConfigError (7) / VersionError (1)."""
    version = conf.get("cniVersion", "0.1.0")
    if not isinstance(version, str):
        raise ConfigError(f"cniVersion must be a string, got {version!r}")
    require(version, command)
    name = conf.get("name")
    if not valid_name(name):
        raise ConfigError(f"invalid network name {name!r}",
                          "must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$")
    runtime = conf.get("runtimeConfig") or {}
    if not isinstance(runtime, dict):
        raise ConfigError("runtimeConfig must be an object")
    nc = NetConf(cni_version=version, name=name, type=_str(conf, "type"), raw=conf)
    nc.bridge = _str(conf, "bridge", DEFAULT_BRIDGE)
    # stricter than Linux: the name is written into firewall rules, so no quotes or shell-ish
    # characters can ever reach a rule, a comment or a batch
    if not valid_ifname(nc.bridge) or not valid_name(nc.bridge):
        raise ConfigError(f"invalid bridge name {nc.bridge!r}",
                          "1-15 characters from A-Z a-z 0-9 _ . -, starting with a letter or digit")
    nc.is_default_gateway = _bool(conf, "isDefaultGateway", True)
    nc.is_gateway = _bool(conf, "isGateway", True) or nc.is_default_gateway
    nc.force_address = _bool(conf, "forceAddress", False)
    nc.hairpin_mode = _bool(conf, "hairpinMode", False)
    nc.promisc_mode = _bool(conf, "promiscMode", False)
    if nc.hairpin_mode and nc.promisc_mode:
        raise ConfigError("cannot set hairpinMode and promiscMode at the same time")
    nc.ip_masq = _bool(conf, "ipMasq", False)
    if conf.get("clusterCIDR"):
        net = _net(conf["clusterCIDR"], "clusterCIDR")
        if net.version != 4:
            raise ConfigError("clusterCIDR must be an IPv4 network")
        nc.cluster_cidr = str(net)
    mtu = conf.get("mtu", 1500)
    if isinstance(mtu, bool) or not isinstance(mtu, int) or not 68 <= mtu <= 65535:
        raise ConfigError(f"mtu {mtu!r} must be an integer in 68-65535")
    nc.mtu = mtu
    nc.firewall_backend = _str(conf, "firewallBackend", "auto")
    if nc.firewall_backend not in BACKENDS:
        raise ConfigError(f"firewallBackend {nc.firewall_backend!r} is not one of {list(BACKENDS)}")
    nc.state_dir = _abs_dir(_str(conf, "stateDir", DEFAULT_STATE_DIR), "stateDir")
    if "ipam" in conf and conf["ipam"]:
        nc.ipam = parse_ipam(conf["ipam"], runtime)
    dns = conf.get("dns") or {}
    if not isinstance(dns, dict):
        raise ConfigError("dns must be an object")
    nc.dns = dns
    nc.port_mappings = parse_port_mappings(runtime.get("portMappings"))
    nc.requested_ips = _requested_ips(conf, runtime, cni_args or {})
    nc.mac = (cni_args or {}).get("MAC", "") or _args_cni(conf).get("mac", "") or runtime.get("mac", "")
    if nc.mac and not _valid_mac(nc.mac):
        raise ConfigError(f"invalid MAC address {nc.mac!r}")
    prev = conf.get("prevResult")
    if prev is not None and not isinstance(prev, dict):
        raise ConfigError("prevResult must be an object")
    nc.prev_result = prev or None
    if command == "GC":
        nc.valid_attachments = _attachments(conf)
    return nc


def _attachments(conf: dict) -> list[tuple[str, str]]:
    # libcni 1.1 sends both keys; the spec-v1.1.0 tag spelled it "cni.dev/attachments".
    raw = conf.get("cni.dev/valid-attachments", conf.get("cni.dev/attachments", []))
    if not isinstance(raw, list):
        raise ConfigError("cni.dev/valid-attachments must be a list")
    out = []
    for a in raw:
        if not isinstance(a, dict):
            raise ConfigError(f"attachment must be an object, got {a!r}")
        out.append((str(a.get("containerID", "")), str(a.get("ifname", ""))))
    return out
