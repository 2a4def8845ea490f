"""An undo stack for ADD: push each step's inverse right after the step succeeds."""

import os
from ..log import log


class Undo:
    def __init__(self):
        self.steps = []
        self.done = False

    def push(self, what: str, fn, *args) -> None:
        self.steps.append((what, fn, args))

    def commit(self) -> None:
        self.done = True

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.done or exc_type is None:
            return False
        for what, fn, args in reversed(self.steps):
            try:
                fn(*args)
            except Exception as e:  # keep unwinding; the original error is what the user sees
                log.error("rollback of %s failed: %s", what, e)
        return False


def fault_point(env: dict, step: str) -> None:
    """Test-only hook: NETPLUG_TEST_CRASH=<step> kills the process (kill -9) at that step,
    NETPLUG_TEST_FAIL=<step> raises there. Used to prove nothing leaks (issue: reliability)."""
    if env.get("NETPLUG_TEST_CRASH") == step:
        os.kill(os.getpid(), 9)  # SIGKILL (the signal module would cost every exec its import)
    if env.get("NETPLUG_TEST_FAIL") == step:
        from ..errors import SetupError

        raise SetupError(f"injected failure at {step}")
