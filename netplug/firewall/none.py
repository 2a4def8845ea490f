"""The null backend: for networks with no NAT (ipMasq false, no published ports)."""

from .backend import Backend


class NoneBackend(Backend):
    name = "none"

    def unavailable(self):
        return None

    def present(self):
        return False

    def _list(self, scope=None):
        return [], set()

    def _apply(self, ops):
        pass

    def _chain_rules(self, table, chain):
        return []

    def _normal(self, r):
        return ""

    def dump(self):
        return ""
