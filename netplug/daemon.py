"""netplugd: keeps imports and libraries loaded so each CNI call costs milliseconds.

Serves a root-only FIFO (callers in its own pid namespace, see shim.py) and a root-only unix
socket (any caller). Either way a worker thread enters the caller's network namespace, runs the
same `dispatch` as the exec'd plugin, and leaves.
"""

import array
import json
import os
import signal
import socket
import sys
import threading

from .cni.skel import dispatch
from .netlink import ns
from .shim import ACK, PIPE_BUF, SOCKET, decode_frame, decode_request, encode_reply, fifo_path
from .log import log

MAX_REQUEST = 16 * 1024 * 1024


def handle(conn: socket.socket) -> None:
    """One request: read it whole, act in the caller's netns, reply."""
    uid = _peer_uid(conn)
    if uid != 0:
        _reply(conn, json.dumps({"cniVersion": "1.1.0", "code": 4,
                                 "msg": "netplugd serves root only"}) + "\n", 1)
        return
    fds = array.array("i")
    msg, anc, _, _ = conn.recvmsg(65536, socket.CMSG_LEN(fds.itemsize))
    for level, typ, data in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    try:
        buf = bytearray(msg)
        while True:  # the client shuts down its write side after the request
            more = conn.recv(65536)
            if not more:
                break
            buf += more
            if len(buf) > MAX_REQUEST:
                return
        if not fds:
            _reply(conn, json.dumps({"cniVersion": "1.1.0", "code": 4,
                                     "msg": "request carried no network namespace"}) + "\n", 1)
            return
        _reply(conn, *_dispatch_in(fds[0], bytes(buf), "the socket"))
    finally:
        for fd in fds:
            os.close(fd)


def handle_frame(body: bytes) -> None:
    """One request from the FIFO. The caller is found by pid and proven by the pipe it named:
    until it has our ACK it holds that pipe itself, so a pid reused by another process cannot
    hold the same pipe inode."""
    pid, reply_fd, ino, request = decode_frame(body)
    where = f"/proc/{pid}/fd/{reply_fd}"
    try:
        if os.stat(where).st_ino != ino:  # checked before opening: never open someone's tty
            return
        if os.stat(f"/proc/{pid}").st_uid != 0:
            log.warning("netplugd: FIFO request from pid %d, not root: ignored", pid)
            return
        out = os.open(where, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # the caller gave up (ACK_TIMEOUT) or is gone
        return
    try:
        if os.fstat(out).st_ino != ino:
            return
        os.set_blocking(out, True)
        netns = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            if os.stat(where).st_ino != ino:  # the caller left between the two opens
                return
            os.write(out, ACK)  # the caller may let go of its write end now, not before
            text, rc = _dispatch_in(netns, request, "the FIFO", f" for pid {pid}")
        finally:
            os.close(netns)
        reply = encode_reply(text, rc)
        while reply:
            reply = reply[os.write(out, reply):]
    except (BrokenPipeError, FileNotFoundError):  # the caller was killed meanwhile
        pass
    finally:
        os.close(out)


class FifoReader:
    """Frames off the FIFO. Each is one write of exactly PIPE_BUF bytes, which a pipe keeps
    whole, so one read of PIPE_BUF is one frame and any number of workers may wait in read()
    (the kernel wakes one per frame): no lock to hand over when a request arrives."""

    def __init__(self, path: str):
        self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)  # read-write: never EOF, never blocks

    def next(self) -> bytes:
        frame = os.read(self.fd, PIPE_BUF)
        n = int.from_bytes(frame[:4], "big")
        if len(frame) == PIPE_BUF and 16 <= n <= PIPE_BUF - 4:
            return frame[4:4 + n]
        log.error("netplugd: malformed FIFO frame (%d bytes, %r): dropping what is queued", len(frame), frame[:4])
        os.set_blocking(self.fd, False)
        try:
            while os.read(self.fd, 65536):
                pass
        except BlockingIOError:
            pass
        finally:
            os.set_blocking(self.fd, True)
        return b""


