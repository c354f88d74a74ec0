"""ContainerSpec <-> JSON, so a spec reaches the detached supervisor intact.

Generic over the spec's fields (others add fields as options grow): Paths
become strings, bytes base64, tuples and frozensets lists, Bind/TmpfsMount/Credential objects dicts;
decoding converts back by looking at each field's annotation.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from nsdash.launcher import spec as specmod
from nsdash.launcher.spec import ContainerSpec
from nsdash.system.frozen import Frozen

_NESTED = {"binds": specmod.Bind, "tmpfs": specmod.TmpfsMount, "credentials": specmod.Credential,
           "overlays": specmod.OverlayMount}


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, Frozen):
        return {name: _plain(getattr(value, name)) for name in value._fields}
    if isinstance(value, frozenset):
        return sorted(_plain(v) for v in value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _annotations(cls: type) -> dict[str, object]:
    merged: dict[str, object] = {}
    for klass in reversed(cls.__mro__):
        merged.update(klass.__dict__.get("__annotations__", {}))
    return merged


def _typed(cls: Any, data: dict[str, Any]) -> Any:
    kwargs: dict[str, Any] = {}
    annotations = _annotations(cls)
    for name in cls._fields:
        if name not in data:
            continue
        value = data[name]
        ann = str(annotations[name])
        nested = _NESTED.get(name) if cls is ContainerSpec else None
        if value is None:
            pass
        elif nested is not None:
            value = tuple(_typed(nested, v) for v in value)
        elif ann == "bytes" and isinstance(value, str):
            value = base64.b64decode(value)
        elif "Path" in ann and isinstance(value, str):
            value = Path(value)
        elif ann.startswith("frozenset"):
            value = frozenset(value)
        elif isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        kwargs[name] = value
    return cls(**kwargs)


def dumps(spec: ContainerSpec) -> str:
    return json.dumps(_plain(spec))


def loads(text: str) -> ContainerSpec:
    return _typed(ContainerSpec, json.loads(text))
