"""Crashes, contention, bad names, file modes, and a soak: nothing lost, nothing leaked."""

import concurrent.futures as cf
import fcntl
import json
import os
import random
import stat
import time

import pytest
from netns_tools import Daemon, netplug_conf, nsexec, sh

pytestmark = pytest.mark.netns
STEPS = ["after-record", "after-ipam", "after-veth", "after-firewall"]


def snapshot(world, nets=("testnet",)):
    """Everything an attachment can leave behind, in comparable form."""
    rules = nsexec(world.host, "nft", "list", "ruleset").stdout
    rules += nsexec(world.host, "iptables-legacy-save", check=False).stdout
    rules = "\n".join(l for l in rules.splitlines() if not l.startswith("#"))
    import re
    rules = re.sub(r"\[\d+:\d+\]|counter packets \d+ bytes \d+", "", rules)
    links = sorted(l.split()[0] for l in nsexec(world.host, "ip", "-br", "link").stdout.splitlines())
    files = {}
    for root in ("ipam", "state"):
        base = os.path.join(world.tmp, root)
        for dirpath, _, names in os.walk(base):
            for n in names:
                # locks and host-wide markers, made once: not an attachment's state
                if n in ("lock", ".lock", "firewall.lock", ".ports.lock", ".flagged") or n.startswith("last_reserved_ip"):
                    continue
                files[os.path.relpath(os.path.join(dirpath, n), world.tmp)] = True
    ct = nsexec(world.host, "conntrack", "-L", check=False).stdout.count("dport=")
    return {"rules": rules, "links": links, "files": sorted(files), "conntrack": ct}


@pytest.mark.parametrize("backend", ["nftables", "iptables", "iptables-legacy"])
@pytest.mark.parametrize("step", STEPS)
def test_kill_9_at_each_step_then_del_restores(world, backend, step):
    world.add_outside()
    conf = netplug_conf(world, backend=backend, runtimeConfig={"portMappings": [
        {"hostPort": 8080, "containerPort": 80}, {"hostPort": 9053, "containerPort": 53, "protocol": "udp"}]})
    # a neighbour, so the bridge and shared chains exist in the "before" state
    other = netplug_conf(world, backend=backend)
    assert world.cni("ADD", other, "keep", world.container(0)).rc == 0
    before = snapshot(world)
    c1 = world.container(1)
    r = world.cni("ADD", conf, "c1", c1, env={"NETPLUG_TEST_CRASH": step})
    assert r.rc == -9 and r.out == "", r  # killed: the runtime sees a failure and will DEL
    assert world.cni("DEL", netplug_conf(world, backend=backend), "c1", c1).rc == 0
    assert snapshot(world) == before
    r = world.cni("ADD", conf, "c1", c1)
    assert r.rc == 0, r
    world.serve(c1, 80)
    assert world.ask(world.outside, world.uplink_ip, 8080) == world.peer_ip


