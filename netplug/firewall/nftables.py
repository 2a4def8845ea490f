"""nftables backend: netplug's own `ip netplug` table, one atomic batch per operation.

Base chains carry the iptables names (PREROUTING, OUTPUT, POSTROUTING, FORWARD, INPUT) so
`netplug explain` shows every backend the same way.
"""

from ..errors import SetupError
from . import libnft, nfmsg
from .backend import Backend, LiveRule, Ops
from ..log import log
from .model import Rule, to_nft

FAMILY, TABLE = "ip", "netplug"
HOOKS = {key: f"type {ctype} hook {nfmsg.HOOK_NAMES[num]} priority {prio}; policy accept;"
         for key, (ctype, num, prio) in nfmsg.HOOKS.items()}
RAW_BATCH_LIMIT = 100_000  # bytes: one datagram must carry the whole batch


class NftBackend(Backend):
    name = "nftables"
    _seen: list[dict] | None = None  # the last whole-table listing, made under the firewall lock

    def unavailable(self):
        return libnft.available()

    def table_exists(self, family: str, table: str) -> bool:
        return libnft.table_exists(family, table)

    def present(self):
        return libnft.table_exists(FAMILY, TABLE)

    def _objects(self) -> list[dict]:
        try:
            self._seen = libnft.run_json(f"list table {FAMILY} {TABLE}")
        except libnft.NftError:
            self._seen = []
        return self._seen

    def _scoped(self, scope) -> tuple[list[LiveRule], set[tuple[str, str]]]:
        """The rules and chains of `scope` only, read over the raw socket (libnftables would
        fetch every chain of the table first, which grows with the containers); nothing at all
        is read without the table."""
        live, chains = [], set()
        if not libnft.table_exists(FAMILY, TABLE):
            return live, chains
        for table, chain in sorted(scope):
            rules = libnft.chain_rules(FAMILY, TABLE, chain)
            if rules is None:  # not there (yet)
                continue
            chains.add((table, chain))
            for handle, comment, target in rules:
                live.append(LiveRule(table, chain, comment, handle))
                if target:  # a jump proves its target exists
                    chains.add((_table_of(target, None), target))
        return live, chains

    def _list(self, scope=None):
        if scope is not None:
            self._seen = None  # a partial view: never judge the whole table from it
            return self._scoped(scope)
        live, chains = [], set()
        table_of = {}
        for obj in self._objects():
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
        from .plan import SHARED_CHAINS

        # The last container of the last network takes the table along, in the same batch:
        # every nf_tables commit that deletes something waits an RCU grace period (~12 ms).
        drop_table = bool(set(ops.delete_chains) & set(SHARED_CHAINS)) and \
            self._empty_after(ops, self._seen)
        steps = _steps(ops, drop_table)
        raw = [m for _, m in steps]
        if all(m is not None for m in raw) and sum(len(m[2]) for m in raw) < RAW_BATCH_LIMIT:
            try:
                libnft.commit(raw, lambda i: _text(steps[i][0]))
                return
            except libnft.NftError as e:  # nothing was applied: a batch is all or nothing
                log.warning("nftables: the kernel refused netplug's batch (%s); "
                            "retrying through libnftables", str(e).replace("\n", ": "))
        try:
            libnft.run("\n".join(_text(what) for what, _ in steps))
        except libnft.NftError as e:
            raise SetupError(f"nftables: {e}") from None

    @staticmethod
    def _empty_after(ops: Ops, seen: list[dict] | None) -> bool:
        """Would the table hold nothing but empty base chains once `ops` ran? `seen` is the
        whole-table listing sync() made under the firewall lock (pruning always lists it all)."""
        if seen is None or ops.add_rules or ops.create_chains or ops.flush_chains:
            return False
        gone_chains = {c for _, c in ops.delete_chains}
        gone_rules = {lr.ref for lr in ops.delete_rules}
        for o in seen:
            if "rule" in o and o["rule"]["handle"] not in gone_rules and o["rule"]["chain"] not in gone_chains:
                return False
            if "chain" in o and not o["chain"].get("hook") and o["chain"]["name"] not in gone_chains:
                return False
        return True

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
            got = sum(1 for lr in live if lr.chain == chain) if (table, chain) in chains else None
            want = sum(len(to_nft(r)) for r in rules)
            if got is None:
                out.append(f"{table} chain {chain} is missing")
            elif got != want:
                out.append(f"{table} chain {chain} has {got} rules, expected {want}")
        return out

    def _normal(self, r: Rule) -> str:
        return " ".join(to_nft(r))

    def dump(self) -> str:
        try:
            return libnft.run(f"list table {FAMILY} {TABLE}")
        except libnft.NftError:
            return ""


def _steps(ops: Ops, drop_table: bool) -> list[tuple[str | tuple, tuple | None]]:
    """The batch for `ops`: each command as a raw message (None where nfmsg does not encode it,
    and the whole batch then goes through libnftables) and what `_text` makes nft text of: a
    string, or (rule, statement index), rendered only when needed."""
    steps: list = [(f"add table {FAMILY} {TABLE}", nfmsg.add_table(FAMILY, TABLE))]
    for lr in ops.delete_rules:
        steps.append((f"delete rule {FAMILY} {TABLE} {lr.chain} handle {lr.ref}",
                      nfmsg.delete_rule(FAMILY, TABLE, lr.chain, int(lr.ref))))
    # flush every doomed chain before deleting any: they may jump to each other
    for _, chain in ops.delete_chains:
        steps.append((f"flush chain {FAMILY} {TABLE} {chain}", nfmsg.flush_chain(FAMILY, TABLE, chain)))
    for _, chain in ops.delete_chains:
        steps.append((f"delete chain {FAMILY} {TABLE} {chain}", nfmsg.delete_chain(FAMILY, TABLE, chain)))
    for key in ops.create_chains + ops.flush_chains + _base_chains(ops):
        hook = HOOKS.get(key)
        steps.append((f"add chain {FAMILY} {TABLE} {key[1]}" + (f" {{ {hook} }}" if hook else ""),
                      nfmsg.add_chain(FAMILY, TABLE, key[1], nfmsg.HOOKS.get(key))))
    # chains we own outright are emptied before refilling, whether or not we saw them
    fill = {r.chain for r in ops.add_rules if r.chain.startswith("NETPLUG-DN-")}
    for chain in sorted(fill | {c for _, c in ops.flush_chains}):
        steps.append((f"flush chain {FAMILY} {TABLE} {chain}", nfmsg.flush_chain(FAMILY, TABLE, chain)))
    for r in ops.add_rules:
        msgs = nfmsg.rule(FAMILY, TABLE, r) or [None] * len(to_nft(r))
        steps += (((r, i), m) for i, m in enumerate(msgs))
    if drop_table:
        steps.append((f"delete table {FAMILY} {TABLE}", nfmsg.delete_table(FAMILY, TABLE)))
    return steps


def _text(what: str | tuple) -> str:
    if isinstance(what, str):
        return what
    r, i = what
    return f"add rule {FAMILY} {TABLE} {r.chain} {to_nft(r)[i]}"


def _base_chains(ops: Ops) -> list[tuple[str, str]]:
    return sorted({(r.table, r.chain) for r in ops.add_rules if (r.table, r.chain) in HOOKS})


def _table_of(chain: str, hook_type: str | None) -> str:
    if hook_type:
        return hook_type
    return "filter" if chain in ("NETPLUG-FORWARD", "NETPLUG-INPUT") else "nat"
