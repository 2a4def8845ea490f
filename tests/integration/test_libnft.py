"""libnftables sessions against the kernel, in throwaway namespaces: one context per operation
must still see what others commit, and must never act in a namespace it was not made in."""

import json
import os
import threading
import time

import pytest

from netplug.firewall import libnft
from netplug.netlink import ns
from netns_tools import in_ns, nsexec

pytestmark = pytest.mark.netns


def tables(ns_name):
    return nsexec(ns_name, "nft", "list", "tables").stdout.split()


def test_session_sees_what_other_writers_commit(world):
    def go():
        with libnft.session():
            with pytest.raises(libnft.NftError):
                libnft.run("list chain ip t A")
            # another writer, with a context of its own, in this namespace (a thread starts in ours)
            t = threading.Thread(target=libnft.run, args=(
                'add table ip t\nadd chain ip t A\nadd rule ip t A accept comment "first"',))
            t.start()
            t.join()
            seen = libnft.run("list chain ip t A")
            libnft.run('add rule ip t A drop comment "second"')
            rules = [o["rule"] for o in libnft.run_json("list chain ip t A") if "rule" in o]
            return seen, [r["comment"] for r in rules]

    seen, comments = in_ns(world.netns_path(world.host), go)
    assert '"first"' in seen
    assert comments == ["first", "second"]
    assert "drop" in nsexec(world.host, "nft", "list", "chain", "ip", "t", "A").stdout


def test_session_never_acts_in_a_namespace_it_was_not_made_in(world):
    c = world.container(0)
    cfd = os.open(world.netns_path(c), os.O_RDONLY)
    try:
        def go():
            with libnft.session():
                libnft.run("add table ip in_host")  # the session's context is made here
                with ns.entered(cfd):
                    libnft.run("add table ip in_container")
                libnft.run("add table ip in_host_again")

        in_ns(world.netns_path(world.host), go)
    finally:
        os.close(cfd)
    assert "in_container" in tables(c) and "in_host" not in tables(c)
    assert {"in_host", "in_host_again"} <= set(tables(world.host)) and "in_container" not in tables(world.host)


def test_deferred_close_still_deletes(world):
    """netplugd frees contexts on a background thread: the delete itself is committed before."""
    libnft._load()
    was = libnft._defer_close
    libnft.defer_close()
    try:
        def go():
            libnft.run("add table ip gone\nadd chain ip gone c { type nat hook postrouting priority srcnat; }")
            with libnft.session():
                libnft.run("list table ip gone")
                libnft.run("delete table ip gone")
            with libnft.session():
                return libnft.run("list tables ip")

        assert "gone" not in in_ns(world.netns_path(world.host), go)
        assert "gone" not in tables(world.host)
    finally:
        libnft._defer_close = was


def test_table_exists_asks_the_calling_threads_namespace(world):
    c = world.container(0)
    nsexec(world.host, "nft", "add", "table", "ip", "netplug")
    host = in_ns(world.netns_path(world.host), lambda: (libnft.table_exists("ip", "netplug"),
                                                        libnft.table_exists("ip", "other"),
                                                        libnft.table_exists("inet", "netplug")))
    assert host == (True, False, False)
    assert in_ns(world.netns_path(c), lambda: libnft.table_exists("ip", "netplug")) is False


def test_scoped_read_uses_the_raw_socket_and_nothing_without_the_table(world):
    """The nftables backend reads only the chains an ADD needs, never through libnftables (which
    would fetch every chain of the table first), and nothing at all without its table."""
    from netplug.firewall.nftables import NftBackend

    nsexec(world.host, "nft", "-f", "-", input=(
        "add table ip netplug\n"
        "add chain ip netplug POSTROUTING { type nat hook postrouting priority srcnat; }\n"
        "add chain ip netplug NETPLUG-POSTROUTING\n"
        "add chain ip netplug NETPLUG-EMPTY\n"
        'add rule ip netplug POSTROUTING jump NETPLUG-POSTROUTING comment "netplug base postrouting"\n'
        'add rule ip netplug NETPLUG-POSTROUTING ip saddr 172.17.0.0/16 masquerade comment "netplug net=a m"\n'
        "add rule ip netplug NETPLUG-POSTROUTING counter\n"))  # a foreign rule, no comment
    handles = {r["rule"].get("comment", ""): r["rule"]["handle"] for r in json.loads(nsexec(
        world.host, "nft", "-j", "list", "table", "ip", "netplug").stdout)["nftables"] if "rule" in r}
    b = NftBackend.__new__(NftBackend)
    scope = {("nat", "POSTROUTING"), ("nat", "NETPLUG-POSTROUTING"), ("nat", "NETPLUG-EMPTY"),
             ("nat", "NETPLUG-MISSING")}
    calls = []
    real_run = libnft.run
    libnft.run = lambda *a, **k: calls.append(a) or real_run(*a, **k)
    try:
        live, chains = in_ns(world.netns_path(world.host), lambda: b._list(scope))
        assert in_ns(world.netns_path(world.container(1)), lambda: b._list(scope)) == ([], set())
        _, jumped = in_ns(world.netns_path(world.host), lambda: b._list({("nat", "POSTROUTING")}))
        assert jumped == {("nat", "POSTROUTING"), ("nat", "NETPLUG-POSTROUTING")}  # a jump proves it
    finally:
        libnft.run = real_run
    assert calls == []
    assert {(r.chain, r.comment, r.ref) for r in live} == {
        ("POSTROUTING", "netplug base postrouting", handles["netplug base postrouting"]),
        ("NETPLUG-POSTROUTING", "netplug net=a m", handles["netplug net=a m"]),
        ("NETPLUG-POSTROUTING", "", handles[""])}
    assert chains == {("nat", "POSTROUTING"), ("nat", "NETPLUG-POSTROUTING"), ("nat", "NETPLUG-EMPTY")}


def test_parked_context_serves_its_namespace_only_and_is_freed_when_idle(world):
    """netplugd parks a session's context for the next session in the same namespace; an idle
    one is freed by the sweeper, so a namespace is not kept alive for long."""
    libnft._load()
    was, period = libnft._defer_close, libnft.PARK_SECONDS
    libnft.defer_close()
    libnft.PARK_SECONDS = 0.3
    c = world.container(0)

    def ctx_of_a_session():
        with libnft.session():
            libnft.run("list tables")
            return libnft._sessions[threading.get_ident()][1], libnft._netns_ino()

    try:
        first, ino = in_ns(world.netns_path(world.host), ctx_of_a_session)
        assert libnft._parked[ino][0] == first
        again, _ = in_ns(world.netns_path(world.host), ctx_of_a_session)
        assert again == first  # reused: no new context, no socket closed
        other, other_ino = in_ns(world.netns_path(c), ctx_of_a_session)
        assert other != first and other_ino != ino
        in_ns(world.netns_path(c), lambda: libnft.run("add table ip mine"))
        assert "mine" in tables(c) and "mine" not in tables(world.host)
        deadline = time.monotonic() + 5
        while (ino in libnft._parked or other_ino in libnft._parked) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ino not in libnft._parked and other_ino not in libnft._parked
    finally:
        libnft._defer_close, libnft.PARK_SECONDS = was, period
