"""dispatch(env, stdin) -> (stdout, exit code): the one place that turns failures into CNI errors.

Pure of process state: the daemon calls it for each forwarded request, the exec'd plugin once.
"""

import json
import logging
import traceback

from ..errors import INTERNAL, NetplugError
from .config import parse_json, parse_netconf
from .env import parse_env
from .version import SPEC_VERSION, SUPPORTED

log = logging.getLogger("netplug")


def version_reply() -> str:
    return json.dumps({"cniVersion": SPEC_VERSION, "supportedVersions": list(SUPPORTED)}) + "\n"


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
            return json.dumps(res.to_json(nc.cni_version)) + "\n", 0
        getattr(impl, {"DEL": "delete", "CHECK": "check", "GC": "gc", "STATUS": "status"}[req.command])(req, nc)
        return "", 0
    except NetplugError as e:
        log.debug("%s failed: %s %s", env.get("CNI_COMMAND"), e.msg, e.details)
        return json.dumps(e.to_dict(cni_version)) + "\n", 1
    except Exception as e:  # a bug: still one JSON error, with the trace on stderr for the report
        log.error("internal error: %s", traceback.format_exc())
        err = {"cniVersion": cni_version, "code": INTERNAL,
               "msg": f"internal error in {plugin}: {type(e).__name__}: {e}",
               "details": "please report this with the plugin's stderr"}
        return json.dumps(err) + "\n", 1
