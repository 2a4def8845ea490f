"""netplugd: keeps imports and libraries loaded so each CNI call costs milliseconds.

Serves a root-only unix socket. Each request carries an fd of the caller's network namespace;
a worker thread enters it, runs the same `dispatch` as the exec'd plugin, and leaves.
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
from .shim import SOCKET, decode_request
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
        plugin, env, stdin = decode_request(bytes(buf))
        if not fds:
            _reply(conn, json.dumps({"cniVersion": "1.1.0", "code": 4,
                                     "msg": "request carried no network namespace"}) + "\n", 1)
            return
        env.setdefault("PATH", os.environ.get("PATH", ""))
        with ns.entered(fds[0]):
            out, rc = dispatch(env, stdin, plugin)
        _reply(conn, out, rc)
    finally:
        for fd in fds:
            os.close(fd)


def _peer_uid(conn: socket.socket) -> int:
    import struct

    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _reply(conn, out: str, rc: int) -> None:
    conn.sendall(rc.to_bytes(4, "big", signed=True) + out.encode())


class AcceptPool:
    """Worker threads that each block in accept() and serve what they accept.

    A thread per request would cost its start (~0.4 ms here) on every CNI call. Instead the kernel
    hands each connection to one waiting worker; a worker that takes the last idle slot starts a
    replacement first, so a slow request (a delegated IPAM plugin, a lock wait) never holds up
    the next one, and workers beyond `spare` idle ones leave after their request."""

    def __init__(self, sock: socket.socket, serve_one, spare: int = 4):
        self.sock, self.serve_one, self.spare = sock, serve_one, spare
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
                conn, _ = self.sock.accept()
            except OSError:  # the listening socket was closed: shutting down
                with self.lock:
                    self.idle -= 1
                return
            with self.lock:
                self.idle -= 1
                last = self.idle == 0
            if last:
                self._start()
            try:
                self.serve_one(conn)
            except Exception:  # one broken request must not take the worker down
                import traceback

                log.error("request failed: %s", traceback.format_exc())
            finally:
                conn.close()
            with self.lock:
                if self.idle >= self.spare:
                    return
                self.idle += 1


def serve(path: str = SOCKET) -> None:
    from .log import setup

    setup("INFO")
    _warm_imports()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    if os.path.exists(path):
        os.unlink(path)
    old = os.umask(0o077)  # the socket is root-only (0600)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
    finally:
        os.umask(old)
    sock.listen(128)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    AcceptPool(sock, handle)
    log.info("netplugd listening on %s (pid %d)", path, os.getpid())
    try:
        while not stop.wait(3600):
            pass
    finally:
        sock.close()
        try:
            os.unlink(path)
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
