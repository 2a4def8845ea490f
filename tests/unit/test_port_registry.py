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
    assert st.port_holders("tcp", 8080) == {} and os.listdir(tmp_path / "ports") == []


def test_claims_in_the_older_per_port_directories_still_count(tmp_path):
    st = StateStore(str(tmp_path), "net1")
    old = tmp_path / "ports" / "tcp-8080"
    old.mkdir(parents=True)
    (old / "0.0.0.0").write_text(dumps({"owner": "cccc", "container_id": "c9", "network": "net0"}))
    assert st.port_holders("tcp", 8080)["0.0.0.0"]["container_id"] == "c9"
    st.release_port("tcp", 8080, "", "cccc")
    assert st.port_holders("tcp", 8080) == {} and not old.exists()
