"""Golden tests for `netplug explain` without root: fixtures were captured from real iptables and
nft output in namespaces (tests/fixtures/capture.py)."""

import json
import os

import pytest

from netplug.cli import main
from netplug.explain import analyze
from netplug.explain.detect import read_dump
from netplug.explain.render_list import render_table

G = os.path.join(os.path.dirname(__file__), "..", "fixtures", "golden")
LAYOUTS = sorted(d for d in os.listdir(G))
SAVE = [d for d in LAYOUTS if os.path.exists(os.path.join(G, d, "save"))]
EXPECTED_PORTS = {  # (proto, host_ip, host_port, target_ip, target_port, owner)
    "docker-20.10": [("tcp", "0.0.0.0", 8080, "172.17.0.2", 80, "Docker")],
    "docker-28": [("tcp", "0.0.0.0", 8080, "172.17.0.2", 80, "Docker")],
    "docker-29": [("tcp", "0.0.0.0", 8080, "172.17.0.2", 80, "Docker")],
    "docker-noproxy": [("tcp", "0.0.0.0", 8080, "172.17.0.2", 80, "Docker")],
    "netavark": [("tcp", "0.0.0.0", 8080, "10.88.0.2", 80, "podman/netavark")],
    "cni-plugins": [("tcp", "0.0.0.0", 8843, "10.88.0.3", 443, "CNI plugins")],
    "kube-proxy": [("udp", "10.96.0.10", 53, "10.244.2.2", 53, "kube-proxy"),
                   ("udp", "10.96.0.10", 53, "10.244.2.3", 53, "kube-proxy")],
    "libvirt": [],
    "netplug-iptables": [("tcp", "0.0.0.0", 8080, "172.17.0.2", 80, "netplug")],
    "netplug-iptables-legacy": [("tcp", "0.0.0.0", 8080, "172.17.0.2", 80, "netplug")],
    "netplug-nftables": [("tcp", "0.0.0.0", 8080, "172.17.0.2", 80, "netplug")],
}


def read(layout, kind):
    with open(os.path.join(G, layout, kind)) as f:
        return f.read()


def inputs(layout):
    return [k for k in ("save", "nL", "nvL", "nvL-lines", "nft", "nft.json") if os.path.exists(os.path.join(G, layout, k))]


@pytest.mark.parametrize("layout", SAVE)
@pytest.mark.parametrize("kind,kw", [("nL", {}), ("nvL", {"verbose": True}),
                                     ("nvL-lines", {"verbose": True, "linenumbers": True})])
def test_raw_equals_iptables(layout, kind, kw):
    path = os.path.join(G, layout, kind)
    if not os.path.exists(path):
        pytest.skip("not captured for this layout")
    rs = read_dump(read(layout, "save"))
    assert render_table(rs.table("nat"), **kw) == read(layout, kind)


@pytest.mark.parametrize("layout", [d for d in SAVE if os.path.exists(os.path.join(G, d, "nvL"))])
def test_raw_roundtrips_listing_input(layout):
    rs = read_dump(read(layout, "nvL"))
    assert render_table(rs.table("nat"), verbose=True) == read(layout, "nvL")


def test_cli_raw_matches(capsys):
    assert main(["explain", "--from", os.path.join(G, "docker-20.10", "save"), "--raw"]) == 0
    assert capsys.readouterr().out == read("docker-20.10", "nL")
    assert main(["explain", "--from", os.path.join(G, "docker-20.10", "save"), "--raw", "-v",
                 "--line-numbers"]) == 0
    assert capsys.readouterr().out == read("docker-20.10", "nvL-lines")


def test_protocol_names_for_1_8_10(capsys):
    main(["explain", "--from", os.path.join(G, "docker-20.10", "save"), "--raw", "--iptables-version", "1.8.10"])
    out = capsys.readouterr().out
    assert "DNAT       tcp  --  0.0.0.0/0" in out and "MASQUERADE  all  --  172.17.0.0/16" in out


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_rule_has_owner_and_explanations(layout):
    for kind in inputs(layout):
        if kind == "nft.json" or kind == "nft" or kind == "save":
            rs = read_dump(read(layout, kind))
            for lang in ("en", "zh"):
                rules = analyze.explained_rules(rs, analyze.Context(), lang)
                assert rules
                for r in rules:
                    assert r["owner"] != "unknown", (kind, r)
                    assert len(r["explanation"]) > 20, r
                    assert r["understood"], r


