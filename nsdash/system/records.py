"""Record: typing.NamedTuple's class syntax without importing typing.

`class Counters(Record): tasks: int | None = None ...` makes the same class
as `class Counters(NamedTuple)` would: collections.namedtuple with the
annotated fields, their defaults, the docstring and any methods of the body.
mypy sees typing.NamedTuple itself.  Importing typing costs `nsdash cgtop -b`
about a tenth of its run; the readers' records (counters, rates, rows) need
only this.
"""

from __future__ import annotations

TYPE_CHECKING = False  # mypy reads this as True
if TYPE_CHECKING:
    from typing import NamedTuple as Record
else:
    class _RecordMeta(type):
        def __new__(mcls, name, bases, namespace):
            if namespace.get("_root"):
                return super().__new__(mcls, name, bases, {k: v for k, v in namespace.items() if k != "_root"})
            from collections import namedtuple

            fields = [f for f in namespace.get("__annotations__", {}) if not f.startswith("_")]
            defaults = [namespace[f] for f in fields if f in namespace]
            if any(f not in namespace for f in fields[len(fields) - len(defaults):]):
                raise TypeError(f"{name}: a field without a default follows one with a default")
            cls = namedtuple(name, fields, defaults=defaults, module=namespace.get("__module__"))
            for key, value in namespace.items():
                if key not in fields and key not in ("__annotations__", "__module__", "__qualname__"):
                    setattr(cls, key, value)
            cls.__qualname__ = namespace.get("__qualname__", name)
            return cls

    class Record(metaclass=_RecordMeta):
        """The base to write a record class on (see the module docstring)."""

        _root = True

__all__ = ["Record"]
