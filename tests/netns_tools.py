"""Throwaway network-namespace worlds for data-plane tests (the "host" is a netns too)."""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid

PY = sys.executable
HERE = os.path.dirname(os.path.abspath(__file__))
REF_CNI = "/usr/lib/cni"
NS_PREFIX = "npt-"


def sh(*cmd, check=True, **kw):
    return subprocess.run(list(cmd), check=check, capture_output=True, text=True, **kw)


def nsexec(ns, *cmd, **kw):
    return sh("nsenter", f"--net=/run/netns/{ns}", "--", *cmd, **kw)


def netns_list() -> set[str]:
    out = sh("ip", "-j", "netns", "list", check=False).stdout.strip()
    return {n["name"] for n in json.loads(out or "[]")}


def in_ns(path, fn):
    """Run fn in a fresh thread that has entered the namespace (never this test's own thread)."""
    out = {}

    from netplug.netlink import ns

    def body():
        fd = os.open(path, os.O_RDONLY)
        try:
            with ns.entered(fd):
                out["v"] = fn()
        except BaseException as e:  # surfaced below
            out["e"] = e
        finally:
            os.close(fd)

    t = threading.Thread(target=body)
    t.start()
    t.join()
    if "e" in out:
        raise out["e"]
    return out.get("v")


