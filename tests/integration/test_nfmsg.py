"""netplug's own nf_tables encoding (nfmsg) against libnftables, in throwaway namespaces: every
rule shape netplug writes must come out of the kernel exactly as nft's own encoding of the same
`to_nft` text does, or `nft list`, `netplug explain` and CHECK would see a different rule."""

import json

import pytest

from netplug.cni.config import PortMapping
from netplug.firewall import libnft, nfmsg
from netplug.firewall import plan as P
from netplug.firewall.backend import Ops
from netplug.firewall.model import Rule
from netplug.firewall.nftables import NftBackend, _steps, _text
from netns_tools import in_ns, nsexec

pytestmark = pytest.mark.netns

EXTRA = [  # shapes the plans make only with some configs, and a few more model.Rule allows
    Rule("nat", P.POSTROUTING, "MASQUERADE", src="10.88.0.0/20", src_not=True, comment="netplug x prefix-20"),
    Rule("nat", P.POSTROUTING, "RETURN", dst="192.0.2.7", comment="netplug x host-address"),
    Rule("filter", P.FORWARD, "DROP", iif="eth9", iif_not=True, oif="br-x", ctstate="NEW", comment="netplug x new"),
    Rule("filter", P.FORWARD, "ACCEPT", ctstate="INVALID,UNTRACKED", ctstate_not=True, comment="netplug x not"),
    Rule("filter", P.FORWARD, "ACCEPT", ctstate="DNAT", ctstate_not=True, comment="netplug x not-dnat"),
    Rule("nat", P.HOSTPORTS, "DNAT", proto="udp", dport=53, to="172.17.0.9", comment="netplug x no-port"),
    Rule("nat", P.HOSTPORTS, "ACCEPT", proto="sctp", comment="netplug x l4proto-only"),
    Rule("nat", P.POSTROUTING, "MASQUERADE", mark="0x10/0xff"),  # no comment
]


def every_shape() -> list[Rule]:
    pms = [PortMapping(8080, 80, "tcp"), PortMapping(5353, 53, "udp", "198.51.100.1"),
           PortMapping(9999, 99, "sctp")]
    plan = (P.base() + P.network("a", "172.17.0.0/16", "netplug0", True)
            + P.network("k", "10.244.1.0/24", "cni0", True, cluster_cidr="10.244.0.0/16")
            + P.container("a", "c1", "0123456789abcdef", "172.17.0.5", "172.17.0.0/16", pms))
    return plan.all_rules() + EXTRA


def ops_for(rules: list[Rule]) -> Ops:
    chains = sorted({(r.table, c) for r in rules for c in (r.chain, r.target)
                     if c.startswith("NETPLUG-")})
    return Ops(create_chains=chains, add_rules=rules)


def listing(ns_name: str) -> list[dict]:
    """The table as nft shows it, without handles (they differ by allocation order only)."""
    objs = json.loads(nsexec(ns_name, "nft", "-j", "list", "table", "ip", "netplug").stdout)["nftables"]
    out = []
    for o in objs:
        for kind in ("table", "chain", "rule"):
            if kind in o:
                o[kind].pop("handle", None)
        out.append(o)
    return out


def test_every_rule_shape_lists_as_libnftables_writes_it(world):
    steps = _steps(ops_for(every_shape()), drop_table=False)
    assert all(m is not None for _, m in steps), [_text(t) for t, m in steps if m is None]
    a, b = world.container(0), world.container(1)
    in_ns(world.netns_path(a), lambda: libnft.run("\n".join(_text(t) for t, _ in steps)))
    in_ns(world.netns_path(b), lambda: libnft.commit([m for _, m in steps], lambda i: _text(steps[i][0])))
    assert listing(b) == listing(a)
    # and the text nft prints, which is what `netplug explain` reads from a saved dump
    text = lambda n: nsexec(n, "nft", "list", "table", "ip", "netplug").stdout  # noqa: E731
    assert text(b) == text(a)


