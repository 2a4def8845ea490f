"""IPv4 sysctls of the calling thread's netns (via /proc/sys/net, which follows the thread)."""

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
