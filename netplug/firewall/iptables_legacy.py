"""iptables-legacy backend through python-iptables (libiptc): one commit per table per operation.

libiptc is not thread-safe and python-iptables caches Table objects, so every use holds one
process-wide lock and refreshes the table first (which also binds it to this thread's netns).
"""

import threading

from ..errors import SetupError
from .backend import Backend, LiveRule, Ops, legacy_tables_present
from .model import Rule, is_builtin

_lock = threading.Lock()
_iptc = None


def _mod():
    global _iptc
    if _iptc is None:
        import iptc  # ~0.4 s: loaded only when this backend is used

        _iptc = iptc
    return _iptc


def _table(name: str):
    iptc = _mod()
    t = iptc.Table(name)
    t.autocommit = False
    t.refresh()
    return t


def to_iptc(r: Rule):
    iptc = _mod()
    rule = iptc.Rule()
    neg = lambda b, v: ("!" + v) if b else v  # noqa: E731
    if r.src:
        rule.src = neg(r.src_not, r.src)
    if r.dst:
        rule.dst = neg(r.dst_not, r.dst)
    if r.iif:
        rule.in_interface = neg(r.iif_not, r.iif)
    if r.oif:
        rule.out_interface = neg(r.oif_not, r.oif)
    if r.proto:
        rule.protocol = r.proto
        if r.dport:
            m = rule.create_match(r.proto)
            m.dport = str(r.dport)
    if r.dst_local:
        m = rule.create_match("addrtype")
        m.dst_type = "LOCAL"
    if r.mark:
        m = rule.create_match("mark")
        m.mark = r.mark
    if r.ctstate:
        m = rule.create_match("conntrack")
        m.ctstate = neg(r.ctstate_not, r.ctstate)
    if r.comment:
        m = rule.create_match("comment")
        m.comment = r.comment
    t = rule.create_target(r.target)
    if r.to:
        t.to_destination = r.to
    if r.set_mark:
        t.set_xmark = r.set_mark
    return rule


def _comment(rule) -> str:
    for m in rule.matches:
        if m.name == "comment":
            return m.comment or ""
    return ""


def _summary(rule) -> str:
    ports = [m.dport for m in rule.matches if m.name in ("tcp", "udp", "sctp")]
    return f"{rule.src} {rule.protocol} {ports} -> {rule.target.name}"


class LegacyBackend(Backend):
    name = "iptables-legacy"

    def unavailable(self):
        try:
            _mod()
        except Exception as e:  # libiptc missing, or python-iptables broken
            return f"python-iptables cannot load libiptc ({e})"
        return None

    def present(self):
        if not legacy_tables_present():
            return False
        return bool(self._list()[1])

    def _list(self, scope=None):
        # Decoding rules into Python objects is what costs here, so with a scope only the rules
        # of those chains are read; chain names are always read (creating an existing chain fails).
        live, chains = [], set()
        with _lock:
            for tname in ("nat", "filter"):
                t = _table(tname)
                for chain in t.chains:
                    if chain.name.startswith("NETPLUG-"):
                        chains.add((tname, chain.name))
                    if scope is not None and (tname, chain.name) not in scope:
                        continue
                    for rule in chain.rules:
                        c = _comment(rule)
                        if c:
                            live.append(LiveRule(tname, chain.name, c, rule))
        return live, chains

    def _apply(self, ops: Ops) -> None:
        iptc = _mod()
        with _lock:
            for tname in ("nat", "filter"):
                t = _table(tname)
                try:
                    # rule objects don't survive a refresh: find the doomed ones again by comment
                    doomed: dict[str, set[str]] = {}
                    for lr in ops.delete_rules:
                        if lr.table == tname:
                            doomed.setdefault(lr.chain, set()).add(lr.comment)
                    for chain_name, comments in doomed.items():
                        chain = iptc.Chain(t, chain_name)
                        for rule in list(chain.rules):
                            if _comment(rule) in comments:
                                chain.delete_rule(rule)
                    for tt, c in ops.delete_chains:
                        if tt == tname:
                            iptc.Chain(t, c).flush()
                    for tt, c in ops.delete_chains:
                        if tt == tname:
                            t.delete_chain(c)
                    for tt, c in ops.create_chains:
                        if tt == tname:
                            t.create_chain(c)
                    for tt, c in ops.flush_chains:
                        if tt == tname:
                            iptc.Chain(t, c).flush()
                    for r in ops.add_rules:
                        if r.table == tname:
                            chain = iptc.Chain(t, r.chain)
                            if is_builtin(tname, r.chain):
                                chain.insert_rule(to_iptc(r))
                            else:
                                chain.append_rule(to_iptc(r))
                    t.commit()
                except iptc.IPTCError as e:
                    raise SetupError(f"iptables-legacy ({tname}): {e}") from None

    def _chain_rules(self, table, chain):
        with _lock:
            t = _table(table)
            if not t.is_chain(chain):
                return None
            return [_summary(r) for r in _mod().Chain(t, chain).rules]

    def _normal(self, r: Rule) -> str:
        with _lock:
            return _summary(to_iptc(r))

    def dump(self):
        import shutil
        import subprocess

        exe = shutil.which("iptables-legacy-save", path="/usr/sbin:/sbin:/usr/bin")
        if not exe:
            return ""
        return subprocess.run([exe], capture_output=True, text=True).stdout
