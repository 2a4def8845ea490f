"""The `netplug` command line. main(argv) -> exit status; one-line errors, no tracebacks."""

import argparse
import sys
from enum import IntEnum

from . import __version__


class Exit(IntEnum):
    OK = 0
    FINDINGS = 1  # explain --check found an error-level problem
    ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="netplug", description="Container networking: CNI plugin, "
                                "NAT explainer and classroom labs.")
    p.add_argument("--version", action="version", version=f"netplug {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="cmd", required=True)

    i = sub.add_parser("install", help="install the CNI plugin executables and default conflist")
    i.add_argument("--cni-bin-dir", default="/opt/cni/bin")
    i.add_argument("--conf-dir", default=None, help="e.g. /etc/cni/net.d")
    i.add_argument("--force", action="store_true")
    i.add_argument("--python", help="interpreter path to bind the plugins to, as the host sees it "
                                    "(default: this one); for installing from a container onto a node")
    u = sub.add_parser("uninstall", help="remove what install put in place")
    u.add_argument("--cni-bin-dir", default="/opt/cni/bin")
    u.add_argument("--conf-dir", default=None)
    sub.add_parser("conflist", help="print the default conflist")
    d = sub.add_parser("daemon", help="run netplugd in the foreground")
    d.add_argument("--socket", default=None)

    from .explain.cli import add_parser as add_explain
    from .kube import add_parsers as add_kube
    from .lab.cli import add_parser as add_lab

    add_explain(sub)
    add_lab(sub)
    add_kube(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = build_parser()
    a = p.parse_args(argv)
    try:
        return int(_run(a) or 0)
    except KeyboardInterrupt:
        return Exit.ERROR
    except Exception as e:
        if a.debug:
            raise
        msg = getattr(e, "msg", None) or str(e) or type(e).__name__
        print(f"netplug {a.cmd}: {msg}", file=sys.stderr)
        return Exit.ERROR


def _run(a) -> int:
    import json

    from . import install

    if a.cmd == "install":
        for path in install.install(a.cni_bin_dir, a.conf_dir, a.force, a.python):
            print(f"installed {path}")
        return Exit.OK
    if a.cmd == "uninstall":
        for path in install.uninstall(a.cni_bin_dir, a.conf_dir):
            print(f"removed {path}")
        return Exit.OK
    if a.cmd == "conflist":
        print(json.dumps(install.default_conflist(), indent=2))
        return Exit.OK
    if a.cmd == "daemon":
        from .daemon import main as dmain

        return dmain(["--socket", a.socket] if a.socket else [])
    return a.func(a)


if __name__ == "__main__":
    sys.exit(main())
