"""Read a dump of any supported format, detecting which it is (pure)."""

from .model import ParseError, Ruleset
from .parse_list import parse_list
from .parse_nft import parse_nft_json, parse_nft_text
from .parse_save import parse_save
from .render_save import to_save


def detect(text: str) -> str:
    s = text.lstrip()
    if not s:
        raise ParseError(1, "the input is empty")
    if "\0" in text or sum(1 for c in text[:4096] if ord(c) < 9 or 13 < ord(c) < 32) > 2:
        raise ParseError(1, "binary data, not a ruleset dump")
    if s.startswith("{"):
        return "nft-json"
    first = next(l.strip() for l in s.splitlines() if l.strip() and not l.lstrip().startswith("#")) \
        if any(l.strip() and not l.lstrip().startswith("#") for l in s.splitlines()) else ""
    if first.startswith("*"):
        return "iptables-save"
    if first.startswith("Chain "):
        return "iptables-list"
    if first.startswith("table "):
        return "nft-text"
    raise ParseError(1, "unknown format: expected iptables-save, iptables -nL, nft list ruleset "
                     "or nft -j list ruleset output", first)


def read_dump(text: str) -> Ruleset:
    fmt = detect(text)
    if fmt == "iptables-save":
        rs = parse_save(text)
    elif fmt == "iptables-list":
        rs = parse_list(text)
        rs.notes.append("input is `iptables -L` text: interfaces (-i/-o) are not shown in it"
                        if rs.source == "iptables -nL" else "input is `iptables -nvL` text")
    elif fmt == "nft-json":
        rs = parse_nft_json(text)
    else:
        rs = parse_nft_text(text)
    if fmt == "iptables-list":
        for r in rs.rules():
            r.save = to_save(r)
    return rs
