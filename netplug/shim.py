"""Entry point of the exec'd plugins. It runs on every container start, so it imports almost
nothing and parses nothing: not json, not socket, not even os (its import builds the
collections ABCs, ~2.5 ms of a ~15 ms start here); `posix` and `_socket` are built in.

If netplugd is listening it forwards the request (env, stdin and an fd of our own network
namespace, so the daemon acts where we were exec'd); otherwise it does the work in-process.
Both paths run the same `dispatch`, so results are identical.

Wire format (all lengths big-endian):
  request  = u32 header_len, header, stdin     header = plugin NUL K=V NUL K=V ...
  response = i32 exit_code, stdout
"""

import posix
import sys

SOCKET = "/run/netplug/netplugd.sock"
FORWARDED_ENV = (b"CNI_", b"NETPLUG_TEST_", b"NETPLUG_LOCK_TIMEOUT")
# must equal cni.version (a unit test keeps them in step); printed without importing json
VERSION_REPLY = ('{"cniVersion": "1.1.0", "supportedVersions": ["0.1.0", "0.2.0", "0.3.0", '
                 '"0.3.1", "0.4.0", "1.0.0", "1.1.0"]}\n')


def encode_request(plugin: str, env: dict, stdin: bytes) -> bytes:
    """`env` may have str or bytes items: the shim passes posix.environ, which is bytes."""
    fields = [plugin.encode()]
    for k, v in env.items():
        if isinstance(k, str):
            k, v = k.encode("utf-8", "surrogateescape"), v.encode("utf-8", "surrogateescape")
        if k.startswith(FORWARDED_ENV):
            fields.append(k + b"=" + v)
    header = b"\0".join(fields)
    return len(header).to_bytes(4, "big") + header + stdin


def decode_request(data: bytes) -> tuple[str, dict, bytes]:
    n = int.from_bytes(data[:4], "big")
    fields = data[4:4 + n].decode("utf-8", "surrogateescape").split("\0")  # as os.environ decodes
    env = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
    return fields[0], env, data[4 + n:]


def _env(name: str) -> str:
    return posix.environ.get(name.encode(), b"").decode("utf-8", "surrogateescape")


def _forward(plugin: str, stdin: bytes) -> tuple[str, int] | None:
    path = _env("NETPLUG_SOCKET") or SOCKET
    if _env("NETPLUG_NO_DAEMON"):
        return None
    try:
        posix.stat(path)
    except OSError:
        return None
    import _socket  # the C module: `import socket` costs ~5 ms more

    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError:
        s.close()
        return None  # stale socket: the daemon is gone, do the work ourselves
    netns = posix.open("/proc/thread-self/ns/net", posix.O_RDONLY | posix.O_CLOEXEC)
    chunks = []
    try:
        s.sendmsg([encode_request(plugin, posix.environ, stdin)],
                  [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, netns.to_bytes(4, sys.byteorder))])
        s.shutdown(_socket.SHUT_WR)
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    except OSError:
        return None
    finally:
        posix.close(netns)
        s.close()
    data = b"".join(chunks)
    if len(data) < 4:
        return None  # the daemon died mid-request; in-process is idempotent for the retry
    return data[4:].decode(), int.from_bytes(data[:4], "big", signed=True)


def run(plugin: str) -> int:
    if _env("CNI_COMMAND") == "VERSION":
        _exit_now(VERSION_REPLY, 0)
    stdin = b"" if sys.stdin is None or sys.stdin.closed else sys.stdin.buffer.read()
    got = _forward(plugin, stdin)
    if got is not None:
        _exit_now(*got)
    import os

    from .cni.skel import dispatch
    from .log import setup

    setup()
    out, rc = dispatch(dict(os.environ), stdin, plugin)
    sys.stdout.write(out)
    sys.stdout.flush()
    return rc


def _exit_now(out: str, rc: int) -> None:
    """Write the reply and leave without the interpreter's teardown (~2.7 ms here): nothing
    of ours is left to flush or close on these paths."""
    try:
        sys.stdout.write(out)
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # the runtime closed our stdout: the exit code still tells
        rc = rc or 1
    posix._exit(rc)


def main_netplug() -> int:
    if _env("CNI_COMMAND"):
        return run("netplug")
    from .cli import main

    return main(sys.argv[1:])


def main_ipam() -> int:
    return run("netplug-ipam")


if __name__ == "__main__":
    sys.exit(main_netplug())
