"""Exec a delegated IPAM plugin found in CNI_PATH, per SPEC §4 (pkg/invoke semantics)."""

import os

from ..errors import ConfigError, NetplugError
from ..jsonlite import dumps, loads


class PluginNotFound(ConfigError):
    pass


def find_plugin(name: str, path: list[str]) -> str:
    for d in path:
        cand = os.path.join(d, name)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    raise PluginNotFound(f"failed to find plugin {name!r} in path {path}")


def run(name: str, command: str, env: dict, conf: dict, path: list[str]) -> dict | None:
    exe = find_plugin(name, path)
    child_env = dict(env)
    child_env["CNI_COMMAND"] = command
    import subprocess  # lazily: our own IPAM (the usual case) runs in-process

    proc = subprocess.run([exe], input=dumps(conf).encode(), env=child_env,
                          capture_output=True, timeout=120)
    out = proc.stdout.decode(errors="replace").strip()
    if proc.stderr:
        import sys

        sys.stderr.write(proc.stderr.decode(errors="replace"))
    if proc.returncode != 0:
        try:
            err = loads(out)
            raise NetplugError(f"{name}: {err.get('msg', 'failed')}", err.get("details", ""),
                               code=int(err.get("code", 999)))
        except (ValueError, AttributeError):
            raise NetplugError(f"{name} failed ({command}): {out or proc.stderr.decode().strip()}") from None
    if not out:
        return None
    try:
        return loads(out)
    except ValueError:
        raise NetplugError(f"{name} printed a result that is not JSON: {out[:200]}") from None
