"""nftables backend: netplug's own `ip netplug` table, one atomic batch per operation.

Base chains carry the iptables names (PREROUTING, OUTPUT, POSTROUTING, FORWARD, INPUT) so
`netplug explain` shows every backend the same way.
"""

from ..errors import SetupError
from . import libnft
from .backend import Backend, LiveRule, Ops
from .model import Rule, to_nft

FAMILY, TABLE = "ip", "netplug"
HOOKS = {
    ("nat", "PREROUTING"): "type nat hook prerouting priority dstnat; policy accept;",
    ("nat", "OUTPUT"): "type nat hook output priority -100; policy accept;",
    ("nat", "POSTROUTING"): "type nat hook postrouting priority srcnat; policy accept;",
    ("filter", "FORWARD"): "type filter hook forward priority filter; policy accept;",
    ("filter", "INPUT"): "type filter hook input priority filter; policy accept;",
}


class NftBackend(Backend):
    name = "nftables"

    def unavailable(self):
        return libnft.available()

    def table_exists(self, family: str, table: str) -> bool:
        try:
            libnft.run(f"list table {family} {table}")
            return True
        except libnft.NftError:
            return False

    def present(self):
        # one small chain instead of the table: listing grows with the rules, this does not
        try:
            libnft.run(f"list chain {FAMILY} {TABLE} POSTROUTING")
            return True
        except libnft.NftError:
            return self._scoped({("nat", "NETPLUG-HOSTPORTS")}) != []

    def _objects(self) -> list[dict]:
        try:
            return libnft.run_json(f"list table {FAMILY} {TABLE}")
        except libnft.NftError:
            return []

    def _scoped(self, scope) -> list[dict]:
        objs = []
        for _, chain in sorted(scope):
            try:
                objs += libnft.run_json(f"list chain {FAMILY} {TABLE} {chain}")
            except libnft.NftError:
                continue  # not there (yet)
        return objs

    def _list(self, scope=None):
        live, chains = [], set()
        table_of = {}
        for obj in (self._objects() if scope is None else self._scoped(scope)):
            if "chain" in obj:
                c = obj["chain"]
                t = _table_of(c["name"], c.get("type"))
                table_of[c["name"]] = t
                chains.add((t, c["name"]))
            elif "rule" in obj:
                r = obj["rule"]
                t = table_of.get(r["chain"], "nat")
                live.append(LiveRule(t, r["chain"], r.get("comment", ""), r["handle"]))
                # a jump proves its target exists; re-adding an existing chain costs ~12 ms
                for e in r.get("expr", []):
                    if isinstance(e, dict) and "jump" in e:
                        chains.add((_table_of(e["jump"]["target"], None), e["jump"]["target"]))
        return live, chains

    def _apply(self, ops: Ops) -> None:
        cmds = [f"add table {FAMILY} {TABLE}"]
        for lr in ops.delete_rules:
            cmds.append(f"delete rule {FAMILY} {TABLE} {lr.chain} handle {lr.ref}")
        # flush every doomed chain before deleting any: they may jump to each other
        cmds += [f"flush chain {FAMILY} {TABLE} {chain}" for _, chain in ops.delete_chains]
        cmds += [f"delete chain {FAMILY} {TABLE} {chain}" for _, chain in ops.delete_chains]
        for key in ops.create_chains + ops.flush_chains + _base_chains(ops):
            hook = HOOKS.get(key)
            cmds.append(f"add chain {FAMILY} {TABLE} {key[1]}" + (f" {{ {hook} }}" if hook else ""))
        # chains we own outright are emptied before refilling, whether or not we saw them
        fill = {r.chain for r in ops.add_rules if r.chain.startswith("NETPLUG-DN-")}
        for chain in sorted(fill | {c for _, c in ops.flush_chains}):
            cmds.append(f"flush chain {FAMILY} {TABLE} {chain}")
        for r in ops.add_rules:
            for stmt in to_nft(r):
                cmds.append(f"add rule {FAMILY} {TABLE} {r.chain} {stmt}")
        try:
            libnft.run("\n".join(cmds))
        except libnft.NftError as e:
            raise SetupError(f"nftables: {e}") from None
        from .plan import SHARED_CHAINS

        if set(ops.delete_chains) & set(SHARED_CHAINS) and self._only_table_left():
            libnft.run(f"delete table {FAMILY} {TABLE}")

    def _only_table_left(self) -> bool:
        objs = self._objects()
        chains = [o["chain"] for o in objs if "chain" in o]
        rules = [o for o in objs if "rule" in o]
        return not rules and all(c.get("hook") for c in chains)

    def _chain_rules(self, table, chain):
        try:
            objs = libnft.run_json(f"list chain {FAMILY} {TABLE} {chain}")
        except libnft.NftError:
            return None
        return [_strip(o["rule"]["expr"]) for o in objs if "rule" in o]

    def missing(self, plan):
        # nft rewrites expressions on the way back, so compare fill chains by rule count and
        # comments instead of text (see Backend.missing for the ensure rules).
        from .backend import _scope_of

        out = []
        live, chains = self._list(_scope_of(plan))
        have = {(lr.table, lr.chain, lr.comment) for lr in live}
        out += [f"{r.table} {r.chain}: rule '{r.comment}'" for r in plan.ensure
                if (r.table, r.chain, r.comment) not in have]
        for (table, chain), rules in plan.fill.items():
            got = self._chain_rules(table, chain)
            want = sum(len(to_nft(r)) for r in rules)
            if got is None:
                out.append(f"{table} chain {chain} is missing")
            elif len(got) != want:
                out.append(f"{table} chain {chain} has {len(got)} rules, expected {want}")
        return out

    def _normal(self, r: Rule) -> str:
        return " ".join(to_nft(r))

    def dump(self) -> str:
        try:
            return libnft.run(f"list table {FAMILY} {TABLE}")
        except libnft.NftError:
            return ""


def _base_chains(ops: Ops) -> list[tuple[str, str]]:
    return sorted({(r.table, r.chain) for r in ops.add_rules if (r.table, r.chain) in HOOKS})


def _table_of(chain: str, hook_type: str | None) -> str:
    if hook_type:
        return hook_type
    return "filter" if chain in ("NETPLUG-FORWARD", "NETPLUG-INPUT") else "nat"


def _strip(expr) -> str:
    from ..jsonlite import dumps

    return dumps(expr, sort_keys=True)
