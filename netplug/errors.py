"""Error types. Every failure a runtime or user can cause is a NetplugError with a CNI code.

Codes follow the CNI spec (SPEC.md "Error codes"): 1 incompatible version, 2 unsupported field,
3 unknown container, 4 invalid env, 5 I/O, 6 decode, 7 invalid config, 11 try again later,
50 plugin not available. 999 is reserved for bugs (never raised on purpose).
"""

INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENV = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
INVALID_NETNS = 8
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
LIMITED_CONNECTIVITY = 51
INTERNAL = 999


class NetplugError(Exception):
    """A failure with a CNI error code and a message a person can act on."""

    code = INTERNAL

    def __init__(self, msg: str, details: str = "", code: int | None = None):
        super().__init__(msg)
        self.msg = msg
        self.details = details
        if code is not None:
            self.code = code

    def to_dict(self, cni_version: str) -> dict:
        out = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out


class VersionError(NetplugError):
    code = INCOMPATIBLE_VERSION


class EnvError(NetplugError):
    code = INVALID_ENV


class DecodeError(NetplugError):
    code = DECODE_FAILURE


class ConfigError(NetplugError):
    code = INVALID_CONFIG


class NetnsError(NetplugError):
    code = INVALID_NETNS


class BusyError(NetplugError):
    code = TRY_AGAIN_LATER


class UnavailableError(NetplugError):
    code = NOT_AVAILABLE


class SetupError(NetplugError):
    """The host refused a change (netlink, firewall). Code 7 unless a more precise one fits."""

    code = INVALID_CONFIG


class IOFailure(NetplugError):
    code = IO_FAILURE
