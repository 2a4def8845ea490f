"""A tiny TCP/UDP peer for data-plane tests: the server answers with the source it saw."""

import socket
import sys


def serve(proto, addr, port):
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    if proto == "tcp":
        s.listen(64)
    print("ready", flush=True)
    while True:
        if proto == "tcp":
            c, peer = s.accept()
            c.sendall(f"{peer[0]}".encode())
            c.close()
        else:
            data, peer = s.recvfrom(2048)
            s.sendto(f"{peer[0]}".encode(), peer)


def ask(proto, ip, port, timeout, src=None):
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
    s.settimeout(timeout)
    if src:
        s.bind((src, 0))
    try:
        if proto == "tcp":
            s.connect((ip, port))
            print(s.recv(256).decode())
        else:
            s.sendto(b"hi", (ip, port))
            print(s.recvfrom(256)[0].decode())
    except OSError:
        pass


def serve_many(port, ns_paths):
    """One process, one TCP listener in each namespace (a socket keeps the netns it was made in)."""
    import ctypes
    import os
    import selectors

    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    sel = selectors.DefaultSelector()
    for path in ns_paths:
        fd = os.open(path, os.O_RDONLY)
        assert libc.setns(fd, 0x40000000) == 0
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(16)
        sel.register(s, selectors.EVENT_READ)
        assert libc.setns(home, 0x40000000) == 0
        os.close(fd)
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            c, peer = key.fileobj.accept()
            c.sendall(peer[0].encode())
            c.close()


def ask_many(ip, ports, timeout):
    for port in ports:
        s = socket.socket()
        s.settimeout(timeout)
        try:
            s.connect((ip, port))
            print(s.recv(256).decode(), flush=True)
        except OSError:
            print("-", flush=True)
        finally:
            s.close()


if __name__ == "__main__":
    if sys.argv[1] == "serve-many":
        serve_many(int(sys.argv[2]), sys.argv[3].split(","))
        sys.exit(0)
    if sys.argv[1] == "ask-many":
        ask_many(sys.argv[2], [int(p) for p in sys.argv[3].split(",")], float(sys.argv[4]))
        sys.exit(0)
    if sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        ask(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]),
            sys.argv[6] if len(sys.argv) > 6 else None)