@pytest.mark.parametrize("step", STEPS)
def test_kill_9_then_gc_restores(world, step):
    conf = netplug_conf(world, runtimeConfig={"portMappings": [{"hostPort": 8080, "containerPort": 80}]})
    assert world.cni("ADD", netplug_conf(world), "keep", world.container(0)).rc == 0
    before = snapshot(world)
    c1 = world.container(1)
    assert world.cni("ADD", conf, "c1", c1, env={"NETPLUG_TEST_CRASH": step}).rc == -9
    gc = dict(netplug_conf(world), **{"cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]})
    assert world.cni("GC", gc, ifname="").rc == 0
    assert snapshot(world) == before
    assert world.cni("ADD", conf, "c1", c1).rc == 0


def test_store_lock_contention_returns_11_and_changes_nothing(world):
    conf = netplug_conf(world)
    assert world.cni("ADD", conf, "c0", world.container(0)).rc == 0
    before = snapshot(world)
    lock = os.path.join(world.tmp, "ipam", "testnet", "lock")
    fd = os.open(lock, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        t = time.monotonic()
        r = world.cni("ADD", conf, "c1", world.container(1), env={"NETPLUG_LOCK_TIMEOUT": "1"})
        took = time.monotonic() - t
    finally:
        os.close(fd)
    assert r.rc != 0 and r.json["code"] == 11, r
    assert took < 5
    assert snapshot(world) == before


@pytest.mark.parametrize("field,value,code", [
    ("name", 'net"; flush ruleset; #', 7), ("name", "a b", 7), ("bridge", "br;x", 7),
    ("bridge", "br\"0", 7), ("ipam.type", "../../../bin/sh", 7), ("ipam.type", "host-local;id", 7),
    ("stateDir", "../../etc", 7), ("ipam.dataDir", "/var/lib/../../etc", 7),
])
def test_no_injection_through_config(world, field, value, code):
    conf = netplug_conf(world, runtimeConfig={"portMappings": [{"hostPort": 8080, "containerPort": 80}]})
    if field.startswith("ipam."):
        conf["ipam"][field[5:]] = value
    else:
        conf[field] = value
    before = snapshot(world)
    r = world.cni("ADD", conf, "c1", world.container(1))
    assert r.rc != 0 and r.json["code"] == code, r
    assert snapshot(world) == before


@pytest.mark.parametrize("env", [{"CNI_CONTAINERID": 'x"; flush ruleset'}, {"CNI_IFNAME": "../../x"},
                                 {"CNI_IFNAME": "a" * 16}, {"CNI_ARGS": "IP=172.17.0.5;K8S_POD_NAME=$(id)"}])
def test_no_injection_through_env(world, env):
    c = world.container(1)
    before = snapshot(world)
    r = world.cni("ADD", netplug_conf(world), env.get("CNI_CONTAINERID", "c1"), c,
                  ifname=env.get("CNI_IFNAME", "eth0"), env={k: v for k, v in env.items() if k == "CNI_ARGS"})
    assert r.rc != 0 and r.json["code"] == 4, r
    assert snapshot(world) == before


def test_odd_but_valid_ifname_is_only_data(world):
    """The spec allows ';' in CNI_IFNAME: it names the container's interface and nothing else."""
    c = world.container(1)
    r = world.cni("ADD", netplug_conf(world), "c1", c, ifname="eth0;id")
    assert r.rc == 0, r
    assert "eth0;id" in nsexec(c, "ip", "-br", "link").stdout
    assert ";id" not in nsexec(world.host, "nft", "list", "ruleset").stdout


def test_refuses_to_enslave_a_foreign_link(world):
    sh("ip", "-n", world.host, "link", "add", "mylink", "type", "veth", "peer", "name", "mylink-p")
    r = world.cni("ADD", netplug_conf(world, bridge="mylink"), "c1", world.container(1))
    assert r.rc != 0 and "not a bridge" in r.json["msg"]
    link = json.loads(nsexec(world.host, "ip", "-j", "-d", "link", "show", "mylink").stdout)[0]
    assert "master" not in link and "UP" not in link["flags"]


def test_state_files_are_not_world_writable(world):
    conf = netplug_conf(world, runtimeConfig={"portMappings": [{"hostPort": 8080, "containerPort": 80}]})
    assert world.cni("ADD", conf, "c1", world.container(1)).rc == 0
    for root in ("ipam", "state"):
        for dirpath, dirs, names in os.walk(os.path.join(world.tmp, root)):
            for n in names + dirs:
                mode = stat.S_IMODE(os.lstat(os.path.join(dirpath, n)).st_mode)
                assert mode & 0o002 == 0, (dirpath, n, oct(mode))
                if n in names:
                    assert mode & 0o077 == 0, (dirpath, n, oct(mode))


def test_soak(world):
    """2,000 ADD/DEL cycles with random port mappings over 4 networks at concurrency 4."""
    cycles = int(os.environ.get("NETPLUG_SOAK_CYCLES", "2000"))
    world.add_outside()
    d = Daemon(world)
    nets = [netplug_conf(world, name=f"soak{i}", bridge=f"np-soak{i}", subnet=f"172.17.{i * 16}.0/20")
            for i in range(4)]
    slots = [world.container(i) for i in range(8)]  # 8 containers reused: netns creation isn't measured
    rng = random.Random(7)
    live_ips, dups, errors = {}, [], []
    rss = []

    def cycle(k):
        slot = k % len(slots)
        net = nets[slot % 4]
        port = 30000 + k  # random mappings, never colliding (a collision is a refused ADD, tested elsewhere)
        mappings = [{"hostPort": port, "containerPort": rng.choice([80, 443, 53]),
                     "protocol": rng.choice(["tcp", "udp"])}]
        conf = dict(net, runtimeConfig={"portMappings": mappings})
        r = world.cni("ADD", conf, f"s{k}", slots[slot], env=d.env)
        if r.rc != 0:
            errors.append(r)
            return
        ip = r.json["ips"][0]["address"]
        if live_ips.setdefault(ip, k) != k:  # someone else holds this address right now
            dups.append((ip, live_ips[ip], k))
        r = world.cni("DEL", net, f"s{k}", slots[slot], env=d.env)
        live_ips.pop(ip, None)
        if r.rc != 0:
            errors.append(r)

    before = snapshot(world)
    with cf.ThreadPoolExecutor(4) as ex:
        # each worker owns two slots, so one container never has two ADDs at once
        for start in range(0, cycles, 8):
            list(ex.map(cycle, range(start, min(cycles, start + 8))))
            if (start // 8) % max(1, cycles // 40) == 0:  # ~5 samples over the run
                with open(f"/proc/{d.proc.pid}/status") as f:
                    rss.append(next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")))
    after = snapshot(world)
    assert not errors, errors[:3]
    assert not dups
    for k in ("rules", "files", "conntrack"):
        assert after[k] == before[k], k
    # host veths (np<hash>@ifN): none left; the four bridges stay, as bridges do
    assert [l for l in after["links"] if l.startswith("np") and "@" in l] == []
    assert len(rss) >= 3 and rss[-1] <= rss[1] * 1.15 + 2048, rss  # flat: no growth after warm-up
    with open(os.path.join(world.tmp, "soak.json"), "w") as f:
        json.dump({"cycles": cycles, "rss_kb": rss}, f)
    print(f"soak: {cycles} cycles, daemon RSS KB over time {rss}")


def test_del_with_firewall_busy_still_releases_the_address(world):  # checklist 42
    conf = netplug_conf(world, runtimeConfig={"portMappings": [{"hostPort": 8080, "containerPort": 80}]})
    c1 = world.container(1)
    assert world.cni("ADD", conf, "c1", c1).rc == 0
    fd = os.open(os.path.join(world.tmp, "state", "firewall.lock"), os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        r = world.cni("DEL", conf, "c1", c1, env={"NETPLUG_LOCK_TIMEOUT": "1"})
    finally:
        os.close(fd)
    assert r.rc != 0 and r.json["code"] == 11, r  # rules remain: the runtime retries
    assert not [f for f in os.listdir(os.path.join(world.tmp, "ipam", "testnet")) if f[0].isdigit()]
    assert world.cni("DEL", conf, "c1", c1).rc == 0  # the retry finishes the job
    assert "NETPLUG" not in nsexec(world.host, "nft", "list", "ruleset").stdout
