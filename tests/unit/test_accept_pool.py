"""netplugd's AcceptPool: no thread start per request, yet a slow request never blocks the next."""

import os
import socket
import threading
import time

from netplug.daemon import AcceptPool


def _listener(tmp_path):
    path = os.path.join(tmp_path, "s.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(16)
    return s, path


def _ask(path, payload=b"x"):
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(path)
    c.sendall(payload)
    c.shutdown(socket.SHUT_WR)
    got = c.recv(100)
    c.close()
    return got


def test_slow_requests_do_not_hold_up_others(tmp_path):
    """More requests stuck at once than there are spare workers: the rest are still served."""
    sock, path = _listener(tmp_path)
    release = threading.Event()

    def serve_one(conn):
        data = conn.recv(100)
        if data == b"slow":
            release.wait(10)
        conn.sendall(b"ok:" + data)

    pool = AcceptPool(sock, serve_one, spare=2)
    slow = [threading.Thread(target=_ask, args=(path, b"slow")) for _ in range(5)]
    for t in slow:
        t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    assert _ask(path, b"fast") == b"ok:fast"
    assert time.monotonic() - t0 < 2
    release.set()
    for t in slow:
        t.join(5)
    # workers beyond the spare ones leave once they are done
    deadline = time.monotonic() + 5
    while pool.idle > 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pool.idle == 2
    sock.close()


def test_a_failing_request_does_not_kill_the_worker(tmp_path, capfd):
    sock, path = _listener(tmp_path)

    def serve_one(conn):
        data = conn.recv(100)
        if data == b"boom":
            raise RuntimeError("boom")
        conn.sendall(b"ok")

    AcceptPool(sock, serve_one, spare=1)
    assert _ask(path, b"boom") == b""  # closed without a reply
    assert _ask(path, b"fine") == b"ok"
    assert "request failed" in capfd.readouterr().err
    sock.close()
