"""json.loads/json.dumps through the C accelerator alone, for the exec'd plugin's hot path.

`import json` costs ~15 ms per exec here, almost all of it `re` and `enum` for the pure-Python
fallback scanner that CPython never uses when `_json` is present. The C scanner and encoder
are the very ones json uses, so output and errors are the same; without `_json` (another
Python build) this falls back to the json module.
"""

try:
    import _json

    _scanner_new, _encoder_new = _json.make_scanner, _json.make_encoder
    _encode_str = _json.encode_basestring_ascii
except (ImportError, AttributeError):  # pragma: no cover - CPython always has it
    _json = None

_WS = " \t\n\r"


class _Decoding:
    """The attributes json.JSONDecoder hands the C scanner."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict = {}

    @staticmethod
    def parse_constant(name):
        return {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}[name]


def _error(msg: str, doc: str, pos: int):
    from json import JSONDecodeError  # only when the input is bad

    return JSONDecodeError(msg, doc, pos)


def loads(s: str | bytes):
    if _json is None:
        import json

        return json.loads(s)
    if isinstance(s, (bytes, bytearray)):
        try:
            s = bytes(s).decode("utf-8-sig")
        except UnicodeDecodeError:
            import json  # UTF-16/32 detection and its errors, as json does them

            return json.loads(s)
    if s.startswith("\ufeff"):
        raise _error("Unexpected UTF-8 BOM (decode using utf-8-sig)", s, 0)
    start = len(s) - len(s.lstrip(_WS))
    try:
        obj, end = _scanner_new(_Decoding)(s, start)
    except StopIteration as e:
        raise _error("Expecting value", s, e.value) from None
    rest = s[end:]
    if rest.strip(_WS):
        raise _error("Extra data", s, end + len(rest) - len(rest.lstrip(_WS)))
    return obj


def _no_default(o):
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


def dumps(obj, sort_keys: bool = False) -> str:
    """json.dumps(obj, sort_keys=sort_keys) with its default separators."""
    if _json is None:
        import json

        return json.dumps(obj, sort_keys=sort_keys)
    enc = _encoder_new({}, _no_default, _encode_str, None, ": ", ", ", sort_keys, False, True)
    return "".join(enc(obj, 0))
