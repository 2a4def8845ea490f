"""flock with a bounded wait: a busy store answers CNI code 11 instead of hanging a runtime."""

import errno
import fcntl
import os
import time
from contextlib import contextmanager

from .errors import BusyError

DEFAULT_TIMEOUT = float(os.environ.get("NETPLUG_LOCK_TIMEOUT", "10"))


@contextmanager
def flocked(path: str, timeout: float | None = None, what: str = "store"):
    timeout = DEFAULT_TIMEOUT if timeout is None else timeout
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                if time.monotonic() >= deadline:
                    raise BusyError(f"{what} is locked by another process (waited {timeout:g}s): {path}",
                                    "try again later") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
        yield
    finally:
        os.close(fd)  # closing drops the lock
