"""Exec-level protocol checks that need no root (cni-conformance.md items 1-11, issue 2 item 5)."""

import json
import os
import subprocess
import sys

import pytest

BIN = "netplug"
IPAM_BIN = "netplug-ipam"
_BIN_DIR = []


@pytest.fixture(autouse=True)
def _installed(cni_bin):
    _BIN_DIR[:] = [cni_bin]
BASE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "NETPLUG_NO_DAEMON": "1"}
ADD_ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/none",
           "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"}


def conf(**kw):
    c = {"cniVersion": "1.1.0", "name": "testnet", "type": "netplug",
         "ipam": {"type": "netplug-ipam", "ranges": [[{"subnet": "172.17.0.0/16"}]],
                  "dataDir": "/tmp/np-unit-ipam"}}
    for k, v in kw.items():
        if k == "ipam":
            c["ipam"].update(v)
        else:
            c[k] = v
    return c


def run(env, stdin, exe=BIN):
    p = subprocess.run([os.path.join(_BIN_DIR[0], exe)], input=stdin if isinstance(stdin, bytes) else stdin.encode(),
                       env={**BASE_ENV, **env}, capture_output=True, timeout=30)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def error(env, stdin, exe=BIN):
    rc, out, err = run(env, stdin, exe)
    assert rc != 0, (out, err)
    assert out.count("\n") == 1, out  # exactly one JSON object on stdout
    e = json.loads(out)
    assert isinstance(e["code"], int) and e["msg"]
    assert "Traceback" not in err
    return e


@pytest.mark.parametrize("exe", [BIN, IPAM_BIN])
def test_version(exe):  # item 1
    rc, out, err = run({"CNI_COMMAND": "VERSION"}, "", exe)
    assert rc == 0 and err == ""
    v = json.loads(out)
    assert {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} <= set(v["supportedVersions"])


def test_no_command_is_code_4():  # item 4
    assert error({}, json.dumps(conf()))["code"] == 4


def test_unknown_command():  # item 5
    e = error({"CNI_COMMAND": "FOO"}, json.dumps(conf()))
    assert e["code"] == 4 and "FOO" in e["msg"]


def test_missing_env_listed():  # item 6
    e = error({"CNI_COMMAND": "ADD", "CNI_PATH": "/x"}, json.dumps(conf()))
    assert e["code"] == 4
    for k in ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"):
        assert k in e["msg"]


@pytest.mark.parametrize("env", [{"CNI_CONTAINERID": "-bad/id"}, {"CNI_IFNAME": "a" * 16},
                                 {"CNI_IFNAME": ".."}, {"CNI_IFNAME": "a:b"}, {"CNI_IFNAME": "a b"},
                                 {"CNI_IFNAME": "a/b"}])
def test_bad_ids(env):  # item 7
    assert error({**ADD_ENV, **env}, json.dumps(conf()))["code"] == 4


@pytest.mark.parametrize("stdin", [b"not json", b"", b"[1,2]", b"\xff\xfe\x00garbage"])
def test_non_json(stdin):  # item 8
    assert error(ADD_ENV, stdin)["code"] == 6


@pytest.mark.parametrize("name", [None, "bad/name", "..", "../etc", ""])
def test_bad_network_name(name):  # item 8
    c = conf()
    if name is None:
        del c["name"]
    else:
        c["name"] = name
    assert error(ADD_ENV, json.dumps(c))["code"] == 7


@pytest.mark.parametrize("command", ["ADD", "DEL"])
def test_unknown_version(command):  # item 9
    e = error({**ADD_ENV, "CNI_COMMAND": command}, json.dumps(conf(cniVersion="9.9.9")))
    assert e["code"] == 1 and "1.1.0" in e["details"]


def test_version_too_old_for_command():  # item 10
    assert error({**ADD_ENV, "CNI_COMMAND": "CHECK"}, json.dumps(conf(cniVersion="0.3.1")))["code"] == 1
    for cmd in ("GC", "STATUS"):
        assert error({"CNI_COMMAND": cmd, "CNI_PATH": "/x"}, json.dumps(conf(cniVersion="1.0.0")))["code"] == 1


@pytest.mark.parametrize("bad", [
    {"ipam": {"dataDir": "relative/dir"}},
    {"ipam": {"dataDir": "/var/lib/../../etc"}},
    {"ipam": {"ranges": [[{"subnet": "172.17.0.1/16"}]]}},
    {"ipam": {"ranges": [[{"subnet": "172.17.0.0/16", "gateway": "10.0.0.1"}]]}},
    {"ipam": {"ranges": [[{"subnet": "172.17.0.0/32"}]]}},
    {"ipam": {"ranges": [[{"subnet": "not-a-cidr"}]]}},
    {"bridge": "br/0"},
    {"bridge": "a-very-long-bridge-name"},
    {"mtu": 10},
    {"hairpinMode": True, "promiscMode": True},
    {"firewallBackend": "pf"},
    {"stateDir": "run/netplug"},
    {"runtimeConfig": {"portMappings": [{"hostPort": 0, "containerPort": 80}]}},
    {"runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": -1}]}},
    {"runtimeConfig": {"portMappings": [{"hostPort": 70000, "containerPort": 80}]}},
    {"runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "icmp"}]}},
    {"ipam": {"type": "../../bin/sh"}},
])
def test_bad_config_is_code_7(bad):  # issue 2 item 5, checklist 29, 33
    assert error(ADD_ENV, json.dumps(conf(**bad)))["code"] == 7


def test_bad_config_messages_are_actionable():
    e = error(ADD_ENV, json.dumps(conf(ipam={"ranges": [[{"subnet": "172.17.0.1/16"}]]})))
    assert "not a network address" in e["msg"] and "172.17.0.0/16" in e["msg"]
    e = error(ADD_ENV, json.dumps(conf(ipam={"ranges": [[{"subnet": "172.17.0.0/16", "gateway": "10.0.0.1"}]]})))
    assert "outside subnet" in e["msg"]


def test_config_with_capabilities_args_and_unknown_keys_parses():  # item 11 (parse half)
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
    from netplug.cni.config import parse_netconf

    nc = parse_netconf(conf(capabilities={"portMappings": True}, args={"cni": {"labels": []}},
                            somethingNew={"x": 1}), "ADD", {})
    assert nc.name == "testnet"


def test_cni_args_malformed():
    e = error({**ADD_ENV, "CNI_ARGS": "garbage"}, json.dumps(conf()))
    assert e["code"] == 4


def test_shim_version_reply_matches_spec_module():
    from netplug.cni.skel import version_reply
    from netplug.shim import VERSION_REPLY

    assert json.loads(VERSION_REPLY) == json.loads(version_reply())


def test_shim_wire_format_roundtrip():
    from netplug.shim import decode_request, encode_request

    env = {"CNI_COMMAND": "ADD", "CNI_ARGS": "IP=1.2.3.4;X=a=b", "HOME": "/root", "NETPLUG_TEST_FAIL": "x"}
    plugin, got, stdin = decode_request(encode_request("netplug", env, b'{"a": 1}'))
    assert plugin == "netplug" and stdin == b'{"a": 1}'
    assert got == {"CNI_COMMAND": "ADD", "CNI_ARGS": "IP=1.2.3.4;X=a=b", "NETPLUG_TEST_FAIL": "x"}
