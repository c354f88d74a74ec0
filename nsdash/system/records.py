"""Record: typing.NamedTuple's class syntax, without importing typing or collections.

`class Counters(Record): tasks: int | None = None ...` makes a tuple class
like `class Counters(NamedTuple)` would: fields by name and by index, the
defaults, `_make`, `_replace`, `_asdict`, `_fields`, a namedtuple's repr, and
the methods and docstring of the body.  mypy sees typing.NamedTuple itself.

Why not namedtuple: importing typing costs `nsdash cgtop -b` about a tenth of
its run, and collections (with operator, keyword, reprlib) another twentieth;
the readers' records (counters, rates, rows) need neither.  The constructor is
a function of the fields as parameters, as namedtuple's is, so making one costs
what a namedtuple's does (the sampler makes thousands per refresh); namedtuple
compiles its source with exec, which cost `nsdash cgtop` some 50 us a class
(more for the first): here a written-out constructor of as many parameters is
copied with the fields' names given to them (CodeType.replace), and exec is
left for records of more fields than those written out.
"""

from __future__ import annotations

TYPE_CHECKING = False  # mypy reads this as True
if TYPE_CHECKING:
    from typing import NamedTuple as Record
else:
    from _collections import _tuplegetter  # namedtuple's field accessor, from the built-in C module

    _tuple_new = tuple.__new__
    _function = type(lambda: None)  # types.FunctionType, without types

    # The constructors, by number of fields: the parameters are renamed to the fields.
    _WRITTEN = (
        lambda _cls: _tuple_new(_cls, ()),
        lambda _cls, a: _tuple_new(_cls, (a,)),
        lambda _cls, a, b: _tuple_new(_cls, (a, b)),
        lambda _cls, a, b, c: _tuple_new(_cls, (a, b, c)),
        lambda _cls, a, b, c, d: _tuple_new(_cls, (a, b, c, d)),
        lambda _cls, a, b, c, d, e: _tuple_new(_cls, (a, b, c, d, e)),
        lambda _cls, a, b, c, d, e, f: _tuple_new(_cls, (a, b, c, d, e, f)),
        lambda _cls, a, b, c, d, e, f, g: _tuple_new(_cls, (a, b, c, d, e, f, g)),
        lambda _cls, a, b, c, d, e, f, g, h: _tuple_new(_cls, (a, b, c, d, e, f, g, h)),
        lambda _cls, a, b, c, d, e, f, g, h, i: _tuple_new(_cls, (a, b, c, d, e, f, g, h, i)),
        lambda _cls, a, b, c, d, e, f, g, h, i, j: _tuple_new(_cls, (a, b, c, d, e, f, g, h, i, j)),
        lambda _cls, a, b, c, d, e, f, g, h, i, j, k: _tuple_new(_cls, (a, b, c, d, e, f, g, h, i, j, k)),
        lambda _cls, a, b, c, d, e, f, g, h, i, j, k, m: _tuple_new(_cls, (a, b, c, d, e, f, g, h, i, j, k, m)),
    )

    def _constructor(name, fields):
        """`def __new__(_cls, FIELDS...): return tuple.__new__(_cls, (FIELDS...))`."""
        qualname = f"{name}.__new__"
        if len(fields) < len(_WRITTEN) and "_cls" not in fields:
            code = _WRITTEN[len(fields)].__code__
            code = code.replace(co_varnames=("_cls", *fields), co_name="__new__", co_qualname=qualname)
            return _function(code, globals(), "__new__")
        arguments = ", ".join(fields)
        scope = {"_tuple_new": _tuple_new}
        exec(f"def __new__(_cls, {arguments}):\n    return _tuple_new(_cls, ({arguments}{',' if fields else ''}))",
             scope)
        new = scope["__new__"]
        new.__qualname__ = qualname
        return new

    def _record_class(name, namespace):
        fields = tuple(f for f in namespace.get("__annotations__", {}) if not f.startswith("_"))
        if not all(f.isidentifier() for f in fields):
            raise TypeError(f"{name}: field names must be identifiers")
        defaults = {f: namespace[f] for f in fields if f in namespace}
        if any(f not in defaults for f in fields[len(fields) - len(defaults):]):
            raise TypeError(f"{name}: a field without a default follows one with a default")
        new = _constructor(name, fields)
        new.__defaults__ = tuple(defaults.values()) or None
        size = len(fields)
        tuple_new, length = _tuple_new, len  # closure cells: read faster than a global and an attribute

        @classmethod
        def _make(cls, iterable):
            result = tuple_new(cls, iterable)
            if length(result) != size:
                raise TypeError(f"Expected {size} arguments, got {len(result)}")
            return result

        def _replace(self, **changes):
            result = self._make(map(changes.pop, fields, self))
            if changes:
                raise ValueError(f"Got unexpected field names: {list(changes)!r}")
            return result

        def __repr__(self):
            return f"{type(self).__name__}({', '.join(f'{f}={v!r}' for f, v in zip(fields, self, strict=True))})"

        def _asdict(self):
            return dict(zip(fields, self, strict=True))

        def __getnewargs__(self):
            return tuple(self)

        body = {"__slots__": (), "__new__": new, "_make": _make, "_replace": _replace, "__repr__": __repr__,
                "_asdict": _asdict, "__getnewargs__": __getnewargs__, "_fields": fields,
                "_field_defaults": defaults, "__match_args__": fields}
        for index, field in enumerate(fields):
            body[field] = _tuplegetter(index, f"Alias for field number {index}")
        for key, value in namespace.items():
            if key not in fields and key not in ("__annotations__", "__qualname__"):
                body[key] = value
        body["__qualname__"] = namespace.get("__qualname__", name)
        return type(name, (tuple,), body)

    class _RecordMeta(type):
        def __new__(mcls, name, bases, namespace):
            if namespace.get("_root"):
                return super().__new__(mcls, name, bases, {k: v for k, v in namespace.items() if k != "_root"})
            return _record_class(name, namespace)

    class Record(metaclass=_RecordMeta):
        """The base to write a record class on (see the module docstring)."""

        _root = True

__all__ = ["Record"]