def test_deletes_by_handle_flush_and_table_drop(world):
    h = world.host
    rules = P.base().all_rules() + P.container("a", "c1", "0123456789abcdef", "172.17.0.5",
                                               "172.17.0.0/16", [PortMapping(8080, 80)]).all_rules()
    steps = _steps(ops_for(rules), drop_table=False)
    in_ns(world.netns_path(h), lambda: libnft.commit([m for _, m in steps], lambda i: _text(steps[i][0])))
    b = NftBackend.__new__(NftBackend)
    live, chains = in_ns(world.netns_path(h), lambda: b._list())
    entry = [lr for lr in live if "np:0123456789abcdef" in lr.comment]
    assert len(entry) == 1
    gone = Ops(delete_rules=entry, delete_chains=[("nat", P.dn_chain("0123456789abcdef"))])
    steps = _steps(gone, drop_table=False)
    in_ns(world.netns_path(h), lambda: libnft.commit([m for _, m in steps], lambda i: _text(steps[i][0])))
    after = nsexec(h, "nft", "list", "table", "ip", "netplug").stdout
    assert "0123456789abcdef" not in after and "netplug base hostports" in after
    steps = _steps(Ops(), drop_table=True)
    in_ns(world.netns_path(h), lambda: libnft.commit([m for _, m in steps], lambda i: _text(steps[i][0])))
    assert "netplug" not in nsexec(h, "nft", "list", "tables").stdout


def test_a_refused_batch_names_the_command_and_changes_nothing(world):
    bad = Ops(add_rules=[Rule("nat", "NETPLUG-NOWHERE", "ACCEPT", comment="netplug x")])
    steps = _steps(bad, drop_table=False)
    with pytest.raises(libnft.NftError) as e:
        in_ns(world.netns_path(world.host),
              lambda: libnft.commit([m for _, m in steps], lambda i: _text(steps[i][0])))
    assert "add rule ip netplug NETPLUG-NOWHERE accept" in str(e.value)
    assert "No such file or directory" in str(e.value)
    # the batch's `add table` went with it
    assert "netplug" not in nsexec(world.host, "nft", "list", "tables").stdout


def test_a_refusal_inside_the_batch_is_found_and_named(world):
    """Only the last message asks for an ACK: a refusal before it must still be reported."""
    msgs = [nfmsg.add_table("ip", "netplug"),
            *nfmsg.rule("ip", "netplug", Rule("nat", "NETPLUG-NOWHERE", "ACCEPT")),
            nfmsg.add_chain("ip", "netplug", "NETPLUG-FINE")]
    names = ["add table", "the rule", "add chain"]
    with pytest.raises(libnft.NftError) as e:
        in_ns(world.netns_path(world.host), lambda: libnft.commit(msgs, names.__getitem__))
    assert str(e.value).endswith("\nthe rule")
    assert "netplug" not in nsexec(world.host, "nft", "list", "tables").stdout


def test_backend_writes_through_its_own_encoding(world, monkeypatch):
    """An ADD's batch makes no libnftables call at all: the table probe and the commit both go
    over the raw socket."""
    calls = []
    real_run = libnft.run
    monkeypatch.setattr(libnft, "run", lambda *a, **k: calls.append(a) or real_run(*a, **k))
    b = NftBackend.__new__(NftBackend)
    b.lock_path = str(world.tmp) + "/firewall.lock"
    plan = P.base() + P.network("a", "172.17.0.0/16", "netplug0", True) + \
        P.container("a", "c1", "0123456789abcdef", "172.17.0.5", "172.17.0.0/16", [PortMapping(8080, 80)])
    scope = {(r.table, r.chain) for r in (P.base() + P.network("a", "172.17.0.0/16", "netplug0", True)).ensure}

    def add():
        with libnft.session():
            b.sync(plan, remove=[P.container_tag("0123456789abcdef")], scope=scope)

    in_ns(world.netns_path(world.host), add)
    assert calls == []
    assert "dnat to 172.17.0.5:80" in nsexec(world.host, "nft", "list", "table", "ip", "netplug").stdout


def test_unknown_shapes_are_left_to_libnftables():
    assert nfmsg.rule("ip", "netplug", Rule("nat", "X", "ACCEPT", iif="veth+")) is None
    assert nfmsg.rule("ip", "netplug", Rule("nat", "X", "DNAT", to="[2001:db8::1]:80")) is None
    assert nfmsg.rule("ip", "netplug", Rule("nat", "X", "ACCEPT", ctstate="SNAT")) is None
    assert nfmsg.rule("ip", "netplug", Rule("nat", "X", "ACCEPT", src="0.0.0.0/0")) is None
    assert nfmsg.rule("ip", "netplug", Rule("nat", "X", "ACCEPT", mark="0x10")) is None


def test_steps_keep_to_nft_order():
    r = Rule("filter", P.FORWARD, "ACCEPT", oif="netplug0", ctstate="RELATED,ESTABLISHED,DNAT")
    steps = _steps(Ops(add_rules=[r]), drop_table=False)
    texts = [_text(t) for t, _ in steps]
    assert texts[-2:] == ['add rule ip netplug NETPLUG-FORWARD oifname "netplug0" ct state related,established accept',
                          'add rule ip netplug NETPLUG-FORWARD oifname "netplug0" ct status dnat accept']
