"""netplugd: same results as in-process, served in the caller's namespace, root-only socket."""

import concurrent.futures as cf
import json
import os
import shutil
import stat
import subprocess
import tempfile
import time

import pytest
from netns_tools import Daemon, netplug_conf, nsexec

from netplug.shim import ACK_TIMEOUT, PIPE_BUF, decode_frame, decode_request, encode_frame, encode_request, fifo_path

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


def _fifo(socket_path):
    return fifo_path(socket_path, os.stat("/proc/self/ns/pid").st_ino)


def _log(path):
    with open(path) as f:
        return f.read()


def test_plugin_reaches_daemon_over_fifo_or_socket(world):
    """Callers in the daemon's pid namespace come over its root-only FIFO; a request too long for
    one atomic write comes over the socket; the results are the same."""
    log_file = os.path.join(world.tmp, "netplugd.log")
    daemon = Daemon(world, log_file=log_file)
    st = os.stat(_fifo(daemon.socket))
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    conf = netplug_conf(world)
    c1 = world.container(1)
    r = world.cni("ADD", conf, "c1", c1, env=daemon.env)
    assert r.rc == 0, r
    assert "netplug0" in nsexec(world.host, "ip", "-br", "link").stdout
    assert "netplug ADD for pid" in _log(log_file) and "served over the FIFO" in _log(log_file)
    long = dict(conf, prevResult=r.json, padding="x" * PIPE_BUF)
    assert world.cni("CHECK", long, "c1", c1, env=daemon.env).rc == 0
    assert "netplug CHECK: served over the socket" in _log(log_file)
    assert world.cni("DEL", conf, "c1", c1, env=daemon.env).rc == 0
    assert "netplug DEL for pid" in _log(log_file)
    for _ in range(8):  # each one served by the daemon, none fell back to in-process
        assert world.cni("ADD", conf, "c1", c1, env=daemon.env).rc == 0
        assert world.cni("DEL", conf, "c1", c1, env=daemon.env).rc == 0
    assert _log(log_file).count("served over the FIFO") == 2 + 16
    daemon.proc.terminate()
    assert daemon.proc.wait(10) == 0
    assert not os.path.exists(_fifo(daemon.socket)) and not os.path.exists(daemon.socket)


def test_fifo_without_a_daemon_is_passed_by(world):
    """A FIFO left by a killed daemon has no reader: the plugin does the work itself, at once."""
    sock = os.path.join(world.tmp, "gone.sock")
    os.mkfifo(_fifo(sock), 0o600)
    t0 = time.monotonic()
    r = world.cni("ADD", netplug_conf(world), "c1", world.container(1),
                  env={"NETPLUG_SOCKET": sock, "NETPLUG_NO_DAEMON": ""})
    assert r.rc == 0, r
    assert time.monotonic() - t0 < ACK_TIMEOUT


def test_unacknowledged_fifo_request_is_done_in_process(world):
    """A reader that never takes the request (a daemon hung or gone with requests queued)
    costs ACK_TIMEOUT, then the plugin does the work itself; it never hangs."""
    sock = os.path.join(world.tmp, "hung.sock")
    fifo = _fifo(sock)
    os.mkfifo(fifo, 0o600)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        t0 = time.monotonic()
        r = world.cni("ADD", netplug_conf(world), "c1", world.container(1),
                      env={"NETPLUG_SOCKET": sock, "NETPLUG_NO_DAEMON": ""})
        took = time.monotonic() - t0
        assert r.rc == 0 and r.json["ips"], r
        assert ACK_TIMEOUT <= took < ACK_TIMEOUT + 10
        frame = os.read(reader, 65536)
        assert len(frame) == PIPE_BUF  # one frame, padded to the size every read takes
        _, _, _, request = decode_frame(frame[4:4 + int.from_bytes(frame[:4], "big")])
        plugin, env, _ = decode_request(request)
        assert plugin == "netplug" and env["CNI_COMMAND"] == "ADD" and env["CNI_CONTAINERID"] == "c1"
    finally:
        os.close(reader)


def test_daemon_acts_only_for_the_holder_of_the_named_pipe(world):
    """The FIFO names a pid and a pipe: a frame whose pid does not hold that pipe, or whose
    process is not root, gets no answer and changes nothing."""
    log_file = os.path.join(world.tmp, "netplugd.log")
    daemon = Daemon(world, log_file=log_file)
    conf = netplug_conf(world)
    c1 = world.container(1)
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "x1", "CNI_IFNAME": "eth0", "CNI_NETNS": world.netns_path(c1)}
    request = encode_request("netplug", env, json.dumps(conf).encode())
    r, w = os.pipe()
    nobody = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3",
                               "-c", "import os,sys\nr,w=os.pipe()\nprint(w, os.fstat(w).st_ino, flush=True)\n"
                               "sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        nfd, nino = map(int, nobody.stdout.readline().split())
        fifo = os.open(_fifo(daemon.socket), os.O_WRONLY)
        os.write(fifo, encode_frame(os.getpid(), w, os.fstat(w).st_ino + 1, request))  # not our pipe
        os.write(fifo, encode_frame(nobody.pid, nfd, nino, request))  # not root
        os.close(fifo)
        deadline = time.monotonic() + 10
        while "not root" not in _log(log_file):
            assert time.monotonic() < deadline, _log(log_file)
            time.sleep(0.05)
        os.set_blocking(r, False)
        with pytest.raises(BlockingIOError):
            os.read(r, 100)
        assert "served" not in _log(log_file)
        assert "netplug0" not in nsexec(world.host, "ip", "-br", "link").stdout
    finally:
        nobody.kill()
        nobody.wait()
        os.close(r)
        os.close(w)
    ok = world.cni("ADD", conf, "c1", c1, env=daemon.env)  # and it still serves
    assert ok.rc == 0 and "served over the FIFO" in _log(log_file), ok


