"""Attachment records on disk (no root needed): one line at the start of an ADD, a second line
with the addresses at its end, and the ends earlier builds wrote as <owner>.done still read."""

import os

import pytest

from netplug.errors import SetupError
from netplug.state import Attachment, StateStore


def _attach(store: StateStore, owner: str = "aaaa") -> None:
    store.put(Attachment(network="net1", container_id="c1", ifname="eth0", owner=owner,
                         host_veth="np" + owner, bridge="br0"))


def test_the_end_of_an_add_is_a_line_appended_to_its_record(tmp_path):
    st = StateStore(str(tmp_path), "net1")
    _attach(st)
    assert st.get("aaaa").complete is False
    st.complete("aaaa", ["172.17.0.5/16"])
    a = st.get("aaaa")
    assert (a.complete, a.ips) == (True, ["172.17.0.5/16"])
    assert sorted(os.listdir(tmp_path / "net1")) == ["aaaa.json"]  # no second file
    st.claim_port("tcp", 8080, "", "aaaa")  # the claim shares the record's inode and its end
    assert st.port_holders("tcp", 8080)["0.0.0.0"]["owner"] == "aaaa"


def test_an_end_torn_by_a_crash_leaves_the_add_unfinished(tmp_path):
    st = StateStore(str(tmp_path), "net1")
    _attach(st)
    with open(tmp_path / "net1" / "aaaa.json", "a") as f:
        f.write('\n{"ips": ["172.17')
    a = st.get("aaaa")
    assert (a.complete, a.container_id) == (False, "c1")


def test_an_end_written_by_an_earlier_build_is_read_and_cleared_by_a_new_start(tmp_path):
    st = StateStore(str(tmp_path), "net1")
    _attach(st)
    (tmp_path / "net1" / "aaaa.done").write_text('{"ips": ["172.17.0.9/16"]}')
    assert (st.get("aaaa").complete, st.get("aaaa").ips) == (True, ["172.17.0.9/16"])
    _attach(st)  # a new ADD of the same attachment starts over
    assert st.get("aaaa").complete is False and not (tmp_path / "net1" / "aaaa.done").exists()


def test_an_end_without_its_record_is_a_clear_error(tmp_path):
    st = StateStore(str(tmp_path), "net1")
    with pytest.raises(SetupError, match="vanished during its ADD"):
        st.complete("aaaa", ["172.17.0.5/16"])
