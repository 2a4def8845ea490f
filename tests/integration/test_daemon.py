"""netplugd: same results as in-process, served in the caller's namespace, root-only socket."""

import concurrent.futures as cf
import os
import shutil
import stat
import subprocess
import tempfile

import pytest
from netns_tools import Daemon, netplug_conf, nsexec

pytestmark = pytest.mark.netns


@pytest.fixture
def daemon(world):
    return Daemon(world)


def test_daemon_serves_in_callers_netns(world, daemon):
    world.add_outside()
    conf = netplug_conf(world, runtimeConfig={"portMappings": [{"hostPort": 8080, "containerPort": 80}]})
    c1 = world.container(1)
    r = world.cni("ADD", conf, "c1", c1, env=daemon.env)
    assert r.rc == 0, r
    assert "NETPLUG-DN" in nsexec(world.host, "nft", "list", "ruleset").stdout
    assert nsexec(daemon.ns, "nft", "list", "ruleset").stdout.strip() == ""
    assert "netplug0" in nsexec(world.host, "ip", "-br", "link").stdout
    assert "netplug0" not in nsexec(daemon.ns, "ip", "-br", "link").stdout
    world.serve(c1, 80)
    assert world.ask(world.outside, world.uplink_ip, 8080) == world.peer_ip
    ok = world.cni("CHECK", dict(conf, prevResult=r.json), "c1", c1, env=daemon.env)
    assert ok.rc == 0 and ok.out == "", ok
    # the in-process path gives the same result for the same request
    c2 = world.container(2)
    conf2 = netplug_conf(world)
    a = world.cni("ADD", conf2, "c2", c2, env=daemon.env).json
    assert world.cni("DEL", conf2, "c2", c2, env=daemon.env).rc == 0
    b = world.cni("ADD", conf2, "c2", c2).json
    strip = lambda res: [(i["name"], i.get("sandbox")) for i in res["interfaces"]] + [res["routes"]]  # noqa: E731
    assert strip(a) == strip(b) and a["ips"][0].keys() == b["ips"][0].keys()
    for cid, ns in (("c1", c1), ("c2", c2)):
        assert world.cni("DEL", conf, cid, ns, env=daemon.env).rc == 0
    assert nsexec(world.host, "nft", "list", "ruleset").stdout.strip() == ""


def test_daemon_errors_are_cni_errors(world, daemon):
    r = world.cni("ADD", "not json", "c1", world.container(1), env=daemon.env)
    assert r.rc == 1 and r.json["code"] == 6


def test_socket_is_root_only(world, tmp_path_factory):
    d = tempfile.mkdtemp(prefix="np-sock-")
    try:
        os.chmod(d, 0o755)
        daemon = Daemon(world, socket_dir=d)
        st = os.stat(daemon.socket)
        assert stat.S_IMODE(st.st_mode) & 0o077 == 0 and st.st_uid == 0
        # even if an admin loosens the file mode, the daemon checks the peer's credentials
        os.chmod(daemon.socket, 0o666)
        # the daemon answers before reading the request, and may have closed by the time it is
        # sent: that send then fails (EPIPE), and the answer is still there to read
        script = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n"
                  "try:\n    s.sendall(b'x')\nexcept BrokenPipeError:\n    pass\n"
                  "print(s.recv(4096)[4:].decode())\n")
        out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              "/usr/bin/python3", "-c", script, daemon.socket], capture_output=True, text=True)
        assert "root only" in out.stdout, out
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_fallback_when_daemon_dies(world, daemon):
    daemon.proc.kill()
    daemon.proc.wait()
    r = world.cni("ADD", netplug_conf(world), "c1", world.container(1), env=daemon.env)
    assert r.rc == 0, r


def test_sigterm_stops_cleanly(world, daemon):
    """systemd stops the unit with SIGTERM: the daemon leaves and takes its socket with it."""
    daemon.proc.terminate()
    assert daemon.proc.wait(10) == 0
    assert not os.path.exists(daemon.socket)
    r = world.cni("ADD", netplug_conf(world), "c1", world.container(1), env=daemon.env)
    assert r.rc == 0, r  # served in-process


@pytest.mark.parametrize("backend", ["nftables", "iptables", "iptables-legacy"])
def test_200_containers_each_published(world, daemon, backend):  # issue 3 acceptance 5
    world.add_outside()
    n = 200
    nss = [world.container(i) for i in range(n)]
    confs = [netplug_conf(world, backend=backend,
                          runtimeConfig={"portMappings": [{"hostPort": 20000 + i, "containerPort": 80}]})
             for i in range(n)]
    with cf.ThreadPoolExecutor(4) as ex:
        adds = list(ex.map(lambda i: world.cni("ADD", confs[i], f"k{i}", nss[i], env=daemon.env), range(n)))
    assert all(r.rc == 0 for r in adds), [r for r in adds if r.rc][:3]
    assert len({r.json["ips"][0]["address"] for r in adds}) == n
    world.serve_many(nss, 80)
    seen = world.ask_many(world.outside, world.uplink_ip, [20000 + i for i in range(n)])
    assert seen == [world.peer_ip] * n
    with cf.ThreadPoolExecutor(4) as ex:
        dels = list(ex.map(lambda i: world.cni("DEL", confs[i], f"k{i}", nss[i], env=daemon.env), range(n)))
    assert all(r.rc == 0 for r in dels), [r for r in dels if r.rc][:3]
    rules = nsexec(world.host, "nft", "list", "ruleset").stdout + \
        nsexec(world.host, "iptables-legacy-save", check=False).stdout
    assert "NETPLUG" not in rules and "netplug" not in rules
    assert [f for f in os.listdir(os.path.join(world.tmp, "ipam", "testnet")) if f[0].isdigit()] == []
    assert not [l for l in nsexec(world.host, "ip", "-br", "link").stdout.splitlines() if l.startswith("np")]