class World:
    """A host netns, container netnses and optionally an outside peer, all removed at close()."""

    def __init__(self, tmp, bin_dir):
        self.id = uuid.uuid4().hex[:6]
        self.tmp = str(tmp)
        self.bin_dir = bin_dir
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.host = self.add_ns("h")
        sh("ip", "-n", self.host, "link", "set", "lo", "up")
        self.outside = None
        self.uplink_ip = None

    def add_ns(self, role: str) -> str:
        name = f"{NS_PREFIX}{self.id}-{role}"
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        return name

    def container(self, n) -> str:
        name = self.add_ns(f"c{n}")
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def add_outside(self, host_ip="203.0.113.1", peer_ip="203.0.113.2", prefix=24):
        self.outside = self.add_ns("o")
        sh("ip", "link", "add", "up0", "netns", self.host, "type", "veth", "peer", "name", "eth0",
           "netns", self.outside)
        sh("ip", "-n", self.host, "addr", "add", f"{host_ip}/{prefix}", "dev", "up0")
        sh("ip", "-n", self.host, "link", "set", "up0", "up")
        sh("ip", "-n", self.outside, "addr", "add", f"{peer_ip}/{prefix}", "dev", "eth0")
        sh("ip", "-n", self.outside, "link", "set", "eth0", "up")
        sh("ip", "-n", self.outside, "link", "set", "lo", "up")
        self.uplink_ip, self.peer_ip = host_ip, peer_ip
        return self.outside

    def netns_path(self, ns):
        return f"/run/netns/{ns}"

    # --- plugin calls -----------------------------------------------------------------------
    def cni(self, command, conf, cid="", ns=None, ifname="eth0", plugin="netplug", env=None,
            netns_path=None, in_ns=None):
        e = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "CNI_COMMAND": command,
             "CNI_PATH": f"{self.bin_dir}:{REF_CNI}", "NETPLUG_NO_DAEMON": "1"}
        if cid:
            e["CNI_CONTAINERID"] = cid
        if ifname:
            e["CNI_IFNAME"] = ifname
        if netns_path is not None:
            e["CNI_NETNS"] = netns_path
        elif ns:
            e["CNI_NETNS"] = self.netns_path(ns)
        e.update(env or {})
        exe = plugin if plugin.startswith("/") else os.path.join(self.bin_dir, plugin)
        if not os.path.exists(exe):
            exe = os.path.join(REF_CNI, plugin)
        stdin = conf if isinstance(conf, (str, bytes)) else json.dumps(conf)
        proc = subprocess.run(["nsenter", f"--net=/run/netns/{in_ns or self.host}", "--", exe],
                              input=stdin if isinstance(stdin, bytes) else stdin.encode(),
                              capture_output=True, env=e, timeout=60)
        return CniResult(proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    # --- traffic ----------------------------------------------------------------------------
    def serve(self, ns, port, proto="tcp", addr="0.0.0.0"):
        p = subprocess.Popen(["nsenter", f"--net=/run/netns/{ns}", "--", PY,
                              os.path.join(HERE, "peer.py"), "serve", proto, addr, str(port)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = p.stdout.readline()
        assert line.strip() == "ready", p.stderr.read()
        self.procs.append(p)
        return p

    def ask(self, ns, ip, port, proto="tcp", timeout=3.0, src=None):
        """Connect from `ns` and return the peer address the server saw (None if unreachable)."""
        args = [PY, os.path.join(HERE, "peer.py"), "ask", proto, ip, str(port), str(timeout)]
        if src:
            args.append(src)
        r = nsexec(ns, *args, check=False)
        return r.stdout.strip() or None

    def serve_many(self, namespaces, port):
        p = subprocess.Popen([PY, os.path.join(HERE, "peer.py"), "serve-many", str(port),
                              ",".join(self.netns_path(n) for n in namespaces)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
        self.procs.append(p)
        return p

    def ask_many(self, ns, ip, ports, timeout=3.0) -> list[str]:
        r = nsexec(ns, PY, os.path.join(HERE, "peer.py"), "ask-many", ip,
                   ",".join(map(str, ports)), str(timeout), check=False)
        return r.stdout.split()

    def close(self):
        for p in self.procs:
            p.kill()
            p.wait()
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(os.path.join(self.tmp, "state"), ignore_errors=True)


class CniResult:
    def __init__(self, rc, out, err):
        self.rc, self.out, self.err = rc, out, err

    @property
    def json(self):
        return json.loads(self.out)

    def __repr__(self):
        return f"CniResult(rc={self.rc}, out={self.out!r}, err={self.err[-2000:]!r})"


def netplug_conf(world, name="testnet", subnet="172.17.0.0/16", backend="nftables", version="1.1.0",
                 ports=None, **extra):
    c = {"cniVersion": version, "name": name, "type": "netplug", "bridge": "netplug0",
         "ipMasq": True, "firewallBackend": backend, "stateDir": os.path.join(world.tmp, "state"),
         "ipam": {"type": "netplug-ipam", "ranges": [[{"subnet": subnet}]],
                  "dataDir": os.path.join(world.tmp, "ipam")}}
    if ports is not None:
        c["runtimeConfig"] = {"portMappings": ports}
    c.update(extra)
    return c


def wait_until(fn, timeout=3.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if fn():
            return True
        time.sleep(0.05)
    return fn()


def run_chain(world, command, conflist, cid, ns, ifname="eth0", prev=None, env=None):
    """What libcni does with a conflist: ADD in order passing prevResult, CHECK/DEL with the
    cached result (DEL in reverse order). Returns the final result (ADD) or None."""
    plugins = conflist["plugins"]
    order = plugins if command != "DEL" else list(reversed(plugins))
    result = prev
    for p in order:
        conf = dict(p, cniVersion=conflist["cniVersion"], name=conflist["name"])
        if result is not None:
            conf["prevResult"] = result
        r = world.cni(command, conf, cid, ns, ifname=ifname, plugin=p["type"], env=env)
        if r.rc != 0:
            raise AssertionError(f"{p['type']} {command} failed: {r}")
        if command == "ADD":
            result = r.json
    return result if command == "ADD" else None


class Daemon:
    """netplugd started in a netns of its own: requests must be served in the caller's netns."""

    def __init__(self, world, socket_dir=None, log_file=None):
        self.ns = world.add_ns("d")
        self.socket = os.path.join(socket_dir or world.tmp, "netplugd.sock")
        exe = os.path.join(os.path.dirname(PY), "netplugd")
        env = dict(os.environ, NETPLUG_LOG="DEBUG", NETPLUG_LOG_FILE=log_file) if log_file else None
        self.proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{self.ns}", "--", exe,
                                      "--socket", self.socket],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        world.procs.append(self.proc)
        deadline = time.monotonic() + 20
        while not os.path.exists(self.socket):
            assert self.proc.poll() is None, self.proc.stderr.read()
            assert time.monotonic() < deadline, "netplugd did not start"
            time.sleep(0.05)

    @property
    def env(self):
        return {"NETPLUG_SOCKET": self.socket, "NETPLUG_NO_DAEMON": ""}
