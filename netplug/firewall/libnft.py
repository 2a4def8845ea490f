"""A small ctypes binding of libnftables (the distro's python3-nftables is not on PyPI), and the
raw nfnetlink socket netplug's own batches (nfmsg) and table probes go through.

libnftables opens its netlink socket when the context is created, so a context, like a raw
socket, acts on the namespace of the thread that created it. A call outside a session opens a
fresh connection; inside `session()` the calling thread keeps one connection (context and
socket) for all its calls, as long as it stays in the namespace it was made in (checked on every
call).

Why sessions: the kernel flushes nf_tables' deferred-destroy work, which waits for an RCU grace
period, every time an nfnetlink socket is closed. After a commit that deleted anything, closing
the socket costs 7-20 ms here while the commit itself takes ~0.3 ms. One connection per
operation closes once, and a long-lived process (netplugd) calls `defer_close()`: a session's
connection is then parked for the next session in the same namespace (nothing opened, nothing
closed), and one idle for PARK_SECONDS is closed on a background thread, so no caller waits for
memory the kernel frees anyway. A parked connection keeps its namespace alive only that long.
"""

import _thread  # not threading: the exec'd plugin needs only a lock
import ctypes
import os
import time

from ..errors import UnavailableError
from ..jsonlite import loads

_lib = None
_lock = _thread.allocate_lock()
_sessions: dict[int, list] = {}  # thread id -> [depth, _Conn or None]
_defer_close = False
_parked: dict[int, tuple["_Conn", float]] = {}  # netns inode -> (conn, parked at); netplugd only
PARK_SECONDS = 2.0
JSON_OUTPUT = 1 << 4
HANDLE_OUTPUT = 1 << 3


def _load():
    global _lib
    with _lock:
        if _lib is None:
            try:  # the soname first: find_library runs `ldconfig -p`, ~10 ms per exec
                lib = ctypes.CDLL("libnftables.so.1")
            except OSError:
                lib = None
            try:
                if lib is None:
                    from ctypes.util import find_library

                    lib = ctypes.CDLL(find_library("nftables") or "libnftables.so")
            except OSError as e:
                raise UnavailableError(f"libnftables is not installed ({e})",
                                       "apt-get install libnftables1") from None
            lib.nft_ctx_new.restype = ctypes.c_void_p
            lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
            lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
            lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
            lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
            lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
            lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
            _lib = lib
    return _lib


def available() -> str | None:
    try:
        _load()
    except UnavailableError as e:
        return e.msg
    return None


class NftError(Exception):
    pass


class GenChanged(NftError):
    """The ruleset changed since the generation a batch was checked against: nothing applied."""


class _Conn:
    """What the calls of one netns share: a libnftables context and a raw nfnetlink socket
    (for table probes and netplug's own batches), each opened on first use, in that netns."""

    __slots__ = ("ino", "ctx", "nl")

    def __init__(self, ino: int):
        self.ino, self.ctx, self.nl = ino, None, None

    def context(self):
        if self.ctx is None:
            lib = _load()
            ctx = lib.nft_ctx_new(0)
            if not ctx:
                raise NftError("nft_ctx_new failed")
            lib.nft_ctx_buffer_output(ctx)
            lib.nft_ctx_buffer_error(ctx)
            self.ctx = ctx
        return self.ctx

    def socket(self):
        if self.nl is None:
            from ..netlink.rtnl import Rtnl

            self.nl = Rtnl(NETLINK_NETFILTER)
        return self.nl

    def close(self) -> None:
        if self.ctx is not None:
            _lib.nft_ctx_free(self.ctx)
        if self.nl is not None:
            self.nl.close()


def defer_close() -> None:
    """From now on, park session connections for reuse and close them on a background thread
    (for long-lived processes)."""
    global _defer_close
    _load()
    if not _defer_close:
        _defer_close = True
        _thread.start_new_thread(_sweep, ())


def _sweep() -> None:
    while True:
        time.sleep(PARK_SECONDS / 2)
        now = time.monotonic()
        with _lock:
            old = [ino for ino, (_, at) in _parked.items() if now - at > PARK_SECONDS]
            conns = [_parked.pop(ino)[0] for ino in old]
        for conn in conns:
            conn.close()


def _park(conn: _Conn) -> None:
    with _lock:
        old = _parked.pop(conn.ino, None)
        _parked[conn.ino] = (conn, time.monotonic())
    if old:
        _free(old[0])


def _unpark(ino: int) -> _Conn | None:
    with _lock:
        got = _parked.pop(ino, None)
    return got[0] if got else None


class session:
    """`with session():` one connection (context and socket) for this thread's calls, closed at
    the end. Nested sessions share the outer one."""

    def __enter__(self):
        _sessions.setdefault(_thread.get_ident(), [0, None])[0] += 1
        return self

    def __exit__(self, *exc):
        me = _thread.get_ident()
        s = _sessions[me]
        s[0] -= 1
        if s[0] == 0:
            del _sessions[me]
            if s[1]:
                if _defer_close:
                    _park(s[1])
                else:
                    _free(s[1])


def _netns_ino() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def _free(conn: _Conn) -> None:
    if _defer_close:
        try:
            _thread.start_new_thread(conn.close, ())
            return
        except RuntimeError:  # no thread to be had: close it here, slower but done
            pass
    conn.close()


