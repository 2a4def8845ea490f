"""The CNI_* environment: validated once, then passed around as a typed Request."""

from ..errors import EnvError
from ..record import field, record

COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS")
# Per SPEC.md "Parameters"; CNI_PATH is required by skel for all but VERSION, but STATUS/GC only
# need it to find delegated plugins, so we require it only where we exec something.
REQUIRED = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "GC": (),
    "STATUS": (),
    "VERSION": (),
}
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME_CHARS = _ALNUM | frozenset("_.-")


def valid_name(s: object) -> bool:
    """[A-Za-z0-9][A-Za-z0-9_.-]*: container IDs, network and plugin names (what libcni allows).
    Plain set tests, not `re`: its import costs every exec ~10 ms."""
    return isinstance(s, str) and s != "" and s[0] in _ALNUM and all(c in _NAME_CHARS for c in s)
KNOWN_ARGS = ("IgnoreUnknown", "IP", "MAC")


def valid_ifname(name: str) -> bool:
    """Linux interface names: 1-15 bytes, not . or .., no '/', ':' or whitespace."""
    return (
        0 < len(name.encode()) <= 15
        and name not in (".", "..")
        and not any(c in name for c in "/:") 
        and not any(c.isspace() for c in name)
    )


def parse_cni_args(text: str) -> dict[str, str]:
    """CNI_ARGS is 'K=V;K2=V2'. Unknown keys are an error unless IgnoreUnknown is true."""
    args: dict[str, str] = {}
    if not text:
        return args
    for pair in text.split(";"):
        if not pair:
            continue
        k, sep, v = pair.partition("=")
        if not sep or not k or not v:
            raise EnvError(f"CNI_ARGS: invalid pair {pair!r}, expected KEY=VALUE")
        args[k] = v
    ignore = args.get("IgnoreUnknown", "").lower() in ("1", "true")
    unknown = sorted(k for k in args if k not in KNOWN_ARGS)
    if unknown and not ignore:
        raise EnvError(f"ARGS: unknown args {unknown}", "set IgnoreUnknown=1 to ignore them")
    return args


@record
class Request:
    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: dict[str, str] = field(default_factory=dict)
    path: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


def parse_env(env: dict[str, str]) -> Request:
    command = env.get("CNI_COMMAND", "")
    if not command:
        raise EnvError("CNI_COMMAND is not set", f"expected one of {list(COMMANDS)}")
    if command not in COMMANDS:
        raise EnvError(f"unknown CNI_COMMAND: {command}", f"expected one of {list(COMMANDS)}")
    missing = [k for k in REQUIRED[command] if not env.get(k)]
    if missing:
        raise EnvError(f"required env variables [{','.join(missing)}] missing")
    req = Request(
        command=command,
        container_id=env.get("CNI_CONTAINERID", ""),
        netns=env.get("CNI_NETNS", ""),
        ifname=env.get("CNI_IFNAME", ""),
        path=[p for p in env.get("CNI_PATH", "").split(":") if p],
        env=dict(env),
    )
    if req.container_id and not valid_name(req.container_id):
        raise EnvError(
            f"invalid CNI_CONTAINERID {req.container_id!r}",
            "must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$",
        )
    if req.ifname and not valid_ifname(req.ifname):
        raise EnvError(
            f"invalid CNI_IFNAME {req.ifname!r}",
            "1-15 characters, not '.' or '..', without '/', ':' or whitespace",
        )
    if command in ("ADD", "DEL", "CHECK"):
        req.args = parse_cni_args(env.get("CNI_ARGS", ""))
    return req
