"""Any parsed rule back to iptables-save form (for rules that did not come from a save dump)."""

from ..firewall.model import save_string
from .model import Rule


def to_save(r: Rule) -> str:
    p = [f"-A {r.chain}"]
    neg = lambda b: "! " if b else ""  # noqa: E731
    if r.src:
        p.append(f"{neg(r.src_neg)}-s {r.src if '/' in r.src else r.src + '/32'}")
    if r.dst:
        p.append(f"{neg(r.dst_neg)}-d {r.dst if '/' in r.dst else r.dst + '/32'}")
    if r.iif:
        p.append(f"{neg(r.iif_neg)}-i {r.iif}")
    if r.oif:
        p.append(f"{neg(r.oif_neg)}-o {r.oif}")
    if r.proto:
        p.append(f"{neg(r.proto_neg)}-p {r.proto}")
    for m in r.matches:
        opts = []
        for k, v in m.opts.items():
            key = {"dport": "dport", "sport": "sport"}.get(k, k)
            val = save_string(str(v)) if k == "comment" else str(v)
            opts.append(f"{neg(k in m.neg)}--{key}" + ("" if v is True else f" {val}"))
        p.append(f"-m {m.name} " + " ".join(opts) if opts else f"-m {m.name}")
    if r.target:
        t = f"-j {r.target}"
        for k, v in r.target_opts.items():
            t += f" --{k}" + ("" if v is True else f" {v}")
        p.append(t)
    if r.unknown:
        p.append("# not understood: " + " ".join(r.unknown))
    return " ".join(p)
