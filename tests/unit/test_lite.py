"""The exec path's stand-ins for stdlib modules (record, jsonlite, name checks) behave like
what they replace, and the exec'd plugin really stays off the heavy imports."""

import json
import os
import re
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netplug import jsonlite
from netplug.cni.config import _valid_mac
from netplug.cni.env import valid_name
from netplug.record import asdict, field, record

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# --- record ---------------------------------------------------------------------------------------

@record
class Box:
    name: str
    size: int = 1
    tags: list = field(default_factory=list)


@record(frozen=True)
class Key:
    a: str
    b: int = 0


def test_record_init_defaults_and_factories():
    x, y = Box("a"), Box("b", 2, tags=["t"])
    assert (x.name, x.size, x.tags) == ("a", 1, [])
    assert (y.name, y.size, y.tags) == ("b", 2, ["t"])
    x.tags.append(1)
    assert Box("c").tags == []  # a fresh list per instance
    assert Box(size=3, name="k").size == 3


def test_record_argument_errors():
    with pytest.raises(TypeError, match="missing argument 'name'"):
        Box()
    with pytest.raises(TypeError, match="multiple values"):
        Box("a", name="b")
    with pytest.raises(TypeError, match="unexpected"):
        Box("a", colour="red")
    with pytest.raises(TypeError, match="takes 3"):
        Box("a", 1, [], 4)


def test_record_eq_repr_hash():
    assert Box("a") == Box("a") and Box("a") != Box("b")
    assert repr(Box("a")) == "Box(name='a', size=1, tags=[])"
    with pytest.raises(TypeError):
        hash(Box("a"))  # mutable records are unhashable, as dataclasses are
    assert len({Key("x"), Key("x"), Key("x", 1)}) == 2
    k = Key("x")
    with pytest.raises(AttributeError):
        k.a = "y"
    with pytest.raises(AttributeError):
        del k.a


def test_record_asdict_copies_deeply():
    b = Box("a", tags=[{"k": [1]}])
    d = asdict(b)
    assert d == {"name": "a", "size": 1, "tags": [{"k": [1]}]}
    d["tags"][0]["k"].append(2)
    assert b.tags == [{"k": [1]}]


# --- jsonlite -------------------------------------------------------------------------------------

def _outcome(fn, arg):
    try:
        return "ok", repr(fn(arg))  # repr: NaN != NaN
    except RecursionError:
        return "recursion", None
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        return type(e).__name__, str(e)


@pytest.mark.parametrize("text", [
    '{"a": [1, 2.5, -3e5, true, false, null, "x\\u00e9"]}', " [] ", '"s"', '{"a":1} x', "", "  ",
    '{"a":', "[1,]", "\ufeff{}", '{"a": NaN}', "1 2", '{"a":1}\n\n', '{"a" 1}',
    b'{"k": "\xc3\xa9"}', b"\xef\xbb\xbf{}", b"\xff\xfe{\x00}\x00", b"\x80abc", "[" * 100000,
])
def test_jsonlite_loads_matches_json(text):
    assert _outcome(jsonlite.loads, text) == _outcome(json.loads, text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(json_values, st.booleans())
def test_jsonlite_dumps_and_loads_match_json(value, sort_keys):
    text = json.dumps(value, sort_keys=sort_keys)
    assert jsonlite.dumps(value, sort_keys=sort_keys) == text
    assert repr(jsonlite.loads(text)) == repr(json.loads(text))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_jsonlite_loads_matches_json_on_any_text(text):
    assert _outcome(jsonlite.loads, text) == _outcome(json.loads, text)


def test_jsonlite_dumps_refuses_what_json_refuses():
    with pytest.raises(TypeError, match="not JSON serializable"):
        jsonlite.dumps({"a": object()})


# --- name checks that replaced regular expressions --------------------------------------------------

NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from("aZ09_.-/ :\n\té"), max_size=12))
def test_valid_name_is_the_cni_name_pattern(s):
    assert valid_name(s) == bool(NAME_RE.fullmatch(s))


