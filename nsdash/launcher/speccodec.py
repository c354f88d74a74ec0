"""ContainerSpec <-> JSON, so a spec reaches the detached supervisor intact.

Generic over the spec's fields (others add fields as options grow): Paths
become strings, tuples and frozensets lists, Bind/TmpfsMount objects dicts;
decoding converts back by looking at each field's annotation.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from nsdash.launcher import spec as specmod
from nsdash.launcher.spec import ContainerSpec

_NESTED = {"binds": specmod.Bind, "tmpfs": specmod.TmpfsMount}


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, frozenset):
        return sorted(_plain(v) for v in value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _typed(cls: type, data: dict[str, Any]) -> Any:
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        ann = str(f.type)
        nested = _NESTED.get(f.name) if cls is ContainerSpec else None
        if value is None:
            pass
        elif nested is not None:
            value = tuple(_typed(nested, v) for v in value)
        elif "Path" in ann and isinstance(value, str):
            value = Path(value)
        elif ann.startswith("frozenset"):
            value = frozenset(value)
        elif isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        kwargs[f.name] = value
    return cls(**kwargs)


def dumps(spec: ContainerSpec) -> str:
    return json.dumps(_plain(spec))


def loads(text: str) -> ContainerSpec:
    return _typed(ContainerSpec, json.loads(text))
