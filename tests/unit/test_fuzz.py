"""Property-based tests: any input gives a CNI error (plugin) or a clear message (explain),
never a traceback or a hang."""

import json
import os
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netplug.cni.config import parse_json, parse_netconf
from netplug.cni.env import parse_cni_args, parse_env
from netplug.cni.skel import dispatch
from netplug.errors import NetplugError
from netplug.explain.detect import read_dump
from netplug.explain.model import ParseError

SETTINGS = settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                           max_leaves=12)
KEYS = ["cniVersion", "name", "type", "bridge", "isGateway", "isDefaultGateway", "forceAddress", "mtu",
        "hairpinMode", "promiscMode", "ipMasq", "firewallBackend", "dns", "runtimeConfig", "args",
        "prevResult", "cni.dev/valid-attachments", "ipam"]
IPAM_KEYS = ["type", "ranges", "subnet", "rangeStart", "rangeEnd", "gateway", "routes", "resolvConf"]


@st.composite
def configs(draw):
    c = {"cniVersion": draw(st.sampled_from(["1.1.0", "1.0.0", "0.4.0", "0.3.1", "9.9", ""])) ,
         "name": draw(st.text(max_size=12) | st.just("net"))}
    for k in draw(st.lists(st.sampled_from(KEYS), max_size=6)):
        c[k] = draw(json_values)
    if draw(st.booleans()):
        ipam = {"type": "netplug-ipam", "ranges": [[{"subnet": draw(st.sampled_from(
            ["172.17.0.0/16", "172.17.0.1/16", "10.0.0.0/31", "nonsense", "::/0"]))}]]}
        for k in draw(st.lists(st.sampled_from(IPAM_KEYS), max_size=3)):
            ipam[k] = draw(json_values)
        c["ipam"] = ipam
    return c


@SETTINGS
@given(configs(), st.sampled_from(["ADD", "DEL", "CHECK", "GC", "STATUS"]),
       st.dictionaries(st.sampled_from(["IP", "MAC", "IgnoreUnknown", "X"]), st.text(max_size=20), max_size=3))
def test_netconf_parse_never_crashes(conf, command, args):
    try:
        parse_netconf(conf, command, args)
    except NetplugError:
        pass


@SETTINGS
@given(st.text(alphabet=string.printable, max_size=80))
def test_cni_args_parse_never_crashes(text):
    try:
        parse_cni_args(text)
    except NetplugError:
        pass


@SETTINGS
@given(st.dictionaries(st.sampled_from(["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME",
                                        "CNI_ARGS", "CNI_PATH"]),
                       st.text(max_size=30) | st.sampled_from(["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION"]),
                       max_size=6))
def test_env_parse_never_crashes(env):
    try:
        parse_env(env)
    except NetplugError:
        pass


@SETTINGS
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode) | configs().map(lambda c: json.dumps(c).encode()))
def test_dispatch_always_answers_json(tmp_path_factory, stdin):
    # CNI_NETNS does not exist, so even a valid ADD stops before touching the kernel
    d = str(tmp_path_factory.getbasetemp())
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/nonexistent/netns",
           "CNI_IFNAME": "eth0", "CNI_PATH": "/nonexistent"}
    try:
        conf = json.loads(stdin)
        if isinstance(conf, dict):
            conf["stateDir"] = os.path.join(d, "state")
            if isinstance(conf.get("ipam"), dict):
                conf["ipam"]["dataDir"] = os.path.join(d, "ipam")
            stdin = json.dumps(conf).encode()
    except (ValueError, UnicodeDecodeError):
        pass
    out, rc = dispatch(env, stdin)
    doc = json.loads(out)
    assert rc == 1 and isinstance(doc["code"], int) and doc["code"] != 999, doc


@SETTINGS
@given(st.text(max_size=400) | st.builds(lambda a, b: a + b,
                                           st.sampled_from(["*nat\n", "Chain X (policy ACCEPT)\n", "table ip t {\n",
                                                            '{"nftables": [', ":X - [0:0]\n"]),
                                           st.text(max_size=300)))
def test_explain_parser_never_crashes(text):
    try:
        read_dump(text)
    except ParseError as e:
        assert str(e).startswith("line ")


def test_parse_json_rejects_non_objects():
    for bad in (b"[]", b"1", b'"x"', b"null"):
        try:
            parse_json(bad)
        except NetplugError as e:
            assert e.code == 6
