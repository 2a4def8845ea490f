"""The pure allocator and the disk store, without root."""

import ipaddress
import os

import pytest

from netplug.cni.config import parse_netconf, parse_range
from netplug.errors import NetplugError
from netplug.ipam import allocator, local
from netplug.ipam.store import DiskStore

ip = ipaddress.ip_address


def rset(*specs):
    return [parse_range(s) for s in specs]


def test_round_robin_skips_gateway_and_wraps():
    r = rset({"subnet": "172.17.0.0/29"})  # .1 gateway, .2-.6 usable
    assert [str(x) for x in allocator.iterate(r, None)] == ["172.17.0.2", "172.17.0.3", "172.17.0.4",
                                                          "172.17.0.5", "172.17.0.6"]
    assert [str(x) for x in allocator.iterate(r, ip("172.17.0.4"))] == ["172.17.0.5", "172.17.0.6",
                                                                        "172.17.0.2", "172.17.0.3", "172.17.0.4"]


def test_multiple_ranges_in_a_set():
    r = rset({"subnet": "172.17.1.0/30"}, {"subnet": "172.17.2.0/30"})
    assert [str(x) for x in allocator.iterate(r, ip("172.17.1.2"))] == ["172.17.2.2", "172.17.1.2"]  # .1 is each range's gateway


def test_allocate_exhaustion_and_release():
    s = allocator.MemoryStore()
    ranges = [rset({"subnet": "172.17.5.0/30"})]
    got = allocator.allocate(s, ranges, "a", "eth0")
    assert str(got[0][0]) == "172.17.5.2"
    with pytest.raises(allocator.ExhaustedError) as e:
        allocator.allocate(s, ranges, "b", "eth0")
    assert "172.17.5.1-172.17.5.2" in e.value.msg and e.value.code == 11
    with pytest.raises(NetplugError):
        allocator.allocate(s, ranges, "a", "eth0")  # duplicate
    s.release_owner("a", "eth0")
    assert str(allocator.allocate(s, ranges, "b", "eth0")[0][0]) == "172.17.5.2"


def test_static_requests():
    s = allocator.MemoryStore()
    ranges = [rset({"subnet": "172.17.0.0/24"})]
    assert str(allocator.allocate(s, ranges, "a", "eth0", [ip("172.17.0.50")])[0][0]) == "172.17.0.50"
    for bad in ("172.17.0.50", "172.17.0.1", "10.0.0.1"):
        with pytest.raises(NetplugError):
            allocator.allocate(s, ranges, f"x{bad}", "eth0", [ip(bad)])


def conf(tmp_path, **ipam):
    c = {"cniVersion": "1.1.0", "name": "n", "type": "netplug",
         "ipam": {"type": "netplug-ipam", "ranges": [[{"subnet": "172.17.0.0/29"}]], "dataDir": str(tmp_path)}}
    c["ipam"].update(ipam)
    return c


def test_disk_store_format_and_gc_keeps_what_it_must(tmp_path):
    nc = parse_netconf(conf(tmp_path), "GC", {})
    local.add(nc, "keep", "eth0")
    local.add(nc, "gone", "eth0")
    d = tmp_path / "n"
    (d / "172.17.0.6").write_text("oldstyle")  # an old host-local file: ID only
    (d / ".tmp-172.17.0.5.99").write_text("x")  # a crash between write and link
    assert (d / "172.17.0.2").read_bytes() == b"keep\r\neth0"
    local.gc(nc, {("keep", "eth0"), ("oldstyle", "eth1")})
    names = sorted(os.listdir(d))
    assert names == ["172.17.0.2", "172.17.0.6", "last_reserved_ip.0", "lock"]


def test_disk_store_reservation_is_atomic(tmp_path):
    s = DiskStore(str(tmp_path), "n")
    with s.locked():
        assert s.reserve(ip("172.17.0.2"), "a", "eth0", 0)
        assert not s.reserve(ip("172.17.0.2"), "b", "eth0", 0)  # link() refuses: O_EXCL semantics
    assert s.owner_of(ip("172.17.0.2")) == ("a", "eth0")
    assert not [n for n in os.listdir(tmp_path / "n") if n.startswith(".tmp")]


def test_status_unusable_backend_is_code_50(tmp_path, monkeypatch):
    from netplug.cni.env import Request
    from netplug.firewall import backend as fwb
    from netplug.plugin import bridge

    class Broken(fwb.Backend):
        name = "nftables"

        def unavailable(self):
            return "libnftables is not installed"

    monkeypatch.setattr(fwb, "choose", lambda *a: Broken(str(tmp_path / "state")))
    nc = parse_netconf(dict(conf(tmp_path), ipMasq=True, stateDir=str(tmp_path / "state")), "STATUS", {})
    with pytest.raises(NetplugError) as e:
        bridge.status(Request("STATUS"), nc)
    assert e.value.code == 50 and "not usable" in e.value.msg
