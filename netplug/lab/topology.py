"""Lab worlds: namespaces named lab-<lab>-<role>, the plugin exec'd into them like a runtime does.

Everything a lab makes is either a namespace with the lab- prefix or a file under RUN_DIR, so
`down` can always clean up by name, even after `up` was killed halfway.
"""

import json
import os
import shutil
import subprocess
import sys

RUN_DIR = "/run/netplug-lab"
PREFIX = "lab-"
HOST_IP, PEER_IP = "203.0.113.1", "203.0.113.2"


class LabError(Exception):
    """A one-line message for the student."""


def sh(*cmd, check=True, input=None) -> subprocess.CompletedProcess:
    p = subprocess.run(list(cmd), capture_output=True, text=True, input=input)
    if check and p.returncode != 0:
        raise LabError(f"{' '.join(cmd[:6])}: {p.stderr.strip() or p.stdout.strip()}")
    return p


def netns_names() -> list[str]:
    out = sh("ip", "-j", "netns", "list", check=False).stdout.strip()
    return [n["name"] for n in json.loads(out or "[]")]


def nsexec(ns: str, *cmd, check=True, input=None):
    return sh("nsenter", f"--net=/run/netns/{ns}", "--", *cmd, check=check, input=input)


class World:
    def __init__(self, lab: str):
        self.lab = lab
        self.dir = os.path.join(RUN_DIR, lab)
        self.host = f"{PREFIX}{lab}-host"
        self.outside = f"{PREFIX}{lab}-out"
        self.bin_dir = os.path.join(RUN_DIR, "bin")

    def ns(self, role: str) -> str:
        return f"{PREFIX}{self.lab}-{role}"

    def exists(self) -> bool:
        return self.host in netns_names()

    def namespaces(self) -> list[str]:
        return [n for n in netns_names() if n.startswith(f"{PREFIX}{self.lab}-")]

    # --- building ---------------------------------------------------------------------------
    def create(self) -> None:
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self._install_plugin()
        for ns in (self.host, self.outside):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", "up0", "netns", self.host, "type", "veth", "peer", "name", "eth0",
           "netns", self.outside)
        sh("ip", "-n", self.host, "addr", "add", f"{HOST_IP}/24", "dev", "up0")
        sh("ip", "-n", self.outside, "addr", "add", f"{PEER_IP}/24", "dev", "eth0")
        sh("ip", "-n", self.host, "link", "set", "up0", "up")
        sh("ip", "-n", self.outside, "link", "set", "eth0", "up")

    def _install_plugin(self) -> None:
        from ..install import install

        install(self.bin_dir, None, force=True)

    def container(self, name: str) -> str:
        ns = self.ns(name)
        if ns not in netns_names():
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        return ns

    def conf(self, backend: str, **extra) -> dict:
        c = {"cniVersion": "1.1.0", "name": "netplug", "type": "netplug", "bridge": "netplug0",
             "ipMasq": True, "hairpinMode": True, "firewallBackend": backend,
             "stateDir": os.path.join(self.dir, "state"),
             "ipam": {"type": "netplug-ipam", "ranges": [[{"subnet": "172.17.0.0/16", "gateway": "172.17.0.1"}]],
                      "dataDir": os.path.join(self.dir, "ipam")}}
        c.update(extra)
        return c

    def cni(self, command: str, conf: dict, cid: str, ns: str | None, ifname="eth0") -> dict | None:
        """Exec the installed plugin in the host namespace, as a container runtime would."""
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "CNI_COMMAND": command,
               "CNI_CONTAINERID": cid, "CNI_IFNAME": ifname, "CNI_PATH": self.bin_dir,
               "CNI_NETNS": f"/run/netns/{ns}" if ns else ""}
        p = subprocess.run(["nsenter", f"--net=/run/netns/{self.host}", "--",
                            os.path.join(self.bin_dir, "netplug")], input=json.dumps(conf),
                           capture_output=True, text=True, env=env)
        if p.returncode != 0:
            try:
                err = json.loads(p.stdout)
                raise LabError(f"CNI {command} {cid}: {err.get('msg')} {err.get('details', '')}".strip())
            except ValueError:
                raise LabError(f"CNI {command} {cid} failed: {p.stderr.strip()[-300:]}") from None
        return json.loads(p.stdout) if p.stdout.strip() else None

    # --- lab state ----------------------------------------------------------------------------
    def save(self, info: dict) -> None:
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        with open(os.path.join(self.dir, "lab.json"), "w") as f:
            json.dump(info, f, indent=1)

    def load(self) -> dict:
        try:
            with open(os.path.join(self.dir, "lab.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    # --- traffic ----------------------------------------------------------------------------
    def serve(self, ns: str, port: int, proto: str = "tcp") -> subprocess.Popen:
        """A small server that answers with the address it saw the client at."""
        p = subprocess.Popen(["nsenter", f"--net=/run/netns/{ns}", "--", sys.executable, "-m",
                              "netplug.lab.server", proto, str(port)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if p.stdout.readline().strip() != "ready":
            p.kill()
            raise LabError(f"server in {ns} did not start: {p.stderr.read().strip()}")
        return p

    def ask(self, ns: str, ip: str, port: int, timeout: float = 3.0) -> str | None:
        r = nsexec(ns, sys.executable, "-m", "netplug.lab.server", "ask", ip, str(port), str(timeout), check=False)
        return r.stdout.strip() or None

    def ping(self, ns: str, ip: str) -> bool:
        return nsexec(ns, "ping", "-c1", "-W2", ip, check=False).returncode == 0


def down(lab: str | None) -> list[str]:
    """Remove a lab's namespaces and files (all labs with lab=None). Safe after a crash."""
    prefix = PREFIX if lab is None else f"{PREFIX}{lab}-"
    import signal

    gone = []
    for ns in netns_names():
        if ns.startswith(prefix):
            # the lab's servers run inside its namespaces: end them first (only ours are there)
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            sh("ip", "netns", "del", ns, check=False)
            gone.append(ns)
    path = RUN_DIR if lab is None else os.path.join(RUN_DIR, lab)
    shutil.rmtree(path, ignore_errors=True)
    if not any(ns.startswith(PREFIX) for ns in netns_names()):
        shutil.rmtree(RUN_DIR, ignore_errors=True)  # the last lab took the shared plugin copy with it
    return gone