@pytest.mark.parametrize("mac,ok", [("0a:58:ac:11:00:02", True), ("0A:58:AC:11:00:02", True),
                                    ("0a:58:ac:11:00", False), ("0a:58:ac:11:00:0g", False),
                                    ("0a-58-ac-11-00-02", False), ("0a:58:ac:11:00:002", False), (5, False)])
def test_valid_mac(mac, ok):
    assert _valid_mac(mac) is ok


# --- the exec path stays light ---------------------------------------------------------------------

HEAVY = ("pyroute2", "logging", "dataclasses", "json", "re", "subprocess", "typing", "hashlib",
         "socket", "asyncio", "iptc", "scapy")


def test_exec_path_imports_none_of_the_heavy_modules():
    """What an in-process ADD imports (all of it: config, IPAM, netlink, nftables backend) must
    leave out the modules that made an exec cost 380 ms. Import-only: no kernel is touched."""
    code = ("import sys\n"
            "from netplug.shim import run\n"
            "from netplug.cni import skel, config, env, result\n"
            "from netplug.plugin import bridge, ipam_plugin\n"
            "from netplug.firewall import nftables, libnft, backend, plan, iptables_nft\n"
            "from netplug.netlink import link, rtnl, ns, sysctl\n"
            "from netplug.ipam import local, delegate\n"
            "from netplug import state, locking, log, jsonlite\n"
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", f"import sys; sys.path[:0] = [{REPO!r}]\n" + code],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == []


def test_shim_forward_path_imports_no_os():
    """The exec'd shim's own import (all the forwarded and VERSION paths need) leaves out `os`,
    whose import builds the collections ABCs: ~2.5 ms of every exec here."""
    code = f"import sys; sys.path[:0] = [{REPO!r}]\nimport netplug.shim\nprint('os' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_installed_plugin_loads_only_the_shim(cni_bin):
    """The installed plugin file loads netplug/shim.py by file name: neither the `netplug`
    package (a sys.path search and its __init__) nor `os` is imported before the reply."""
    script = os.path.join(cni_bin, "netplug")
    with open(script) as f:
        python = f.readline()[2:].split()[0]
    p = subprocess.run([python, "-IS", "-X", "importtime", script], capture_output=True, text=True,
                       env={"CNI_COMMAND": "VERSION"}, timeout=30)
    assert p.returncode == 0 and '"supportedVersions"' in p.stdout
    imported = {line.split("|")[-1].strip() for line in p.stderr.splitlines() if "|" in line}
    assert "encodings" in imported  # the listing was read (the interpreter's own imports)
    assert not {"netplug", "os", "json", "socket"} & imported, imported


def test_installed_plugin_starts_from_its_own_prefix(cni_bin):
    """The plugins' interpreter runs from <venv>/netplug-plugin-python, whose first sys.path
    entry holds `encodings` alone: Python's start finds it there without listing the stdlib.
    The stdlib, C extensions and the venv's packages resolve as with the venv's interpreter."""
    with open(os.path.join(cni_bin, "netplug")) as f:
        python = f.readline()[2:].split()[0]
    assert python == os.path.join(sys.prefix, "netplug-plugin-python", "bin", "python3")
    code = ("import sys, os, encodings, json, ctypes, sysconfig\n"
            "print(os.listdir(sys.path[0]), encodings.__file__.startswith(sys.path[0]),"
            " os.path.realpath(sys.path[1]) == os.path.realpath(sysconfig.get_paths()['stdlib']))")
    out = subprocess.run([python, "-IS", "-c", code], capture_output=True, text=True, env={}, check=True)
    assert out.stdout.split() == ["['encodings']", "True", "True"], out


def test_install_with_another_interpreter_names_it_as_is(tmp_path):
    from netplug.install import shim_text, plugin_python

    assert plugin_python("/usr/bin/python3") == "/usr/bin/python3"
    assert shim_text("netplug", "/usr/bin/python3").startswith("#!/usr/bin/python3 -IS\n")
