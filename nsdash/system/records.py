"""Record: typing.NamedTuple's class syntax, without importing typing or collections.

`class Counters(Record): tasks: int | None = None ...` makes a tuple class
like `class Counters(NamedTuple)` would: fields by name and by index, the
defaults, `_make`, `_replace`, `_asdict`, `_fields`, a namedtuple's repr, and
the methods and docstring of the body.  mypy sees typing.NamedTuple itself.

Why not namedtuple: importing typing costs `nsdash cgtop -b` about a tenth of
its run, and collections (with operator, keyword, reprlib) another twentieth;
the readers' records (counters, rates, rows) need neither.  The constructor is
generated with exec, as namedtuple's is, so making one costs what a
namedtuple's does (the sampler makes thousands per refresh).
"""

from __future__ import annotations

TYPE_CHECKING = False  # mypy reads this as True
if TYPE_CHECKING:
    from typing import NamedTuple as Record
else:
    from _collections import _tuplegetter  # namedtuple's field accessor, from the built-in C module

    def _record_class(name, namespace):
        fields = tuple(f for f in namespace.get("__annotations__", {}) if not f.startswith("_"))
        if not all(f.isidentifier() for f in fields):
            raise TypeError(f"{name}: field names must be identifiers")
        defaults = {f: namespace[f] for f in fields if f in namespace}
        if any(f not in defaults for f in fields[len(fields) - len(defaults):]):
            raise TypeError(f"{name}: a field without a default follows one with a default")
        arguments = ", ".join(fields)
        scope = {"_tuple_new": tuple.__new__}
        exec(f"def __new__(_cls, {arguments}):\n    return _tuple_new(_cls, ({arguments}{',' if fields else ''}))",
             scope)
        new = scope["__new__"]
        new.__defaults__ = tuple(defaults.values()) or None
        new.__qualname__ = f"{name}.__new__"
        size = len(fields)
        tuple_new, length = tuple.__new__, len  # closure cells: read faster than a global and an attribute

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
