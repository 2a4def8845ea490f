"""CNI spec versions: which we accept and what each operation needs."""

from ..errors import VersionError

SPEC_VERSION = "1.1.0"
SUPPORTED = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")


def key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def require(version: str, command: str) -> None:
    """Raise code 1 unless `version` is supported and new enough for `command`."""
    if version not in SUPPORTED:
        raise VersionError(
            "incompatible CNI versions",
            f'config is "{version}", plugin supports {list(SUPPORTED)}',
        )
    minimum = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}.get(command)
    if minimum and key(version) < key(minimum):
        raise VersionError(
            f"config version does not allow {command}",
            f'{command} needs cniVersion {minimum} or newer, config is "{version}"',
        )
