"""iptables backend: the nf_tables-backed iptables the host's own tools show.

One `iptables-nft-save` to read and one `iptables-nft-restore --noflush` batch to write per
operation, as Docker and the reference plugins do; the batch is atomic.
"""

from ..errors import BusyError, SetupError
from .backend import Backend, LiveRule, Ops
from .model import Rule, is_builtin, to_save

TABLES = ("nat", "filter")


def comment_of(line: str) -> str:
    if "--comment" not in line:
        return ""
    import shlex  # lazily, as subprocess and shutil: DEL imports this module to look for rules

    try:
        toks = shlex.split(line)
    except ValueError:
        return ""
    for i, t in enumerate(toks[:-1]):
        if t == "--comment":
            return toks[i + 1]
    return ""


def parse_save(text: str) -> tuple[list[LiveRule], set[tuple[str, str]]]:
    """Our chains and every commented rule from iptables-save text (pure)."""
    live, chains, table = [], set(), ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith(":"):
            chains.add((table, line[1:].split()[0]))
        elif line.startswith("-A "):
            chain = line.split()[1]
            live.append(LiveRule(table, chain, comment_of(line), line))
    return live, chains


class IptablesNftBackend(Backend):
    name = "iptables"
    save_cmd, restore_cmd = "iptables-nft-save", "iptables-nft-restore"

    def unavailable(self):
        missing = [c for c in (self.save_cmd, self.restore_cmd) if not self._which(c)]
        return f"{', '.join(missing)} not found (apt-get install iptables)" if missing else None

    @staticmethod
    def _which(cmd):
        import shutil

        return shutil.which(cmd, path="/usr/sbin:/sbin:/usr/bin:/bin")

    def present(self):
        from . import libnft

        if libnft.available() is not None:
            return bool(self._list()[1])
        try:
            objs = libnft.run_json("list chains ip")  # chain names only: cheap at any size
        except libnft.NftError:
            return False
        return any(o["chain"]["table"] in ("nat", "filter") and o["chain"]["name"].startswith("NETPLUG-")
                   for o in objs if "chain" in o)

    def _save(self, table: str) -> str:
        import subprocess

        proc = subprocess.run([self._which(self.save_cmd), "-t", table], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SetupError(f"{self.save_cmd} -t {table}: {proc.stderr.strip()}")
        return proc.stdout

    def _list(self, scope=None):  # iptables-save reads whole tables anyway
        live, chains = [], set()
        for t in TABLES:
            lv, ch = parse_save(self._save(t))
            live += [lr for lr in lv if lr.table == t]
            chains |= {c for c in ch if c[0] == t and c[1].startswith("NETPLUG-")}
        return live, chains

    def batch(self, ops: Ops) -> str:
        """The restore text for `ops` (pure)."""
        out = []
        for t in TABLES:
            lines = []
            lines += ["-D" + lr.ref[2:] for lr in ops.delete_rules if lr.table == t]
            lines += [f"-F {c}" for tt, c in ops.delete_chains if tt == t]
            lines += [f"-X {c}" for tt, c in ops.delete_chains if tt == t]
            lines += [f":{c} - [0:0]" for tt, c in ops.create_chains + ops.flush_chains if tt == t]
            for r in ops.add_rules:
                if r.table == t:
                    verb = f"-I {r.chain} 1" if is_builtin(t, r.chain) else f"-A {r.chain}"
                    lines.append(f"{verb} {to_save(r)}")
            if lines:
                out += [f"*{t}"] + lines + ["COMMIT"]
        return "\n".join(out) + "\n"

    def _apply(self, ops):
        text = self.batch(ops)
        import subprocess

        proc = subprocess.run([self._which(self.restore_cmd), "--noflush", "-w", "5"],
                              input=text, capture_output=True, text=True)
        if proc.returncode != 0:
            err = proc.stderr.strip()
            if "lock" in err.lower():
                raise BusyError(f"{self.restore_cmd}: {err}")
            raise SetupError(f"{self.restore_cmd}: {err}", text)

    def _chain_rules(self, table, chain):
        live, chains = parse_save(self._save(table))
        if (table, chain) not in chains:
            return None
        return [lr.ref.split(" ", 2)[2] for lr in live if lr.chain == chain]

    def _normal(self, r: Rule) -> str:
        return to_save(r)

    def dump(self):
        return "".join(self._save(t) for t in TABLES)

