"""Network namespace handles, switched per thread and always switched back.

setns(CLONE_NEWNET) changes only the calling thread, and a netlink socket keeps the namespace it
was opened in, so we enter, open a socket, and leave on the same thread. /proc/sys/net follows the
thread's namespace too, which is how sysctls of "the host" netns are written.
"""

import ctypes
import os
from contextlib import contextmanager

from ..errors import EnvError, NetnsError

CLONE_NEWNET = 0x40000000
_libc = None


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def current_fd() -> int:
    """An fd for the calling thread's own netns."""
    return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def open_netns(path: str) -> int:
    """Open a runtime-supplied netns path, never creating it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise EnvError(f"CNI_NETNS {path}: no such network namespace") from None
    except OSError as e:
        raise EnvError(f"CNI_NETNS {path}: {e.strerror}") from None
    try:
        _setns_check(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _setns_check(fd: int, path: str) -> None:
    # A netns file is an nsfs inode; a plain file or directory is a runtime bug.
    st = os.fstat(fd)
    nsfs = os.stat("/proc/self/ns/net")
    if st.st_dev != nsfs.st_dev:
        raise EnvError(f"CNI_NETNS {path} is not a network namespace")


def same_netns(fd_a: int, fd_b: int) -> bool:
    a, b = os.fstat(fd_a), os.fstat(fd_b)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def refuse_own_netns(container_fd: int, host_fd: int, path: str) -> None:
    if same_netns(container_fd, host_fd):
        raise NetnsError(f"CNI_NETNS {path} is the plugin's own network namespace",
                         "refusing to treat the host as a container")


@contextmanager
def entered(fd: int):
    """Run the body with this thread in netns `fd`, then return to where it was."""
    back = current_fd()
    try:
        _setns(fd)
        try:
            yield
        finally:
            _setns(back)
    finally:
        os.close(back)
