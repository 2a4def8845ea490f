"""One interface over three firewall backends, and the one place that picks among them.

A backend only has to list what is live (`_list`) and apply a computed batch (`_apply`); the
diff between a Plan and the live rules is pure (`compute_ops`) and shared by all of them.
"""

import os

from ..errors import UnavailableError
from ..fileio import ensure_dir
from ..locking import flocked
from . import plan as P
from .model import Rule, is_builtin
from ..log import log
from ..record import field, record


@record
class LiveRule:
    table: str
    chain: str
    comment: str
    ref: object = None  # backend handle: a save line, an nft handle, an iptc rule

    def tokens(self) -> frozenset[str]:
        return frozenset(self.comment.split())


@record
class Ops:
    delete_rules: list[LiveRule] = field(default_factory=list)
    delete_chains: list[tuple[str, str]] = field(default_factory=list)
    create_chains: list[tuple[str, str]] = field(default_factory=list)
    flush_chains: list[tuple[str, str]] = field(default_factory=list)
    add_rules: list[Rule] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any((self.delete_rules, self.delete_chains, self.create_chains,
                    self.flush_chains, self.add_rules))


def compute_ops(plan: P.Plan, remove: list[frozenset], remove_chains: list[tuple[str, str]],
                prune: bool, live: list[LiveRule], chains: set[tuple[str, str]]) -> Ops:
    ops = Ops()
    gone_chains = {c for c in remove_chains if c in chains}
    ops.delete_rules = [lr for lr in live if (lr.table, lr.chain) not in gone_chains
                        and any(t <= lr.tokens() for t in remove)]
    deleted = {id(lr) for lr in ops.delete_rules}
    remaining = [lr for lr in live if id(lr) not in deleted and (lr.table, lr.chain) not in gone_chains]
    if prune and not any(t.startswith("net=") for lr in remaining for t in lr.tokens()) \
            and not any(t.startswith("net=") for r in plan.ensure for t in r.tokens()):
        base = [lr for lr in remaining if P.BASE_TAG <= lr.tokens()]
        ops.delete_rules += base
        remaining = [lr for lr in remaining if not P.BASE_TAG <= lr.tokens()]
        gone_chains |= {c for c in P.SHARED_CHAINS if c in chains}
        # anything else still in our shared chains (foreign or stale) goes with them
        remaining = [lr for lr in remaining if (lr.table, lr.chain) not in gone_chains]
        ops.delete_rules = [lr for lr in ops.delete_rules if (lr.table, lr.chain) not in gone_chains]
    ops.delete_chains = sorted(gone_chains)
    present = {(lr.table, lr.chain, lr.comment) for lr in remaining}
    have_chains = chains - gone_chains
    for r in plan.ensure:
        if (r.table, r.chain, r.comment) in present:
            continue
        present.add((r.table, r.chain, r.comment))
        ops.add_rules.append(r)
    for key, rules in plan.fill.items():
        (ops.flush_chains if key in have_chains else ops.create_chains).append(key)
        have_chains.add(key)
        ops.add_rules += rules
    for r in ops.add_rules:
        for key in ((r.table, r.chain), (r.table, r.target)):
            if key[1].startswith("NETPLUG-") and not is_builtin(*key) and key not in have_chains:
                ops.create_chains.append(key)
                have_chains.add(key)
    return ops


