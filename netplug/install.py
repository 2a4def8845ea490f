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


PLUGIN_PYTHON = "netplug-plugin-python"  # in the venv: the plugins' interpreter (plugin_python)


def plugin_python(python: str | None = None) -> str:
    """The interpreter the plugin files name: this venv's, run from a small prefix of its own.

    Python's start imports `encodings`, searching sys.path, whose first entry is always
    <prefix>/lib/pythonXY.zip (absent here), then the stdlib directory (~200 entries to list).
    The prefix <venv>/netplug-plugin-python is this Python's own, made of symlinks: bin/python3
    (the interpreter), lib/pythonX.Y (the stdlib), and a lib/pythonXY.zip directory holding only
    `encodings`, so the start finds it there and never lists the stdlib: ~0.25 ms of every exec
    here. A pyvenv.cfg whose home is that bin makes it the prefix. Everything else resolves as
    before: the stdlib, lib-dynload and the site-packages the plugin file puts on sys.path.

    Another interpreter (--python) or one outside a venv is named as it is."""
    python = python or sys.executable
    same = os.path.dirname(os.path.abspath(python)) == os.path.dirname(os.path.abspath(sys.executable)) \
        and os.path.realpath(python) == os.path.realpath(sys.executable)  # this venv's interpreter
    if not same or sys.prefix == sys.base_prefix:
        return python
    import shutil
    import subprocess
    import sysconfig

    home = os.path.join(sys.prefix, PLUGIN_PYTHON)
    stdlib = sysconfig.get_paths()["stdlib"]
    zipname = f"python{sys.version_info[0]}{sys.version_info[1]}.zip"
    links = {os.path.join("bin", "python3"): os.path.realpath(getattr(sys, "_base_executable", sys.executable)),
             os.path.join("lib", os.path.basename(stdlib)): stdlib,
             os.path.join("lib", zipname, "encodings"): os.path.join(stdlib, "encodings")}
    exe = os.path.join(home, "bin", "python3")
    cfg = f"# written by `netplug install`: see netplug/install.py\nhome = {os.path.dirname(exe)}\n"
    if _prefix_is(home, links, cfg):  # as it should be: left alone (plugins may be running it)
        return exe
    tmp = f"{home}.tmp{os.getpid()}"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        for rel, target in links.items():
            os.makedirs(os.path.dirname(os.path.join(tmp, rel)), exist_ok=True)
            os.symlink(target, os.path.join(tmp, rel))
        with open(os.path.join(tmp, "pyvenv.cfg"), "w") as f:
            f.write(cfg.replace(home, tmp))
        probe = "import encodings, json, ctypes; print(encodings.__file__)"
        out = subprocess.run([os.path.join(tmp, "bin", "python3"), "-IS", "-c", probe], capture_output=True,
                             text=True, timeout=30, env={})
        if out.returncode != 0 or not out.stdout.startswith(os.path.join(tmp, "lib", zipname)):
            raise OSError(f"probe: {out.stdout.strip()} {out.stderr.strip()}")
        with open(os.path.join(tmp, "pyvenv.cfg"), "w") as f:
            f.write(cfg)
        shutil.rmtree(home, ignore_errors=True)
        os.rename(tmp, home)
    except (OSError, subprocess.SubprocessError) as e:
        from .log import log

        log.warning("plugins will start the plain interpreter %s (%s: %s)", python, PLUGIN_PYTHON, e)
        shutil.rmtree(tmp, ignore_errors=True)
        return python
    return exe


def _prefix_is(home: str, links: dict[str, str], cfg: str) -> bool:
    try:
        with open(os.path.join(home, "pyvenv.cfg")) as f:
            if f.read() != cfg:
                return False
        return all(os.readlink(os.path.join(home, rel)) == target for rel, target in links.items())
    except OSError:
        return False


def install(bin_dir: str, conf_dir: str | None, force: bool = False, python: str | None = None) -> list[str]:
    done = []
    os.makedirs(bin_dir, exist_ok=True)
    python = plugin_python(python)
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
