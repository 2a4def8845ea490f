"""Entry point of the exec'd plugins. Standard library only: it runs on every container start.

If netplugd is listening it forwards the request (env, stdin and an fd of our own network
namespace, so the daemon acts where we were exec'd); otherwise it does the work in-process.
Both paths run the same `dispatch`, so results are identical.
"""

import json
import os
import socket
import sys

SOCKET = "/run/netplug/netplugd.sock"
FORWARDED_ENV = ("CNI_", "NETPLUG_TEST_", "NETPLUG_LOCK_TIMEOUT")
MAX_REPLY = 16 * 1024 * 1024


def _socket_path() -> str:
    return os.environ.get("NETPLUG_SOCKET", SOCKET)


def _forward(plugin: str, stdin: bytes) -> tuple[str, int] | None:
    path = _socket_path()
    if os.environ.get("NETPLUG_NO_DAEMON") or not os.path.exists(path):
        return None
    env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}
    header = json.dumps({"plugin": plugin, "env": env, "stdin_len": len(stdin)}).encode()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError:
        s.close()
        return None  # stale socket: the daemon is gone, do the work ourselves
    netns = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        s.sendmsg([len(header).to_bytes(4, "big"), header, stdin],
                  [(socket.SOL_SOCKET, socket.SCM_RIGHTS, netns.to_bytes(4, sys.byteorder))])
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
            if sum(map(len, chunks)) > MAX_REPLY:
                break
    except OSError:
        return None
    finally:
        os.close(netns)
        s.close()
    data = b"".join(chunks)
    if len(data) < 4:
        return None  # the daemon died mid-request; in-process is idempotent for the retry
    return data[4:].decode(), int.from_bytes(data[:4], "big", signed=True)


def run(plugin: str) -> int:
    if os.environ.get("CNI_COMMAND") == "VERSION":
        from .cni.version import SPEC_VERSION, SUPPORTED

        sys.stdout.write(json.dumps({"cniVersion": SPEC_VERSION, "supportedVersions": list(SUPPORTED)}) + "\n")
        return 0
    stdin = b"" if sys.stdin is None or sys.stdin.closed else sys.stdin.buffer.read()
    got = _forward(plugin, stdin)
    if got is None:
        from .logsetup import setup
        from .cni.skel import dispatch

        setup()
        got = dispatch(dict(os.environ), stdin, plugin)
    out, rc = got
    sys.stdout.write(out)
    sys.stdout.flush()
    return rc


def main_netplug() -> int:
    if os.environ.get("CNI_COMMAND"):
        return run("netplug")
    from .cli import main

    return main(sys.argv[1:])


def main_ipam() -> int:
    return run("netplug-ipam")


if __name__ == "__main__":
    sys.exit(main_netplug())
