"""netplugd's WorkerPool: no thread start per request, yet a slow request never blocks the next;
and its FifoReader: frames come off the FIFO whole, one per worker."""

import os
import socket
import threading
import time

from netplug.daemon import FifoReader, WorkerPool
from netplug.shim import PIPE_BUF, decode_frame, encode_frame


def _listener(tmp_path):
    path = os.path.join(tmp_path, "s.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(16)
    return s, path


def _pool(sock, serve_one, spare):
    def serve_and_close(conn):
        try:
            serve_one(conn)
        finally:
            conn.close()
    return WorkerPool(lambda: sock.accept()[0], serve_and_close, spare=spare)


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

    pool = _pool(sock, serve_one, spare=2)
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

    _pool(sock, serve_one, spare=1)
    assert _ask(path, b"boom") == b""  # closed without a reply
    assert _ask(path, b"fine") == b"ok"
    err, deadline = "", time.monotonic() + 5
    while "request failed" not in err and time.monotonic() < deadline:  # logged after the close
        err += capfd.readouterr().err
        time.sleep(0.01)
    assert "request failed" in err
    sock.close()


def test_fifo_frames_come_whole_to_concurrent_workers(tmp_path):
    path = os.path.join(tmp_path, "d.fifo")
    os.mkfifo(path, 0o600)
    reader = FifoReader(path)
    got, lock = [], threading.Lock()

    def serve_one(body):
        with lock:
            got.append(decode_frame(body))

    WorkerPool(reader.next, serve_one, spare=3)
    requests = [bytes([i]) * (100 + 37 * i) for i in range(40)]

    def send(i):
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.write(fd, encode_frame(1000 + i, 7, 2**40 + i, requests[i]))
        os.close(fd)

    writers = [threading.Thread(target=send, args=(i,)) for i in range(40)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    deadline = time.monotonic() + 5
    while len(got) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(got) == [(1000 + i, 7, 2**40 + i, requests[i]) for i in range(40)]


def test_fifo_reader_drops_a_malformed_frame_and_goes_on(tmp_path, capfd):
    path = os.path.join(tmp_path, "d.fifo")
    os.mkfifo(path, 0o600)
    reader = FifoReader(path)
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    os.write(fd, (PIPE_BUF + 1).to_bytes(4, "big") + b"junk")
    assert reader.next() == b""
    assert "malformed FIFO frame" in capfd.readouterr().err
    os.write(fd, encode_frame(1, 2, 3, b"req"))
    assert decode_frame(reader.next()) == (1, 2, 3, b"req")
    os.close(fd)


def test_frames_are_one_pipe_buf_each():
    frame = encode_frame(1, 2, 3, b"r" * 100)
    assert len(frame) == PIPE_BUF and decode_frame(frame[4:4 + int.from_bytes(frame[:4], "big")]) == (1, 2, 3, b"r" * 100)
    assert len(encode_frame(1, 2, 3, b"r" * (PIPE_BUF - 20))) == PIPE_BUF  # the longest that fits
    assert encode_frame(1, 2, 3, b"r" * (PIPE_BUF - 19)) is None  # too long: the socket takes it
