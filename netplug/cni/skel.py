"""dispatch(env, stdin) -> (stdout, exit code): the one place that turns failures into CNI errors.

Pure of process state: the daemon calls it for each forwarded request, the exec'd plugin once.
"""

from ..errors import INTERNAL, NetplugError
from .config import parse_json, parse_netconf
from .env import parse_env
from .version import SPEC_VERSION, SUPPORTED
from ..jsonlite import dumps
from ..log import log


def version_reply() -> str:
    return dumps({"cniVersion": SPEC_VERSION, "supportedVersions": list(SUPPORTED)}) + "\n"


def dispatch(env: dict, stdin: bytes, plugin: str = "netplug") -> tuple[str, int]:
    cni_version = SPEC_VERSION
    try:
        if env.get("CNI_COMMAND") == "VERSION":
            return version_reply(), 0
        req = parse_env(env)
        conf = parse_json(stdin)
        if isinstance(conf.get("cniVersion"), str):
            cni_version = conf["cniVersion"]
        nc = parse_netconf(conf, req.command, req.args)
        if plugin == "netplug-ipam":
            from ..plugin import ipam_plugin as impl
        else:
            from ..plugin import bridge as impl
        if req.command == "ADD":
            res = impl.add(req, nc)
            return dumps(res.to_json(nc.cni_version)) + "\n", 0
        getattr(impl, {"DEL": "delete", "CHECK": "check", "GC": "gc", "STATUS": "status"}[req.command])(req, nc)
        return "", 0
    except NetplugError as e:
        log.debug("%s failed: %s %s", env.get("CNI_COMMAND"), e.msg, e.details)
        return dumps(e.to_dict(cni_version)) + "\n", 1
    except Exception as e:  # a bug: still one JSON error, with the trace on stderr for the report
        import traceback  # only on this path: it costs an exec ~6 ms

        log.error("internal error: %s", traceback.format_exc())
        err = {"cniVersion": cni_version, "code": INTERNAL,
               "msg": f"internal error in {plugin}: {type(e).__name__}: {e}",
               "details": "please report this with the plugin's stderr"}
        return dumps(err) + "\n", 1