def test_daemon_reuses_what_it_read_only_while_nothing_else_changed(world, daemon):
    """netplugd remembers the shared chains after an ADD and commits the next ADD against that
    nf_tables generation: consecutive ADDs add each shared rule once, and a change made behind
    its back (the network's masquerade deleted with nft) makes the kernel refuse the batch, so
    the next ADD reads again and restores the rule."""
    world.add_outside()
    nss = [world.container(i) for i in range(4)]
    conf = netplug_conf(world, runtimeConfig={"portMappings": [{"hostPort": 8080, "containerPort": 80}]})
    plain = netplug_conf(world)
    def shared_rules():
        ruleset = nsexec(world.host, "nft", "-a", "list", "ruleset").stdout
        return ruleset, sorted(line.split('comment "')[1].split('"')[0] for line in ruleset.splitlines()
                               if 'comment "netplug' in line and "np:" not in line)

    assert world.cni("ADD", conf, "c0", nss[0], env=daemon.env).rc == 0
    _, first = shared_rules()
    for i in (1, 2):
        assert world.cni("ADD", plain, f"c{i}", nss[i], env=daemon.env).rc == 0
    ruleset, shared = shared_rules()
    assert shared == first, (first, shared)  # the shared rules, each still there once
    masq = [line for line in ruleset.splitlines() if "masquerade\"" in line and "net=" in line][0]
    nsexec(world.host, "nft", "delete", "rule", "ip", "netplug", "NETPLUG-POSTROUTING",
           "handle", masq.split("# handle ")[1].strip())
    conf3 = netplug_conf(world, runtimeConfig={"portMappings": [{"hostPort": 8081, "containerPort": 80}]})
    assert world.cni("ADD", conf3, "c3", nss[3], env=daemon.env).rc == 0  # a batch to refuse
    ruleset = nsexec(world.host, "nft", "list", "ruleset").stdout
    assert ruleset.count("masquerade\"") == 1 and "netplug net=" in ruleset
    world.serve(nss[0], 80)
    assert world.ask(world.outside, world.uplink_ip, 8080) == world.peer_ip
    world.serve(world.outside, 80)
    assert world.ask(nss[3], world.peer_ip, 80) == world.uplink_ip  # masqueraded again
    for i in range(4):
        assert world.cni("DEL", [conf, plain, plain, conf3][i], f"c{i}", nss[i], env=daemon.env).rc == 0
    assert nsexec(world.host, "nft", "list", "ruleset").stdout.strip() == ""


def test_daemon_keeps_its_view_across_a_del(world):
    """A DEL that is not the network's last reads its own chain and the port chain, and keeps
    what the ADD before it knew of the others, if nothing else committed in between. Once the
    port chain is in the view (every rule with its handle, and each ADD's own rule echoed back
    by the kernel), ADDs and DELs commit without reading, and a DEL removes only its rule. A
    change behind netplugd's back before or after a DEL is caught by the generation."""
    log_file = os.path.join(world.tmp, "netplugd.log")
    daemon = Daemon(world, log_file=log_file)
    world.add_outside()
    world.serve(world.outside, 80)
    nss = [world.container(i) for i in range(6)]
    confs = [netplug_conf(world, runtimeConfig={"portMappings": [{"hostPort": 8080 + i, "containerPort": 80}]})
             for i in range(6)]

    def cni(cmd, i):
        assert world.cni(cmd, confs[i], f"c{i}", nss[i], env=daemon.env).rc == 0

    def shared_rules():
        ruleset = nsexec(world.host, "nft", "-a", "list", "ruleset").stdout
        return ruleset, sorted(line.split('comment "')[1].split('"')[0] for line in ruleset.splitlines()
                               if 'comment "netplug' in line and "np:" not in line)

    def drop_masquerade():
        masq = [line for line in shared_rules()[0].splitlines() if "masquerade\"" in line and "net=" in line][0]
        nsexec(world.host, "nft", "delete", "rule", "ip", "netplug", "NETPLUG-POSTROUTING",
               "handle", masq.split("# handle ")[1].strip())

    def viewed():
        return _log(log_file).count("committed from the view of")

    for i in range(3):
        cni("ADD", i)
    _, first = shared_rules()
    # 1. changed behind its back before the first DEL: that DEL keeps none of the ADDs' view,
    #    so the next ADD reads and restores the masquerade
    drop_masquerade()
    cni("DEL", 1)
    cni("ADD", 3)
    assert shared_rules()[1] == first
    assert world.ask(nss[3], world.peer_ip, 80) == world.uplink_ip  # masqueraded
    # 2. the view now holds the port chain: an ADD and a DEL each commit from it, and the
    #    DEL (by the handle the kernel echoed to the ADD) takes only its own rule
    before = viewed()
    cni("ADD", 4)
    assert viewed() == before + 1
    cni("DEL", 4)
    assert viewed() == before + 2
    ruleset, shared = shared_rules()
    assert shared == first and "dport 8081 " not in ruleset and "dport 8084 " not in ruleset
    for i in (0, 2, 3):
        world.serve(nss[i], 80)
        assert world.ask(world.outside, world.uplink_ip, 8080 + i) == world.peer_ip
    # 3. changed behind its back after a DEL: the next ADD's batch is refused and redone
    cni("DEL", 2)
    drop_masquerade()
    cni("ADD", 5)
    assert shared_rules()[1] == first
    assert world.ask(nss[5], world.peer_ip, 80) == world.uplink_ip
    for i in (0, 3, 5):
        cni("DEL", i)
    assert nsexec(world.host, "nft", "list", "ruleset").stdout.strip() == ""


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
