"""CNI results: one internal model, printed in whatever version the config asked for."""

import ipaddress

from ..errors import ConfigError
from .version import key
from ..record import field, record


@record
class Interface:
    name: str
    mac: str = ""
    mtu: int = 0
    sandbox: str = ""

    def to_json(self, version: str) -> dict:
        out = {"name": self.name}
        if self.mac:
            out["mac"] = self.mac
        if self.mtu and key(version) >= (1, 1, 0):
            out["mtu"] = self.mtu
        if self.sandbox:
            out["sandbox"] = self.sandbox
        return out


@record
class IPConfig:
    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    gateway: str = ""
    interface: int | None = None

    def to_json(self, version: str) -> dict:
        out: dict = {}
        if key(version) < (1, 0, 0):
            out["version"] = str(self.address.version)
        if self.interface is not None:
            out["interface"] = self.interface
        out["address"] = str(self.address)
        if self.gateway:
            out["gateway"] = self.gateway
        return out


@record
class Route:
    dst: str
    gw: str = ""

    def to_json(self) -> dict:
        return {"dst": self.dst, "gw": self.gw} if self.gw else {"dst": self.dst}


@record
class Result:
    interfaces: list[Interface] = field(default_factory=list)
    ips: list[IPConfig] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    dns: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # keys of a prevResult we don't model, passed through

    def to_json(self, version: str) -> dict:
        if key(version) < (0, 3, 0):
            return self._legacy(version)
        out: dict = {"cniVersion": version}
        out.update(self.extra)
        if self.interfaces:
            out["interfaces"] = [i.to_json(version) for i in self.interfaces]
        if self.ips:
            out["ips"] = [i.to_json(version) for i in self.ips]
        if self.routes:
            out["routes"] = [r.to_json() for r in self.routes]
        if self.dns:
            out["dns"] = self.dns
        return out

    def _legacy(self, version: str) -> dict:
        out: dict = {"cniVersion": version}
        for fam, k in ((4, "ip4"), (6, "ip6")):
            ip = next((i for i in self.ips if i.address.version == fam), None)
            if ip is None:
                continue
            d: dict = {"ip": str(ip.address)}
            if ip.gateway:
                d["gateway"] = ip.gateway
            routes = [r.to_json() for r in self.routes
                      if ipaddress.ip_network(r.dst).version == fam]
            if routes:
                d["routes"] = routes
            out[k] = d
        if "ip4" not in out and "ip6" not in out:
            raise ConfigError("cannot convert: no valid IP addresses")
        if self.dns:
            out["dns"] = self.dns
        return out


def parse_result(d: dict) -> Result:
    """Read a prevResult (or a delegated plugin's output) of any supported version."""
    try:
        if "ip4" in d or "ip6" in d:
            res = Result(dns=d.get("dns") or {})
            for k in ("ip4", "ip6"):
                if k in d:
                    res.ips.append(IPConfig(ipaddress.ip_interface(d[k]["ip"]), d[k].get("gateway", "")))
                    res.routes += [Route(r["dst"], r.get("gw", "")) for r in d[k].get("routes", [])]
            return res
        res = Result(
            interfaces=[Interface(i["name"], i.get("mac", ""), i.get("mtu", 0), i.get("sandbox", ""))
                        for i in d.get("interfaces") or []],
            ips=[IPConfig(ipaddress.ip_interface(i["address"]), i.get("gateway", ""), i.get("interface"))
                 for i in d.get("ips") or []],
            routes=[Route(r["dst"], r.get("gw", "")) for r in d.get("routes") or []],
            dns=d.get("dns") or {},
        )
        known = {"cniVersion", "interfaces", "ips", "routes", "dns"}
        res.extra = {k: v for k, v in d.items() if k not in known}
        return res
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ConfigError("prevResult is malformed", repr(e)) from None
