"""nftables backend: netplug's own `ip netplug` table, one atomic batch per operation.

Base chains carry the iptables names (PREROUTING, OUTPUT, POSTROUTING, FORWARD, INPUT) so
`netplug explain` shows every backend the same way.
"""

import _thread

from ..errors import SetupError, UnavailableError
from ..locking import flocked
from . import libnft, nfmsg
from .backend import Backend, LiveRule, Ops, compute_ops
from ..log import log
from .model import Rule, to_nft

FAMILY, TABLE = "ip", "netplug"
HOOKS = {key: f"type {ctype} hook {nfmsg.HOOK_NAMES[num]} priority {prio}; policy accept;"
         for key, (ctype, num, prio) in nfmsg.HOOKS.items()}
RAW_BATCH_LIMIT = 100_000  # bytes: one datagram must carry the whole batch

# netplugd only: per netns, what its last scoped sync left in the chains it read, and the
# ruleset's generation right after it (see NftBackend.sync). Guarded by the firewall lock.
_views: dict[int, "_View"] = {}
_views_lock = _thread.allocate_lock()
MAX_RESTARTS = 3


class _View:
    __slots__ = ("gen", "scope", "live", "chains")

    def __init__(self, gen, scope, live, chains):
        self.gen, self.scope, self.live, self.chains = gen, frozenset(scope), live, chains


class NftBackend(Backend):
    name = "nftables"
    _seen: list[dict] | None = None  # the last whole-table listing, made under the firewall lock
    _echoed: list | None = None  # what the last raw commit's F_ECHO rules came back as

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

    def _scoped(self, scope, probed: bool | None = None) -> tuple[list[LiveRule], set[tuple[str, str]]]:
        """The rules and chains of `scope` only, read over the raw socket (libnftables would
        fetch every chain of the table first, which grows with the containers); nothing at all
        is read without the table (`probed`: whether it exists, if already asked)."""
        live, chains = [], set()
        if not (libnft.table_exists(FAMILY, TABLE) if probed is None else probed):
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

    def sync(self, plan, remove=(), remove_chains=(), prune=False, scope=None) -> None:
        """As Backend.sync; in netplugd a scoped sync (an ADD, a DEL that is not the
        network's last) also reuses what the previous one left, instead of reading the shared
        chains again (~1 ms with containers attached): its batch carries the generation that
        view is from, so the kernel refuses it (nothing applied) if anything committed since,
        and the chains are then read again. A DEL that has to read (its port chain) keeps the
        rest of the view, so the ADD after it does not read either; once the port chain is in
        the view, with the handles the kernel echoed to each ADD, a DEL reads nothing."""
        if scope is None or prune or not libnft.long_lived():
            self._forget_view()
            return super().sync(plan, remove, remove_chains, prune, scope)
        reason = self.unavailable()
        if reason:
            raise UnavailableError(f"firewall backend {self.name} is not usable: {reason}")
        remove, remove_chains = list(remove), list(remove_chains)
        with flocked(self.lock_path, what="firewall"):
            ino = libnft.netns_ino()
            with _views_lock:
                view = _views.pop(ino, None)
            for _ in range(MAX_RESTARTS):
                # `keep`: the view this sync starts from, when the ruleset is still at its
                # generation: what it knows outside `scope` stays true. A chain this sync
                # deletes whole (a DEL's own) needs only to be known to exist.
                if view is not None and scope <= view.scope | (view.chains & set(remove_chains)):
                    gen, keep = view.gen, view
                    live = [lr for lr in view.live if (lr.table, lr.chain) in scope]
                    chains, table = set(view.chains), True
                else:
                    gen, table = libnft.generation_and_table(FAMILY, TABLE)
                    live, chains = self._scoped(scope, probed=table)
                    keep = view if view is not None and view.gen == gen and table else None
                    view = None
                ops = compute_ops(plan, remove, remove_chains, False, live, chains)
                if view is not None and any(lr.ref is None for lr in ops.delete_rules):
                    view = None  # a rule to delete that we only know we added: read it
                    continue
                # what the next view covers: this sync's chains and its starting view's, less
                # the chains deleted here (a DEL's own: the set would grow with every DEL)
                cover, live, chains = _merged(keep, scope, live, chains)
                kept = cover - set(remove_chains)
                if not ops:
                    if view is not None and libnft.generation() != gen:
                        view = None  # what we remembered is stale: read again
                        continue
                    self._remember(ino, gen, kept, live, chains)
                    return
                try:
                    # the echoes only serve a view, and an ADD that creates the table keeps none
                    raw = self._apply(ops, genid=gen, text_fallback=view is None,
                                      echo=cover if table else frozenset())
                except libnft.GenChanged:
                    view = None
                    continue
                log.debug("nftables: committed %s generation %d", "from the view of" if view else "after reading", gen)
                # Remembered only while the table stays (an ADD that creates it is the first
                # one, where no ADD follows soon) and if ours was the only commit since `gen`.
                if raw and table and libnft.generation() == gen + 1:
                    self._remember(ino, gen + 1, kept, *_after(ops, live, chains, cover, self._echoed))
                return
            raise SetupError("nftables: the ruleset kept changing during netplug's transaction",
                             f"{MAX_RESTARTS} attempts; retry the operation")

    @staticmethod
    def _remember(ino, gen, scope, live, chains) -> None:
        with _views_lock:
            _views[ino] = _View(gen, scope, live, chains)

    @staticmethod
    def _forget_view() -> None:
        if _views:
            with _views_lock:
                _views.pop(libnft.netns_ino(), None)

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

    def _apply(self, ops: Ops, genid: int | None = None, text_fallback: bool = True,
               echo=frozenset()) -> bool:
        """Commit `ops`: True if as one raw batch (checked against `genid` if given), False if
        through libnftables, which has no generation check: ops computed from a remembered
        view never go that way (`text_fallback=False` turns a refusal into GenChanged, so the
        caller reads the chains and computes them again). The rules added to the chains in
        `echo` are sent with F_ECHO: their (chain, handle, comment) land in self._echoed."""
        from .plan import SHARED_CHAINS

        # The last container of the last network takes the table along, in the same batch:
        # every nf_tables commit that deletes something waits an RCU grace period (~12 ms).
        drop_table = bool(set(ops.delete_chains) & set(SHARED_CHAINS)) and \
            self._empty_after(ops, self._seen)
        steps = _steps(ops, drop_table, echo)
        raw = [m for _, m in steps]
        self._echoed = None
        if all(m is not None for m in raw) and sum(len(m[2]) for m in raw) < RAW_BATCH_LIMIT:
            try:
                self._echoed = libnft.commit(raw, lambda i: _text(steps[i][0]), genid)
                return True
            except libnft.GenChanged:
                raise
            except libnft.NftError as e:  # nothing was applied: a batch is all or nothing
                if not text_fallback:
                    raise libnft.GenChanged(str(e)) from None
                log.warning("nftables: the kernel refused netplug's batch (%s); "
                            "retrying through libnftables", str(e).replace("\n", ": "))
        try:
            libnft.run("\n".join(_text(what) for what, _ in steps))
        except libnft.NftError as e:
            raise SetupError(f"nftables: {e}") from None
        return False

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


