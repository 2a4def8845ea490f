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


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        ask(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]),
            sys.argv[6] if len(sys.argv) > 6 else None)
