"""The published-port registry in the state dir (no root needed): claims are hard links to the
claiming attachment's record, and claims in the older per-port directories are still honoured."""

import os

from netplug.state import Attachment, StateStore
from netplug.jsonlite import dumps


def _attach(store: StateStore, owner: str, cid: str) -> None:
    store.put(Attachment(network=store.dir.rsplit("/", 1)[1], container_id=cid, ifname="eth0",
                         owner=owner, host_veth="np" + owner[:12], bridge="br0"))


def test_claim_is_a_link_to_the_record_and_names_its_holder(tmp_path):
    st = StateStore(str(tmp_path), "net1")
    _attach(st, "aaaa", "c1")
    st.claim_port("tcp", 8080, "", "aaaa")
    st.claim_port("tcp", 8080, "", "aaaa")  # listed twice: still one claim
    st.claim_port("udp", 53, "192.0.2.1", "aaaa")
    claim = tmp_path / "ports" / "tcp-8080-0.0.0.0"
    assert os.stat(claim).st_ino == os.stat(tmp_path / "net1" / "aaaa.json").st_ino
    held = st.port_holders("tcp", 8080)
    assert list(held) == ["0.0.0.0"] and (held["0.0.0.0"]["owner"], held["0.0.0.0"]["container_id"]) == ("aaaa", "c1")
    assert st.port_holders("tcp", 80) == {} and list(st.port_holders("udp", 53)) == ["192.0.2.1"]


def test_release_leaves_another_owners_claim_and_outlives_the_record(tmp_path):
    st = StateStore(str(tmp_path), "net1")
    _attach(st, "aaaa", "c1")
    st.claim_port("tcp", 8080, "", "aaaa")
    st.remove("aaaa")  # the record goes first on DEL: the claim still reads whole
    assert st.port_holders("tcp", 8080)["0.0.0.0"]["owner"] == "aaaa"
    st.release_port("tcp", 8080, "", "bbbb")
    assert list(st.port_holders("tcp", 8080)) == ["0.0.0.0"]
    st.release_port("tcp", 8080, "", "aaaa")
    assert st.port_holders("tcp", 8080) == {} and os.listdir(tmp_path / "ports") == [".flagged"]


def test_claims_in_the_older_per_port_directories_still_count(tmp_path):
    st = StateStore(str(tmp_path), "net1")
    old = tmp_path / "ports" / "tcp-8080"
    old.mkdir(parents=True)
    (old / "0.0.0.0").write_text(dumps({"owner": "cccc", "container_id": "c9", "network": "net0"}))
    assert st.port_holders("tcp", 8080)["0.0.0.0"]["container_id"] == "c9"
    st.release_port("tcp", 8080, "", "cccc")
    assert st.port_holders("tcp", 8080) == {} and not old.exists()


def test_a_claim_on_one_address_flags_its_port_until_the_last_goes(tmp_path):
    st = StateStore(str(tmp_path), "net1")
    for owner, cid in (("aaaa", "c1"), ("bbbb", "c2"), ("cccc", "c3")):
        _attach(st, owner, cid)
    st.claim_port("udp", 53, "192.0.2.1", "aaaa")
    st.claim_port("udp", 53, "192.0.2.2", "bbbb")
    assert (tmp_path / "ports" / "udp-53~ip").exists()
    assert sorted(st.port_holders("udp", 53)) == ["192.0.2.1", "192.0.2.2"]  # 0.0.0.0 meets both
    assert list(st.port_holders("udp", 53, "192.0.2.1")) == ["192.0.2.1"]  # another address: no conflict
    assert st.port_holders("udp", 53, "192.0.2.9") == {}
    st.claim_port("udp", 53, "", "cccc")  # (the plugin refuses this; the registry only records)
    assert sorted(st.port_holders("udp", 53, "192.0.2.9")) == ["0.0.0.0"]
    st.release_port("udp", 53, "192.0.2.1", "aaaa")
    assert (tmp_path / "ports" / "udp-53~ip").exists()  # 192.0.2.2 is still claimed
    st.release_port("udp", 53, "192.0.2.2", "bbbb")
    assert not (tmp_path / "ports" / "udp-53~ip").exists()
    assert list(st.port_holders("udp", 53)) == ["0.0.0.0"]


def test_claims_on_0_0_0_0_list_nothing(tmp_path, monkeypatch):
    import netplug.state as state
    st = StateStore(str(tmp_path), "net1")
    for k in range(50):  # as the plugin does: check, then claim
        _attach(st, f"o{k:03}", f"c{k}")
        assert st.port_holders("tcp", 20000 + k) == {}
        st.claim_port("tcp", 20000 + k, "", f"o{k:03}")
    listed = []
    real = state._listdir
    monkeypatch.setattr(state, "_listdir", lambda d: listed.append(d) or real(d))
    assert list(st.port_holders("tcp", 20007)) == ["0.0.0.0"] and st.port_holders("tcp", 30000) == {}
    assert str(tmp_path / "ports") not in listed  # only the older layout's per-port directory is tried


def test_claims_on_one_address_from_older_builds_get_their_flag(tmp_path):
    st = StateStore(str(tmp_path), "net1")
    _attach(st, "aaaa", "c1")
    (tmp_path / "ports").mkdir()
    os.link(tmp_path / "net1" / "aaaa.json", tmp_path / "ports" / "tcp-8080-192.0.2.1")  # no flag, no .flagged
    assert list(st.port_holders("tcp", 8080)) == ["192.0.2.1"]
    assert (tmp_path / "ports" / "tcp-8080~ip").exists() and (tmp_path / "ports" / ".flagged").exists()