def _conn_for_call() -> tuple[_Conn, bool]:
    """(connection, owned): the session's, or a one-shot one the caller frees."""
    s = _sessions.get(_thread.get_ident())
    ino = _netns_ino()
    if s is None:
        return _Conn(ino), True
    if s[1] is None:
        s[1] = (_defer_close and _unpark(ino)) or _Conn(ino)
    elif s[1].ino != ino:  # the thread moved to another namespace: never act on the old one
        return _Conn(ino), True
    return s[1], False


class _call:
    """`with _call() as conn:` the session's connection, or a one-shot one closed at the end."""

    def __enter__(self) -> _Conn:
        self.conn, self.owned = _conn_for_call()
        return self.conn

    def __exit__(self, *exc):
        if self.owned:
            _free(self.conn)


def run(cmd: str, json_out: bool = False) -> str:
    lib = _load()
    with _call() as conn:
        ctx = conn.context()
        lib.nft_ctx_output_set_flags(ctx, HANDLE_OUTPUT | (JSON_OUTPUT if json_out else 0))
        rc = lib.nft_run_cmd_from_buffer(ctx, cmd.encode())
        # reading a buffer also rewinds it for the next command on this context
        out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode()
        err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode()
    if rc != 0:
        raise NftError(err.strip() or f"nft failed: {cmd[:200]}")
    return out


def run_json(cmd: str) -> list[dict]:
    out = run(cmd, json_out=True)
    return loads(out).get("nftables", []) if out.strip() else []


NETLINK_NETFILTER = 12


def table_exists(family: str, name: str) -> bool:
    """One NFT_MSG_GETTABLE on the raw socket (~0.05 ms), in the calling thread's netns. Asking
    libnftables costs ~0.2-0.6 ms: every command first fetches its cache."""
    import errno

    from . import nfmsg
    from ..netlink.rtnl import NetlinkError

    with _call() as conn:
        try:
            conn.socket().get(*nfmsg.get_table(family, name))
            return True
        except NetlinkError as e:
            if e.code == errno.ENOENT:
                return False
            raise NftError(f"nftables: cannot read table {family} {name}: {e.strerror}") from None


def commit(msgs: list[tuple[int, int, bytes]], describe, genid: int | None = None) -> list[tuple[str, int, str]]:
    """One nf_tables transaction of pre-encoded messages (see nfmsg) on the raw socket.
    `describe(i)` names message i for an error, as nft would print the command. With `genid`,
    GenChanged if the ruleset is no longer at that generation (nothing applied). Returns
    (chain, handle, comment) of each rule the kernel echoed (NEWRULE sent with F_ECHO), in order."""
    import errno

    from . import nfmsg
    from ..netlink.rtnl import NetlinkError

    if not msgs:
        return []
    with _call() as conn:
        try:
            echoed = conn.socket().batch([nfmsg.batch_begin(genid), *msgs, nfmsg.batch_end()])
            return [nfmsg.echoed_rule(body) for mtype, body in echoed if mtype == nfmsg.NEWRULE_TYPE]
        except NetlinkError as e:
            if genid is not None and e.code == errno.ERESTART and not e.index:
                raise GenChanged(f"nftables changed since generation {genid}") from None
            what = describe(e.index - 1) if e.index and 0 < e.index <= len(msgs) else "the batch"
            raise NftError(f"Error: {e.text or e.strerror}\n{what}") from None


def generation() -> int:
    """The ruleset's generation in the calling thread's netns (one GETGEN)."""
    from . import nfmsg
    from ..netlink.rtnl import NetlinkError

    with _call() as conn:
        try:
            return nfmsg.parse_gen(conn.socket().get(*nfmsg.get_gen()))
        except NetlinkError as e:
            raise NftError(f"nftables: cannot read the ruleset's generation: {e.strerror}") from None


def generation_and_table(family: str, name: str) -> tuple[int, bool]:
    """The ruleset's generation and whether table `name` exists: one round trip."""
    import errno

    from . import nfmsg

    with _call() as conn:
        (gen, gerr), (_, terr) = conn.socket().exchange([(*nfmsg.get_gen(), 0), (*nfmsg.get_table(family, name), 0)])
    if gerr is not None or not gen or (terr is not None and terr.code != errno.ENOENT):
        err = gerr or terr
        raise NftError(f"nftables: cannot read the ruleset: {err.strerror if err else 'no reply'}")
    return nfmsg.parse_gen(gen[0]), terr is None


def long_lived() -> bool:
    """True in netplugd (see defer_close): what it remembers can serve the next request."""
    return _defer_close


def netns_ino() -> int:
    return _netns_ino()


def chain_rules(family: str, table: str, chain: str) -> list[tuple[int, str, str]] | None:
    """(handle, comment, jump target) of each rule of one chain, over the raw socket; None when
    the chain (or its table) is missing. libnftables would first fetch every chain of the
    table into its cache: with 200 containers, 200 chains for each chain read."""
    import errno

    from . import nfmsg
    from ..netlink.rtnl import NetlinkError

    with _call() as conn:
        try:
            nl = conn.socket()
            nl.get(*nfmsg.get_chain(family, table, chain))
            return [nfmsg.parse_rule(b) for b in nl.dump(*nfmsg.dump_rules(family, table, chain))]
        except NetlinkError as e:
            if e.code == errno.ENOENT:
                return None
            raise NftError(f"nftables: cannot read chain {family} {table} {chain}: {e.strerror}") from None
