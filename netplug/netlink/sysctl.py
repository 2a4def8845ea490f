"""Sysctls of the calling thread's netns (via /proc/sys/net, which follows the thread)."""

import _thread
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
        _write_ipv6_conf(ifname, "disable_ipv6", b"1")
    except OSError:
        pass


# /proc/sys/net/ipv6/conf of the last few namespaces written in, as O_PATH fds. A path from
# /proc/sys/net walks one dentry per namespace on the host that has used /proc/sys/net (6 us
# with none, ~75 us with 300 here, ~0.2 ms inside bench runs); a path relative to this directory
# does not. Keyed by the namespace's inode number: only a namespace that is gone can have left
# its number to another, and its directory then answers ENOENT, so it is opened again.
_conf6_dirs: dict[int, int] = {}
_conf6_lock = _thread.allocate_lock()  # netplugd's threads share the fds: none is closed in use


def _write_ipv6_conf(ifname: str, key: str, value: bytes) -> None:
    netns = os.stat("/proc/thread-self/ns/net").st_ino
    with _conf6_lock:
        d = _conf6_dirs.get(netns)
        if d is not None:
            try:
                return _write_at(d, f"{ifname}/{key}", value)
            except FileNotFoundError:
                os.close(_conf6_dirs.pop(netns))
        d = os.open("/proc/sys/net/ipv6/conf", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        if len(_conf6_dirs) >= 8:
            os.close(_conf6_dirs.pop(next(iter(_conf6_dirs))))  # the oldest
        _conf6_dirs[netns] = d
        _write_at(d, f"{ifname}/{key}", value)


def _write_at(dir_fd: int, path: str, value: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.write(fd, value)
    finally:
        os.close(fd)
