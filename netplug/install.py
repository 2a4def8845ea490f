"""`netplug install|uninstall`: put the plugin executables where runtimes look (CNI_PATH)."""

import json
import os
import sys

PLUGINS = {"netplug": "run('netplug')", "netplug-ipam": "run('netplug-ipam')"}
MARK = "# netplug CNI plugin shim"
CONFLIST = "10-netplug.conflist"


def default_conflist() -> dict:
    return {
        "cniVersion": "1.1.0",
        "name": "netplug",
        "plugins": [{
            "type": "netplug",
            "bridge": "netplug0",
            "isGateway": True,
            "isDefaultGateway": True,
            "ipMasq": True,
            "hairpinMode": True,
            "mtu": 1500,
            "firewallBackend": "auto",
            "capabilities": {"portMappings": True, "ips": True, "mac": True},
            "ipam": {
                "type": "netplug-ipam",
                "ranges": [[{"subnet": "172.17.0.0/16", "gateway": "172.17.0.1"}]],
                "routes": [{"dst": "0.0.0.0/0"}],
            },
        }],
    }


def shim_text(plugin: str, python: str | None = None) -> str:
    """The exec'd plugin: a few lines bound to this interpreter and this install.

    The interpreter is named by absolute path: `#!/usr/bin/env python3` would go through
    whatever shim is first on PATH (pyenv adds ~150 ms per exec here). -I: no user site, no
    PYTHON* env, so the runtime's environment can't change what runs as root. S (-S): no site
    module (its .pth processing costs ~40 ms per exec); the two paths it would add are written
    in instead.

    netplug/shim.py is loaded by file name, with the very functions importlib.util's
    spec_from_file_location and module_from_spec are, taken from the import system Python has
    already loaded: `from netplug.shim import run` would search sys.path and load the package
    first (~0.35 ms of every exec here). The loader still checks and refreshes the cached
    bytecode as any import does. The file is compiled on every exec, so it stays this short."""
    import sysconfig

    import netplug

    python = python or sys.executable
    pkg = os.path.dirname(os.path.abspath(netplug.__file__))
    paths = [os.path.dirname(pkg), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    paths = list(dict.fromkeys(paths))
    return (f"#!{python} -IS\n{MARK} (written by `netplug install`)\n"
            "import sys, _frozen_importlib as bootstrap, _frozen_importlib_external as external\n"
            f"sys.path[:0] = {paths!r}\n"
            f"spec = external.spec_from_file_location('netplug.shim', {os.path.join(pkg, 'shim.py')!r})\n"
            "shim = sys.modules[spec.name] = bootstrap.module_from_spec(spec)\n"
            "spec.loader.exec_module(shim)\n"
            f"sys.exit(shim.{PLUGINS[plugin]})\n")


def install(bin_dir: str, conf_dir: str | None, force: bool = False, python: str | None = None) -> list[str]:
    done = []
    os.makedirs(bin_dir, exist_ok=True)
    for name in PLUGINS:
        path = os.path.join(bin_dir, name)
        if os.path.exists(path) and not _ours(path) and not force:
            raise FileExistsError(f"{path} exists and is not netplug's (use --force to replace it)")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(shim_text(name, python))
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
        done.append(path)
    if conf_dir:
        os.makedirs(conf_dir, exist_ok=True)
        path = os.path.join(conf_dir, CONFLIST)
        if not os.path.exists(path) or force:
            with open(path, "w") as f:
                json.dump(default_conflist(), f, indent=2)
                f.write("\n")
            done.append(path)
    return done


def uninstall(bin_dir: str, conf_dir: str | None) -> list[str]:
    gone = []
    for name in PLUGINS:
        path = os.path.join(bin_dir, name)
        if os.path.exists(path) and _ours(path):
            os.unlink(path)
            gone.append(path)
    if conf_dir:
        path = os.path.join(conf_dir, CONFLIST)
        if os.path.exists(path):
            try:
                with open(path) as f:
                    if json.load(f).get("name") == "netplug":
                        os.unlink(path)
                        gone.append(path)
            except ValueError:
                pass
    return gone


def _ours(path: str) -> bool:
    try:
        with open(path, errors="replace") as f:
            return MARK in f.read(4096)
    except OSError:
        return False
