"""`netplug explain` argument handling (filled in by the explain issue)."""


def add_parser(sub) -> None:
    e = sub.add_parser("explain", help="dump and explain the nat table")
    e.set_defaults(func=lambda a: 0)
