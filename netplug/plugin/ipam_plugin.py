"""The `netplug-ipam` CNI plugin (exec'd by other main plugins, e.g. the reference bridge)."""

from ..cni.config import NetConf
from ..cni.env import Request
from ..cni.result import Result
from ..errors import ConfigError
from ..ipam import local


def add(req: Request, nc: NetConf) -> Result:
    return local.add(nc, req.container_id, req.ifname)


def delete(req: Request, nc: NetConf) -> None:
    local.delete(nc, req.container_id, req.ifname)


def check(req: Request, nc: NetConf) -> None:
    local.check(nc, req.container_id, req.ifname)


def gc(req: Request, nc: NetConf) -> None:
    local.gc(nc, set(nc.valid_attachments or []))


def status(req: Request, nc: NetConf) -> None:
    if nc.ipam is None:
        raise ConfigError("network config has no ipam section")
    local.status(nc)