def _dispatch_in(netns_fd: int, request: bytes, channel: str, caller: str = "") -> tuple[str, int]:
    """A forwarded request, run in the caller's network namespace."""
    plugin, env, stdin = decode_request(request)
    env.setdefault("PATH", os.environ.get("PATH", ""))
    with ns.entered(netns_fd):
        out, rc = dispatch(env, stdin, plugin)
    log.debug("%s %s%s: served over %s", plugin, env.get("CNI_COMMAND"), caller, channel)
    return out, rc


def _peer_uid(conn: socket.socket) -> int:
    import struct

    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _reply(conn, out: str, rc: int) -> None:
    conn.sendall(encode_reply(out, rc))


class WorkerPool:
    """Worker threads that each block waiting for a request and serve what they get.

    A thread per request would cost its start (~0.4 ms here) on every CNI call. Instead each
    request goes to one waiting worker (the kernel wakes one of those in accept(), or in read()
    on the FIFO); a worker that takes the last idle slot starts a replacement
    first, so a slow request (a delegated IPAM plugin, a lock wait) never holds up the next one,
    and workers beyond `spare` idle ones leave after their request. `wait()` raising OSError
    means the source was closed: shutting down."""

    def __init__(self, wait, serve_one, spare: int = 4):
        self.wait, self.serve_one, self.spare = wait, serve_one, spare
        self.lock = threading.Lock()
        self.idle = 0
        for _ in range(spare):
            self._start()

    def _start(self) -> None:
        with self.lock:
            self.idle += 1
        threading.Thread(target=self._work, name="netplugd-worker", daemon=True).start()

    def _work(self) -> None:
        while True:
            try:
                request = self.wait()
            except OSError:
                with self.lock:
                    self.idle -= 1
                return
            with self.lock:
                self.idle -= 1
                last = self.idle == 0
            if last:
                self._start()
            try:
                self.serve_one(request)
            except Exception:  # one broken request must not take the worker down
                import traceback

                log.error("request failed: %s", traceback.format_exc())
            with self.lock:
                if self.idle >= self.spare:
                    return
                self.idle += 1


def _serve_conn(conn: socket.socket) -> None:
    try:
        handle(conn)
    finally:
        conn.close()


def _serve_frame(body: bytes) -> None:
    if body:
        handle_frame(body)


def serve(path: str = SOCKET) -> None:
    from .log import setup

    setup("INFO")  # NETPLUG_LOG=DEBUG: one line per request, with the channel it came over
    _warm_imports()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fifo = fifo_path(path, os.stat("/proc/self/ns/pid").st_ino)
    for old_file in (path, fifo):
        if os.path.lexists(old_file):
            os.unlink(old_file)
    old = os.umask(0o077)  # the socket and the FIFO are root-only (0600)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        os.mkfifo(fifo, 0o600)
    finally:
        os.umask(old)
    sock.listen(128)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    WorkerPool(lambda: sock.accept()[0], _serve_conn)
    WorkerPool(FifoReader(fifo).next, _serve_frame)
    log.info("netplugd listening on %s and %s (pid %d)", path, fifo, os.getpid())
    try:
        while not stop.wait(3600):
            pass
    finally:
        sock.close()
        for f in (fifo, path):  # callers that find neither do the work themselves
            try:
                os.unlink(f)
            except FileNotFoundError:
                pass


def _warm_imports() -> None:
    from .plugin import bridge, ipam_plugin  # noqa: F401
    from .netlink import link  # noqa: F401
    from .firewall import libnft, nftables, iptables_nft  # noqa: F401

    link.Links().close()
    if libnft.available() is None:
        libnft.defer_close()  # a commit's socket is closed off the request's path


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="netplugd", description="netplug CNI daemon")
    p.add_argument("--socket", default=os.environ.get("NETPLUG_SOCKET", SOCKET))
    a = p.parse_args(argv)
    if os.geteuid() != 0:
        print("netplugd: must run as root", file=sys.stderr)
        return 2
    serve(a.socket)
    return 0


if __name__ == "__main__":
    sys.exit(main())
