"""A small ctypes binding of libnftables (the distro's python3-nftables is not on PyPI).

libnftables opens its netlink socket when the context is created, so a context acts on the
namespace of the thread that created it: we make a fresh one per call (~0.1 ms), always in the
thread that has entered the target namespace. Never cache one across namespaces.
"""

import _thread  # not threading: the exec'd plugin needs only a lock
import ctypes

from ..errors import UnavailableError
from ..jsonlite import loads

_lib = None
_lock = _thread.allocate_lock()
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


def run(cmd: str, json_out: bool = False) -> str:
    lib = _load()
    ctx = lib.nft_ctx_new(0)
    if not ctx:
        raise NftError("nft_ctx_new failed")
    try:
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        flags = HANDLE_OUTPUT | (JSON_OUTPUT if json_out else 0)
        lib.nft_ctx_output_set_flags(ctx, flags)
        rc = lib.nft_run_cmd_from_buffer(ctx, cmd.encode())
        out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode()
        err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode()
        if rc != 0:
            raise NftError(err.strip() or f"nft failed: {cmd[:200]}")
        return out
    finally:
        lib.nft_ctx_free(ctx)


def run_json(cmd: str) -> list[dict]:
    out = run(cmd, json_out=True)
    return loads(out).get("nftables", []) if out.strip() else []
