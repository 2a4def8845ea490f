"""`@record`: the part of `@dataclass` the plugin's models use, without importing dataclasses.

The plugin is exec'd per container: `import dataclasses` (inspect, ast, dis, re, enum...) plus
generating each class's methods with exec() cost ~20 ms of a ~60 ms exec here. A record gets an
__init__ (positional or keyword, defaults, `field(default_factory=...)`), __repr__, __eq__, and
with frozen=True immutability and __hash__, all from the class's annotations in order.
"""

_MISSING = object()


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make):
        self.make = make


def field(*, default_factory):
    return _Factory(default_factory)


def record(cls=None, *, frozen: bool = False):
    if cls is None:
        return lambda c: _build(c, frozen)
    return _build(cls, frozen)


def _build(cls, frozen: bool):
    names = tuple(cls.__dict__.get("__annotations__", {}))
    all_names = frozenset(names)
    defaults = {}
    for n in names:
        if n in cls.__dict__:
            defaults[n] = cls.__dict__[n]
            if isinstance(defaults[n], _Factory):
                delattr(cls, n)
    nargs = len(names)
    plain = {n: v for n, v in defaults.items() if not isinstance(v, _Factory)}
    factories = {n: v.make for n, v in defaults.items() if isinstance(v, _Factory)}

    # dict operations only (no per-field Python loop): plans build dozens of records per ADD
    def __init__(self, *args, **kw):
        vals = dict(plain)
        if args:
            if len(args) > nargs:
                raise TypeError(f"{cls.__name__}() takes {nargs} arguments, {len(args)} given")
            given = dict(zip(names, args))
            if not kw.keys().isdisjoint(given):
                raise TypeError(f"{cls.__name__}() got multiple values for {sorted(kw.keys() & given)}")
            vals.update(given)
        vals.update(kw)
        for n, make in factories.items():
            if n not in vals:
                vals[n] = make()
        if len(vals) != nargs or not vals.keys() <= all_names:
            unknown = sorted(vals.keys() - all_names)
            if unknown:
                raise TypeError(f"{cls.__name__}() got unexpected arguments {unknown}")
            raise TypeError(f"{cls.__name__}() missing argument {next(n for n in names if n not in vals)!r}")
        self.__dict__.update(vals)  # bypasses a frozen record's __setattr__, as dataclasses do

    def __repr__(self):
        return f"{cls.__qualname__}({', '.join(f'{n}={getattr(self, n)!r}' for n in names)})"

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in names)

    cls.__init__, cls.__repr__, cls.__eq__ = __init__, __repr__, __eq__
    cls.__record_fields__ = names
    if frozen:
        def __setattr__(self, name, value):
            raise AttributeError(f"cannot assign to field {name!r} of frozen {cls.__name__}")

        def __delattr__(self, name):
            raise AttributeError(f"cannot delete field {name!r} of frozen {cls.__name__}")

        def __hash__(self):  # computed once: frozen records are dict keys on hot paths
            h = self.__dict__.get("__hash")
            if h is None:
                h = self.__dict__["__hash"] = hash(tuple(getattr(self, n) for n in names))
            return h

        cls.__setattr__, cls.__delattr__, cls.__hash__ = __setattr__, __delattr__, __hash__
    else:
        cls.__hash__ = None  # mutable and compared by value: unhashable, as a dataclass
    return cls


def asdict(obj) -> dict:
    """Fields to a dict, records and containers inside copied recursively."""
    return {n: _copy(getattr(obj, n)) for n in obj.__record_fields__}


def _copy(v):
    if hasattr(v, "__record_fields__"):
        return asdict(v)
    if isinstance(v, (list, tuple)):
        return type(v)(_copy(x) for x in v)
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    return v
