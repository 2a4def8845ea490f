"""Sysctls of the calling thread's netns (via /proc/sys/net, which follows the thread)."""

import os

from ..fileio import read_small


def _path(*parts: str) -> str:
    return os.path.join("/proc/sys/net/ipv4", *parts)


def read(*parts: str) -> str | None:
    try:
        return read_small(_path(*parts)).strip()
    except OSError:
        return None


def ensure(value: str, *parts: str) -> None:
    if read(*parts) != value:
        with open(_path(*parts), "w") as f:
            f.write(value)


def enable_forwarding() -> None:
    ensure("1", "ip_forward")


def route_localnet(ifname: str) -> None:
    # Lets 127.0.0.1:hostPort be DNATed out of this bridge only; the firewall drops 127/8 that
    # arrives on it (CVE-2020-8558), so neighbours can't reach the host's loopback services.
    ensure("1", "conf", ifname, "route_localnet")


def ipv6_off(ifname: str) -> None:
    """No IPv6 on a bridge port (the host end of a pair). It bridges frames and needs no address
    of its own; left on, each port adds a link-local address and routes to the host's IPv6
    table once its carrier comes up, and the kernel walks that whole table on every link event
    (netplug's ADD and DEL among them), so each container would make the next ones slower. It
    also stops the port's own DAD, router solicitations and MLD reports. Written before the
    container's end goes up, so none of that ever starts. Best effort: where IPv6 is off
    altogether, or /proc/sys is read-only (a containerised runtime), the port simply keeps it."""
    try:
        with open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", "w") as f:
            f.write("1")
    except OSError:
        pass