def _after(ops: Ops, live: list[LiveRule], chains: set, scope,
           echoed: list[tuple[str, int, str]] | None = None) -> tuple[list[LiveRule], set]:
    """The rules of `scope` and the chains known once `ops` applied. The rules it added get
    the handles the kernel echoed (`echoed`, in the batch's order), so a DEL can delete them
    without reading; if the echoes do not match the rules one for one, none gets a handle (a
    DEL then reads the chain)."""
    gone_rules = {id(lr) for lr in ops.delete_rules}
    gone_chains = set(ops.delete_chains)
    live = [lr for lr in live if id(lr) not in gone_rules and (lr.table, lr.chain) not in gone_chains]
    flushed = set(ops.flush_chains)
    live = [lr for lr in live if (lr.table, lr.chain) not in flushed]
    added = [r for r in ops.add_rules if (r.table, r.chain) in scope]
    live += _with_handles(added, echoed) or [LiveRule(r.table, r.chain, r.comment) for r in added]
    chains = (chains - gone_chains) | set(ops.create_chains) | {(r.table, r.chain) for r in ops.add_rules}
    return live, chains


def _with_handles(added: list[Rule], echoed: list[tuple[str, int, str]] | None) -> list[LiveRule] | None:
    """One LiveRule per nft rule of `added` (a Rule may be several), each with the handle the
    kernel echoed for it; None unless every echo is the rule expected at its place."""
    if not added or echoed is None:
        return None
    out, i = [], 0
    for r in added:
        for _ in nfmsg.rule(FAMILY, TABLE, r) or ():
            if i >= len(echoed) or echoed[i][0] != r.chain or echoed[i][2] != r.comment or not echoed[i][1]:
                return None
            out.append(LiveRule(r.table, r.chain, r.comment, echoed[i][1]))
            i += 1
    return out if i == len(echoed) else None


def _merged(keep: _View | None, scope, live: list[LiveRule], chains: set) -> tuple[frozenset, list, set]:
    """`scope`'s rules and the chains known, joined with what `keep` (a view of the same
    generation, before this commit) knows of other chains. So a DEL, which reads the port
    chain and its own, leaves the next ADD a view of the shared chains as well, and the port
    chain it read (every rule with its handle) lets the DELs after it skip reading it."""
    if keep is None:
        return frozenset(scope), live, chains
    return (keep.scope | scope, live + [lr for lr in keep.live if (lr.table, lr.chain) not in scope],
            {c for c in keep.chains if c not in scope} | chains)


def _steps(ops: Ops, drop_table: bool, echo=frozenset()) -> list[tuple[str | tuple, tuple | None]]:
    """The batch for `ops`: each command as a raw message (None where nfmsg does not encode it,
    and the whole batch then goes through libnftables) and what `_text` makes nft text of: a
    string, or (rule, statement index), rendered only when needed. Rules added to a chain in
    `echo` ask the kernel to send them back (F_ECHO), with the handles it gave them."""
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
        if (r.table, r.chain) in echo:
            msgs = [m and (m[0], m[1] | nfmsg.F_ECHO, m[2]) for m in msgs]
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