class Backend:
    name = "?"

    def __init__(self, state_dir: str = "/run/netplug"):
        self.lock_path = os.path.join(state_dir, "firewall.lock")
        ensure_dir(state_dir, 0o700)

    # implemented by each backend
    def unavailable(self) -> str | None:
        raise NotImplementedError

    def present(self) -> bool:
        """Cheap: does this backend hold any netplug state in this netns?"""
        raise NotImplementedError

    def _list(self, scope: set[tuple[str, str]] | None = None) -> tuple[list[LiveRule], set[tuple[str, str]]]:
        """Live rules with a comment, and netplug's chains. With `scope`, a backend may read only
        those chains (what an ADD touches does not grow with the number of containers)."""
        raise NotImplementedError

    def _apply(self, ops: Ops) -> None:
        raise NotImplementedError

    def _chain_rules(self, table: str, chain: str) -> list[str] | None:
        """Rule bodies of one chain in a comparable normal form, None if the chain is missing."""
        raise NotImplementedError

    def dump(self) -> str:
        raise NotImplementedError

    # shared logic
    def sync(self, plan: P.Plan, remove: list[frozenset] = (), remove_chains=(), prune=False,
             scope: set[tuple[str, str]] | None = None) -> None:
        reason = self.unavailable()
        if reason:
            raise UnavailableError(f"firewall backend {self.name} is not usable: {reason}")
        with flocked(self.lock_path, what="firewall"):
            live, chains = self._list(None if prune else scope)
            ops = compute_ops(plan, list(remove), list(remove_chains), prune, live, chains)
            if ops:
                self._apply(ops)

    def missing(self, plan: P.Plan) -> list[str]:
        """What of `plan` is not live: for CHECK (reads only the chains the plan touches)."""
        live, chains = self._list(_scope_of(plan))
        have = {(lr.table, lr.chain, lr.comment) for lr in live}
        out = [f"{r.table} {r.chain}: rule '{r.comment}'" for r in plan.ensure
               if (r.table, r.chain, r.comment) not in have]
        for (table, chain), rules in plan.fill.items():
            if (table, chain) not in chains:
                out.append(f"{table} chain {chain} is missing")
                continue
            got = self._chain_rules(table, chain)
            want = [self._normal(r) for r in rules]
            if got != want:
                out.append(f"{table} chain {chain} differs: has {len(got or [])} rules, expected {len(want)}")
        return out

    def _normal(self, r: Rule) -> str:
        raise NotImplementedError

    def owners(self) -> dict[str, str]:
        """np:<hash> owner tokens found live, mapped to their network."""
        live, _ = self._list()
        out = {}
        for lr in live:
            toks = lr.tokens()
            h = next((t[3:] for t in toks if t.startswith("np:")), None)
            if h:
                out[h] = next((t[4:] for t in toks if t.startswith("net=")), "")
        return out

    def networks(self) -> set[str]:
        live, _ = self._list()
        return {t[4:] for lr in live for t in lr.tokens() if t.startswith("net=")}


def _scope_of(plan: P.Plan) -> set[tuple[str, str]]:
    return {(r.table, r.chain) for r in plan.ensure} | set(plan.fill)


# --- choosing ----------------------------------------------------------------------------------

def iptables_variant() -> str | None:
    """'nft' or 'legacy' for the `iptables` on PATH, None if there is none (no exec needed)."""
    import shutil  # lazily: only `auto` needs it

    exe = shutil.which("iptables", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if not exe:
        return None
    real = os.path.basename(os.path.realpath(exe))
    if "legacy" in real:
        return "legacy"
    return "nft" if "nft" in real else "legacy"


def legacy_tables_present() -> bool:
    try:
        with open("/proc/thread-self/net/ip_tables_names") as f:
            return bool(f.read().strip())
    except OSError:
        return False


def make(name: str, state_dir: str) -> Backend:
    if name == "nftables":
        from .nftables import NftBackend

        return NftBackend(state_dir)
    if name == "iptables":
        from .iptables_nft import IptablesNftBackend

        return IptablesNftBackend(state_dir)
    if name == "iptables-legacy":
        from .iptables_legacy import LegacyBackend

        return LegacyBackend(state_dir)
    from .none import NoneBackend

    return NoneBackend(state_dir)


def choose(requested: str, state_dir: str) -> Backend:
    """Resolve `auto`: follow the host's `iptables` and where rules already live."""
    if requested != "auto":
        return make(requested, state_dir)
    variant = iptables_variant()
    if variant == "nft":
        name = "iptables-legacy" if legacy_tables_present() and not _nft_nat_exists(state_dir) \
            else "iptables"
    elif variant == "legacy":
        name = "iptables-legacy"
    else:
        name = "nftables"
    log.info("firewall backend auto: using %s (iptables is %s)", name, variant or "absent")
    return make(name, state_dir)


def _nft_nat_exists(state_dir: str) -> bool:
    from .nftables import NftBackend

    return NftBackend(state_dir).table_exists("ip", "nat")


def all_present(state_dir: str) -> list[Backend]:
    """Every backend holding netplug state in this netns: DEL and GC clean all of them."""
    out = []
    for name in ("nftables", "iptables", "iptables-legacy"):
        b = make(name, state_dir)
        try:
            if b.present() and b.unavailable() is None:  # present() first: it is the cheap test
                out.append(b)
        except Exception as e:  # a broken backend must not stop cleanup of the others
            log.warning("firewall backend %s: %s", name, e)
    return out
