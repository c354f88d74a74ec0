"""Frozen: immutable value objects without dataclasses' code generation.

The spawn path imports the spec, the plan and the container; `dataclasses`
(which pulls in inspect and ast) and generating the classes cost more than
the rest of those imports, on every `nsdash spawn`.
"""

from __future__ import annotations

TYPE_CHECKING = False  # mypy takes this name as true; at run time typing is not imported (spawn path)
if TYPE_CHECKING:
    from typing import Self, dataclass_transform
else:
    def dataclass_transform(**_kwargs: object):  # noqa: ANN202 - a no-op decorator at run time
        return lambda cls: cls


@dataclass_transform(frozen_default=True, kw_only_default=False)
class Frozen:
    """An immutable value object with dataclass-like fields, made without code generation.

    Subclasses declare their fields as annotated class attributes (a value
    there is the default), as a dataclass would.  Not dataclasses: generating
    the plan's sixteen classes cost more than the rest of a spawn's imports.
    """

    _fields: tuple[str, ...] = ()
    _least: int = 0  # positional arguments that cover every field without a default

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        names: list[str] = []
        for klass in reversed(cls.__mro__):
            for name in klass.__dict__.get("__annotations__", {}):
                if not name.startswith("_") and name not in names:
                    names.append(name)
        cls._fields = tuple(names)
        required = [i for i, name in enumerate(names) if not hasattr(cls, name)]
        cls._least = required[-1] + 1 if required else 0

    def __init__(self, *args: object, **kwargs: object) -> None:
        fields = self._fields
        if not kwargs and self._least <= len(args) <= len(fields):
            # The common call, positional only (readers make thousands per refresh): the
            # fields not given keep their class-level defaults.
            self.__dict__.update(zip(fields, args, strict=False))  # one call; __setattr__ refuses
            return
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__} takes at most {len(fields)} arguments")
        values = dict(zip(fields, args, strict=False))
        for name, value in kwargs.items():
            if name not in fields or name in values:
                raise TypeError(f"{type(self).__name__}: unexpected or repeated argument {name!r}")
            values[name] = value
        for name in fields:
            if name in values:
                object.__setattr__(self, name, values[name])
            elif not hasattr(type(self), name):
                raise TypeError(f"{type(self).__name__}: missing argument {name!r}")

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, f) for f in self._fields)

    def _asdict(self) -> dict[str, object]:
        """The fields by name (dataclasses.asdict of a flat record)."""
        return {f: getattr(self, f) for f in self._fields}

    def _replace(self, **changes: object) -> Self:
        """A copy with CHANGES (dataclasses.replace)."""
        return type(self)(**{**self._asdict(), **changes})

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._values() == self._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self._values()))

    def __repr__(self) -> str:
        args = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields)
        return f"{type(self).__name__}({args})"
