"""Entry point of the exec'd plugins. It runs on every container start, so it imports almost
nothing and parses nothing: not json, not socket, not even os (its import builds the
collections ABCs, ~2.5 ms of a ~15 ms start here); `posix` is built in, as is `_socket`, which only
the socket fallback imports.

If netplugd is listening it forwards the request, so the daemon acts in our network
namespace; otherwise it does the work in-process. Both paths run the same `dispatch`, so results
are identical. Two ways to reach the daemon:

- its FIFO, named after the daemon's pid namespace: the request goes in one atomic write
  (of PIPE_BUF bytes) with our pid and a pipe of ours, and the daemon finds our network namespace and
  that pipe under /proc/<pid>. It needs only `posix`: `import _socket` and a socket's setup cost
  ~0.6 ms of each exec here. The daemon acknowledges before it works, and until then we hold our
  pipe's write end ourselves, so a daemon that never takes the request costs ACK_TIMEOUT, not a
  hang, and a daemon that dies afterwards gives us EOF;
- its unix socket, with an fd of our network namespace (SCM_RIGHTS): for a caller in another pid
  namespace or a request too long for one atomic write.

Wire format (all integers big-endian):
  request  = u32 header_len, header, stdin     header = plugin NUL K=V NUL K=V ...
  FIFO     = u32 body_len, body = (u32 pid, u32 reply_fd, u64 reply_pipe_inode, request),
             zeros up to PIPE_BUF
  response = i32 exit_code, stdout             (on the pipe: one ACK byte first)
"""

import posix
import sys

SOCKET = "/run/netplug/netplugd.sock"
PIPE_BUF = 4096  # the longest write a pipe takes whole, never interleaved with another
ACK = b"A"
ACK_TIMEOUT = 3.0  # seconds a request may wait in the FIFO for a worker
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


def encode_reply(out: str, rc: int) -> bytes:
    return rc.to_bytes(4, "big", signed=True) + out.encode()


def decode_reply(data: bytes) -> tuple[str, int] | None:
    """(stdout, exit code), or None for a reply cut short (the daemon died mid-request: the
    in-process retry is idempotent)."""
    if len(data) < 4:
        return None
    return data[4:].decode(), int.from_bytes(data[:4], "big", signed=True)


def _env(name: str) -> str:
    return posix.environ.get(name.encode(), b"").decode("utf-8", "surrogateescape")


def fifo_path(socket_path: str, pidns: int) -> str:
    """The daemon's FIFO for callers in pid namespace `pidns` (by inode), beside its socket."""
    base = socket_path[:-5] if socket_path.endswith(".sock") else socket_path
    return f"{base}.{pidns}.fifo"


def encode_frame(pid: int, reply_fd: int, reply_ino: int, request: bytes) -> bytes | None:
    """Exactly PIPE_BUF bytes (None if the request does not fit): every write to the FIFO is
    then whole and the same size, so each read of PIPE_BUF takes exactly one frame, and the
    daemon's workers can all wait in read() at once, as on a socket's accept()."""
    body = pid.to_bytes(4, "big") + reply_fd.to_bytes(4, "big") + reply_ino.to_bytes(8, "big") + request
    if len(body) + 4 > PIPE_BUF:
        return None
    return len(body).to_bytes(4, "big") + body + bytes(PIPE_BUF - 4 - len(body))


def decode_frame(body: bytes) -> tuple[int, int, int, bytes]:
    """(pid, reply fd, reply pipe inode, request) of a frame without its length."""
    return (int.from_bytes(body[:4], "big"), int.from_bytes(body[4:8], "big"),
            int.from_bytes(body[8:16], "big"), body[16:])


class _Late(Exception):
    pass


def _late(*_):
    raise _Late


NOT_THERE = "not there"  # this channel has no daemon behind it: try the next one


def _forward_fifo(path: str, request: bytes):
    """The reply over the daemon's FIFO, NOT_THERE, or None (the daemon failed us: in-process)."""
    try:
        fifo = fifo_path(path, posix.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return NOT_THERE
    r, w = posix.pipe()  # close-on-exec, as Python makes every fd
    try:
        frame = encode_frame(posix.getpid(), w, posix.fstat(w).st_ino, request)
        if frame is None:
            return NOT_THERE
        try:  # no reader (ENXIO: the daemon is gone) or no FIFO: not there
            f = posix.open(fifo, posix.O_WRONLY | posix.O_NONBLOCK | posix.O_CLOEXEC)
        except OSError:
            return NOT_THERE
        try:
            posix.write(f, frame)  # whole or nothing (EAGAIN: the FIFO is full)
        except OSError:
            return NOT_THERE
        finally:
            posix.close(f)
        import _signal  # built in, and already loaded by Python's start

        _signal.signal(_signal.SIGALRM, _late)
        try:
            _signal.setitimer(_signal.ITIMER_REAL, ACK_TIMEOUT)
            posix.read(r, 1)  # the daemon holds our pipe now
            _signal.setitimer(_signal.ITIMER_REAL, 0)
        except _Late:  # (or just after the ACK came: the reply then says so)
            pass
        posix.close(w)
        w = -1
        chunks = []
        while True:  # until the daemon closes its end; EOF at once if it never took ours
            b = posix.read(r, 65536)
            if not b:
                break
            chunks.append(b)
    finally:
        posix.close(r)
        if w >= 0:
            posix.close(w)
    data = b"".join(chunks)
    if data[:1] == ACK:  # an ACK read only after the timer fired
        data = data[1:]
    return decode_reply(data)  # None also when the daemon never took it


def _forward(plugin: str, stdin: bytes) -> tuple[str, int] | None:
    path = _env("NETPLUG_SOCKET") or SOCKET
    if _env("NETPLUG_NO_DAEMON"):
        return None
    request = encode_request(plugin, posix.environ, stdin)
    got = _forward_fifo(path, request)
    if got is not NOT_THERE:
        return got
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
        s.sendmsg([request],
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
    return decode_reply(b"".join(chunks))


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
