import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from netns_tools import NS_PREFIX, World, netns_list  # noqa: E402

IS_ROOT = os.geteuid() == 0


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs root (network namespaces)")
    for item in items:
        if "netns" in item.keywords and not IS_ROOT:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def cni_bin(tmp_path_factory):
    """The plugin executables, installed the way a user installs them."""
    d = tmp_path_factory.mktemp("cni-bin")
    exe = os.path.join(os.path.dirname(sys.executable), "netplug")
    subprocess.run([exe, "install", "--cni-bin-dir", str(d)], check=True, capture_output=True)
    return str(d)


@pytest.fixture
def world(tmp_path, cni_bin):
    w = World(tmp_path, cni_bin)
    try:
        yield w
    finally:
        w.close()


def _root_ns_state() -> str:
    """What the tests must never change: the root namespace's links, routes, rules, forwarding."""
    run = lambda *c: subprocess.run(list(c), capture_output=True, text=True).stdout  # noqa: E731
    return "\n".join([run("ip", "-br", "link"), run("ip", "route"), run("nft", "list", "ruleset"),
                      open("/proc/net/ip_tables_names").read(),
                      open("/proc/sys/net/ipv4/ip_forward").read()])


@pytest.fixture(autouse=True, scope="session")
def root_namespace_untouched():
    before = _root_ns_state() if IS_ROOT else ""
    yield
    if IS_ROOT:
        assert _root_ns_state() == before, "a test changed the root network namespace"


@pytest.fixture(autouse=True, scope="session")
def no_leaked_namespaces():
    before = {n for n in netns_list() if n.startswith(NS_PREFIX)} if IS_ROOT else set()
    yield
    if IS_ROOT:
        leaked = {n for n in netns_list() if n.startswith(NS_PREFIX)} - before
        for n in leaked:
            subprocess.run(["ip", "netns", "del", n])
        assert not leaked, f"tests leaked namespaces: {leaked}"
