"""`netplug lab` argument handling."""


def add_parser(sub) -> None:
    e = sub.add_parser("lab", help="classroom labs in network namespaces")
    e.set_defaults(func=lambda a: 0)
