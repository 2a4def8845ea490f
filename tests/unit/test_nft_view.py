"""netplugd's remembered nftables view: the handles a commit's echoes give the rules it added
(pure: no kernel). A handle is only ever trusted when every echo is the rule expected at its
place; a DEL deletes by these handles without reading the chain."""

from netplug.firewall import nfmsg
from netplug.firewall import nftables as NF
from netplug.firewall import plan as P
from netplug.firewall.backend import LiveRule, Ops
from netplug.cni.config import PortMapping


def _added():
    rules = P.network("n", "172.17.0.0/16", "br0", True).ensure + \
        P.container("n", "c1", "abc", "172.17.0.2", "172.17.0.0/16", [PortMapping(8080, 80, "tcp")]).ensure
    counts = [len(nfmsg.rule(NF.FAMILY, NF.TABLE, r)) for r in rules]
    assert sum(counts) > len(rules)  # "to-containers" is two nft rules: both need a handle
    echoed = [(r.chain, r.comment) for r, c in zip(rules, counts) for _ in range(c)]
    return rules, [(chain, 100 + i, comment) for i, (chain, comment) in enumerate(echoed)]


def test_added_rules_take_the_echoed_handles_in_order():
    rules, echoed = _added()
    scope = {(r.table, r.chain) for r in rules}
    old = LiveRule("nat", P.HOSTPORTS, "netplug net=n id=c0 np:old tcp/8079", 7)
    live, chains = NF._after(Ops(add_rules=rules), [old], set(), scope, echoed)
    assert live[0] is old
    assert [(lr.chain, lr.ref, lr.comment) for lr in live[1:]] == echoed
    assert ("nat", P.HOSTPORTS) in chains


def test_no_handle_unless_every_echo_is_the_rule_expected():
    rules, echoed = _added()
    scope = {(r.table, r.chain) for r in rules}
    wrong_comment = [echoed[0][:2] + ("netplug net=other masquerade",)] + echoed[1:]
    wrong_chain = [("NETPLUG-INPUT",) + echoed[0][1:]] + echoed[1:]
    no_handle = [echoed[0][:1] + (0,) + echoed[0][2:]] + echoed[1:]
    for bad in (None, [], echoed[:-1], echoed + [echoed[-1]], wrong_comment, wrong_chain, no_handle):
        live, _ = NF._after(Ops(add_rules=rules), [], set(), scope, bad)
        assert len(live) == len(rules) and all(lr.ref is None for lr in live), bad


def test_rules_outside_the_view_are_not_remembered():
    rules, echoed = _added()
    ports = {("nat", P.HOSTPORTS)}
    only = [e for e in echoed if e[0] == P.HOSTPORTS]
    live, _ = NF._after(Ops(add_rules=rules), [], set(), ports, only)
    assert [(lr.chain, lr.ref) for lr in live] == [(c, h) for c, h, _ in only]


def test_merged_view_keeps_what_the_starting_view_knew_elsewhere():
    shared = {("nat", "NETPLUG-POSTROUTING")}
    masq = LiveRule("nat", "NETPLUG-POSTROUTING", "netplug net=n masquerade", 3)
    keep = NF._View(5, shared, [masq], {("nat", "NETPLUG-POSTROUTING"), ("nat", "NETPLUG-DN-x")})
    scope = {("nat", P.HOSTPORTS), ("nat", "NETPLUG-DN-x")}
    jump = LiveRule("nat", P.HOSTPORTS, "np:y", 9)
    cover, live, chains = NF._merged(keep, scope, [jump], {("nat", P.HOSTPORTS)})
    assert cover == shared | scope
    assert live == [jump, masq]
    # what this sync read of its own scope wins: DN-x is not there any more
    assert chains == {("nat", "NETPLUG-POSTROUTING"), ("nat", P.HOSTPORTS)}
    assert NF._merged(None, scope, [jump], set()) == (frozenset(scope), [jump], set())
