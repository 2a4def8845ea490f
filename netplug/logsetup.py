"""Logs go to stderr (or NETPLUG_LOG_FILE), never stdout: stdout belongs to the CNI result."""

import logging
import os


def setup(default: str = "WARNING") -> None:
    level = os.environ.get("NETPLUG_LOG", default).upper()
    target = os.environ.get("NETPLUG_LOG_FILE")
    handler = logging.FileHandler(target) if target else logging.StreamHandler()
    handler.setFormatter(logging.Formatter("netplug %(levelname)s: %(message)s"))
    log = logging.getLogger("netplug")
    log.handlers[:] = [handler]
    log.setLevel(getattr(logging, level, logging.WARNING))
