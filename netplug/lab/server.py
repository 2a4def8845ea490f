"""A tiny HTTP-ish server/client for labs: the reply says which address the server saw."""

import socket
import sys


def serve(proto: str, port: int) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(16)
    print("ready", flush=True)
    while True:
        c, peer = s.accept()
        try:
            c.settimeout(1)
            try:
                c.recv(1024)
            except OSError:
                pass
            body = f"{peer[0]}"
            c.sendall(f"HTTP/1.0 200 OK\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode())
        finally:
            c.close()


def ask(ip: str, port: int, timeout: float) -> None:
    s = socket.socket()
    s.settimeout(timeout)
    try:
        s.connect((ip, port))
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while True:
            b = s.recv(4096)
            if not b:
                break
            data += b
        print(data.decode(errors="replace").split("\r\n\r\n", 1)[-1])
    except OSError:
        pass


if __name__ == "__main__":
    if sys.argv[1] == "ask":
        ask(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    else:
        serve(sys.argv[1], int(sys.argv[2]))
