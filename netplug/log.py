"""Logs go to stderr (or NETPLUG_LOG_FILE), never stdout: stdout belongs to the CNI result.

A few lines instead of the logging package: the plugin is exec'd per container, and importing
`logging` (re, traceback, threading, string...) costs more here than the rest of an ADD's imports.
One os.write per line, so lines from netplugd's worker threads never interleave.

    from .log import log
    log.info("removed stale %s", name)
"""

import os

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40}


class Logger:
    def __init__(self):
        self.level = LEVELS["WARNING"]
        self.fd = 2

    def _emit(self, level: str, msg: str, args: tuple) -> None:
        if LEVELS[level] < self.level:
            return
        try:
            text = msg % args if args else msg
        except (TypeError, ValueError):
            text = f"{msg} {args!r}"
        try:
            os.write(self.fd, f"netplug {level}: {text}\n".encode(errors="replace"))
        except OSError:
            pass  # a closed stderr must not turn a finished ADD into an error

    def debug(self, msg, *args):
        self._emit("DEBUG", msg, args)

    def info(self, msg, *args):
        self._emit("INFO", msg, args)

    def warning(self, msg, *args):
        self._emit("WARNING", msg, args)

    def error(self, msg, *args):
        self._emit("ERROR", msg, args)


log = Logger()


def setup(default: str = "WARNING") -> None:
    """Level from NETPLUG_LOG (DEBUG, INFO, WARNING, ERROR), target from NETPLUG_LOG_FILE."""
    log.level = LEVELS.get(os.environ.get("NETPLUG_LOG", default).upper(), LEVELS["WARNING"])
    target = os.environ.get("NETPLUG_LOG_FILE")
    if target:
        try:
            log.fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        except OSError as e:
            os.write(2, f"netplug WARNING: cannot open NETPLUG_LOG_FILE {target}: {e.strerror}\n".encode())
