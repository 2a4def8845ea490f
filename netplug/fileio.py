"""Small-file helpers for the per-call paths, where every syscall shows in the latency."""

import os


def read_small(path: str) -> str:
    """A small file's text in three syscalls (open, read, close); the built-in open() makes
    nine here (fstat, ioctl, lseeks, a second read). Raises OSError as open() does."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = [os.read(fd, 65536)]
        while len(chunks[-1]) == 65536:  # a short read of a regular or /proc file is its end
            chunks.append(os.read(fd, 65536))
        return b"".join(chunks).decode()
    finally:
        os.close(fd)


def ensure_dir(path: str, mode: int) -> None:
    """os.makedirs(path, mode, exist_ok=True) in one syscall when the parent exists (every call
    but the first): makedirs checks with two stats around its mkdir."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(path, mode=mode, exist_ok=True)