@pytest.mark.parametrize("layout", LAYOUTS)
def test_published_ports_summary(layout):
    for kind in inputs(layout):
        rs = read_dump(read(layout, kind))
        got = sorted((p["protocol"], p["host_ip"], p["host_port"], p["target_ip"], p["target_port"], p["owner"])
                     for p in analyze.published_ports(rs, analyze.Context()))
        assert got == sorted(EXPECTED_PORTS[layout]), kind


def test_listing_input_says_interfaces_are_unknown(capsys):
    main(["explain", "--from", os.path.join(G, "docker-20.10", "nL")])
    out = capsys.readouterr().out
    assert "hides interfaces" in out


def test_json_schema(capsys):
    assert main(["explain", "--from", os.path.join(G, "netplug-iptables", "save"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == 1
    r = doc["rules"][0]
    assert {"table", "chain", "rule", "owner", "explanation"} <= set(r)
    assert r["rule"].startswith("-A ") or r["rule"].startswith("[")
    p = doc["published_ports"][0]
    assert {"protocol", "host_ip", "host_port", "target_ip", "target_port", "owner", "container_id"} <= set(p)
    assert isinstance(doc["findings"], list)


def test_containers_named_from_ipam_store(tmp_path, capsys):
    d = tmp_path / "networks" / "testnet"
    d.mkdir(parents=True)
    (d / "172.17.0.2").write_bytes(b"3f2a9c0d1e2b4455\r\neth0")
    main(["explain", "--from", os.path.join(G, "netplug-iptables", "save"), "--data-dir",
          str(tmp_path / "networks"), "--state-dir", str(tmp_path / "none"), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["published_ports"][0]["container_id"] == "3f2a9c0d1e2b4455"
    dnat = [r for r in doc["rules"] if "DNAT" in r["rule"] and "--to-destination" in r["rule"]][0]
    assert "3f2a9c0d1e2b" in dnat["explanation"] and "testnet" in dnat["explanation"]


@pytest.mark.parametrize("text,line", [
    ("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j DNAT --to-destination 1.2.3.4:80\n", 3),
    ("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -s\n", 3),
    ("Chain PREROUTING (policy ACCEPT)\nDNAT 6 --\n", 2),
    ("table ip x {\n\tchain y {\n", 2),
    ("garbage that is no dump\n", 1),
    ("\x00\x01\x02binary\xff", 1),
])
def test_malformed_input_names_the_line(tmp_path, capsys, text, line):
    f = tmp_path / "dump"
    f.write_text(text, errors="replace") if isinstance(text, str) else f.write_bytes(text)
    assert main(["explain", "--from", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"line {line}" in err and "Traceback" not in err


def test_unknown_match_is_shown_not_dropped(tmp_path, capsys):
    f = tmp_path / "dump"
    f.write_text("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -m geoip --src-cc XX -j DNAT "
                 "--to-destination 172.17.0.9:80\nCOMMIT\n")
    assert main(["explain", "--from", str(f), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)["rules"][0]
    assert r["understood"] is False and "geoip" in r["rule"] and "not understood" in r["explanation"].lower()
    assert main(["explain", "--from", str(f), "--raw"]) == 0
    assert "geoip" in capsys.readouterr().out


def test_trace_saved_dump_outside_to_published_port(capsys):
    assert main(["explain", "--from", os.path.join(G, "docker-20.10", "save"), "--local-addr", "192.0.2.10",
                 "--trace", "tcp 203.0.113.7:40000 -> 192.0.2.10:8080 in eth0", "--json"]) == 0
    t = json.loads(capsys.readouterr().out)["trace"]
    assert t["result"]["dst"] == "172.17.0.2:80"
    assert any(s["matched"] and "DNAT" in s["rule"] for s in t["steps"])


def test_trace_container_outbound_is_masqueraded(capsys):
    main(["explain", "--from", os.path.join(G, "netplug-nftables", "nft.json"),
          "--trace", "tcp 172.17.0.2:40000 -> 203.0.113.2:80 in netplug0", "--json"])
    t = json.loads(capsys.readouterr().out)["trace"]
    assert t["result"]["src"].startswith("<address of") and any("MASQUERADE" in s["rule"] and s["matched"]
                                                               for s in t["steps"])


def test_trace_bad_packet(capsys):
    assert main(["explain", "--from", os.path.join(G, "docker-20.10", "save"), "--trace", "nonsense"]) == 2
    assert "expected e.g." in capsys.readouterr().err
