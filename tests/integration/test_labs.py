"""Every lab, on every firewall backend: up, probes on the wire, check, down, nothing left."""

import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest
from netns_tools import netns_list

pytestmark = pytest.mark.netns
NETPLUG = os.path.join(os.path.dirname(sys.executable), "netplug")
BACKENDS = ["nftables", "iptables", "iptables-legacy"]


def lab(*args, check=True, **kw):
    p = subprocess.run([NETPLUG, "lab", *args], capture_output=True, text=True, **kw)
    if check:
        assert p.returncode == 0, p
    return p


def lab_namespaces():
    return {n for n in netns_list() if n.startswith("lab-")}


@pytest.fixture(autouse=True)
def clean():
    assert not lab_namespaces(), "a lab is already up on this machine; tests would disturb it"
    yield
    lab("down", "--all")
    assert not lab_namespaces()


@pytest.mark.parametrize("backend", BACKENDS)
def test_bridge_lab(backend):
    lab("up", "bridge", "--backend", backend)
    out = lab("check", "bridge").stdout
    assert out.count("PASS") == 3 and "FAIL" not in out
    pic = lab("show", "bridge").stdout
    assert "netplug0" in pic and "lab-bridge-c1" in pic and "veth pair" in pic


@pytest.mark.parametrize("backend", BACKENDS)
def test_masquerade_lab_observed_on_the_wire(backend):
    lab("up", "masquerade", "--backend", backend)
    assert "FAIL" not in lab("check", "masquerade").stdout
    out = lab("probe", "masquerade").stdout
    sent, seen = out.splitlines()[-1].split()[0:3], out.splitlines()[-1].split()[3:]
    assert sent[0].startswith("172.17.0.2:") and seen[0].startswith("203.0.113.1:"), out


@pytest.mark.parametrize("backend", BACKENDS)
def test_publish_lab_dnat_and_trace_agree(backend):
    lab("up", "publish", "--backend", backend)
    assert "FAIL" not in lab("check", "publish").stdout
    out = lab("probe", "publish").stdout
    last = out.splitlines()[-1].split()
    assert last[2] == "203.0.113.1:49153" and last[5] == "172.17.0.2:80", out
    tr = subprocess.run([NETPLUG, "explain", "--netns", "lab-publish-host", "--state-dir",
                         "/run/netplug-lab/publish/state", "--trace",
                         "tcp 203.0.113.2:40000 -> 203.0.113.1:49153 in up0"], capture_output=True, text=True)
    assert "-> 172.17.0.2:80" in tr.stdout.splitlines()[-1], tr


@pytest.mark.parametrize("backend", BACKENDS)
def test_publish_all_lab_uses_ephemeral_ports(backend):
    out = lab("up", "publish-all", "--backend", backend).stdout
    assert "203.0.113.1:32768->80/tcp" in out and "203.0.113.1:32769->8443/tcp" in out, out
    assert "FAIL" not in lab("check", "publish-all").stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_troubleshoot_lab_broken_then_repaired(backend):
    from netplug.lab.labs import repair_commands

    lab("up", "troubleshoot", "--backend", backend)
    before = lab("check", "troubleshoot", check=False)
    assert before.returncode == 1 and before.stdout.count("FAIL") >= 4
    diag = subprocess.run([NETPLUG, "explain", "--netns", "lab-troubleshoot-host", "--state-dir",
                           "/run/netplug-lab/troubleshoot/state", "--check"], capture_output=True, text=True)
    assert diag.returncode == 1
    for code in ("forwarding-off", "no-masquerade", "stale-dnat", "no-hairpin"):
        assert code in diag.stdout, diag.stdout
    # repair as a student would, with the commands the lab page gives
    for cmd in repair_commands(backend):
        if cmd.startswith("nft -a list chain ip netplug NETPLUG-HOSTPORTS"):
            listing = subprocess.run(["ip", "netns", "exec", "lab-troubleshoot-host", "nft", "-a", "list",
                                      "chain", "ip", "netplug", "NETPLUG-HOSTPORTS"], capture_output=True,
                                     text=True).stdout
            handle = next(l.split("# handle ")[1] for l in listing.splitlines() if "49200" in l)
            cmd = f"nft delete rule ip netplug NETPLUG-HOSTPORTS handle {handle}"
        subprocess.run(["ip", "netns", "exec", "lab-troubleshoot-host", "sh", "-c", cmd], check=True)
    after = lab("check", "troubleshoot", check=False)
    assert after.returncode == 0 and "FAIL" not in after.stdout, after.stdout


def test_show_svg_parses(tmp_path):
    lab("up", "publish")
    f = tmp_path / "t.svg"
    lab("show", "publish", "--svg", str(f))
    root = ET.parse(f).getroot()
    assert root.tag.endswith("svg")
    texts = " ".join(t.text or "" for t in root.iter() if t.tag.endswith("text"))
    assert "172.17.0.2" in texts and "49153" in texts


def test_one_line_errors():
    p = lab("up", "no-such-lab", check=False)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "unknown lab" in p.stderr
    lab("up", "bridge")
    p = lab("up", "bridge", check=False)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "already up" in p.stderr
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", NETPLUG, "lab", "up",
                        "bridge"], capture_output=True, text=True)
    assert p.returncode == 2 and "root" in p.stderr and "Traceback" not in p.stderr


def test_down_all_after_kill_9_in_the_middle_of_up():
    p = subprocess.Popen([NETPLUG, "lab", "up", "troubleshoot"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while time.time() < deadline and not any(n.endswith("-c1") for n in lab_namespaces()):
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert lab_namespaces()
    lab("down", "--all")
    assert not lab_namespaces() and not os.path.exists("/run/netplug-lab")
