"""The watch line: what `nsdash _watch` on a far host pushes to the dashboard once per interval.

The dashboard over -H used to run `list -o json` on each host every refresh:
a new Python process on the far side each second.  Instead one far-side
process (`_watch`, nsdash.cli.watch) stays running for the dashboard's
session and writes one JSON object per line, per interval:

    {"v": 1,
     "machines": [...],                   what `nsdash list -o json` gives, unchanged
     "cgroups": ["/", "/machine.slice", ...],   parents before children
     "rows": [[PATH, TASKS, CPU%, CPU_USEC, MEMORY, IO_READ/s, IO_WRITE/s], ...]
     "machine_of": {PATH: MACHINE, ...},  cgroups that belong to a machine
     "more": N}                           cgroups on that host left out (bound below)

Bounded on the far side (a host with 5,000 cgroups): the whole machine.slice
subtree and the top TOP_DEPTH levels of the rest, MAX_CGROUPS in all, and the
cgtop rows of those cgroups only; no processes (a far PID means nothing here,
and a pid in the tree would invite an action on this host's process of that
number).  Full lines, not deltas: a line stands on its own, so a lost or
refused one costs nothing but itself.

This side trusts none of it: parse() refuses a line that is not such an
object, keeps values only of the right types, drops paths that are not
absolute or whose parent was not sent (or deeper than MAX_DEPTH), and bounds every count and length.
Names stay as the far side wrote them (control characters included): the
dashboard escapes them when it shows them (nsdash.system.text), as it does
a local guest's cgroup names.  Lines longer than MAX_LINE are refused whole
(LineReader), before any JSON parsing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from nsdash.errors import NsdashError

VERB = "_watch"
VERSION = 1
MAX_LINE = 8 << 20  # bytes in one watch line (2,000 cgroups with rows: well under 1 MiB)
MAX_CGROUPS = 2000
MAX_MACHINES = 2000
MAX_PATH = 4096  # bytes in a cgroup path (PATH_MAX)
MAX_NAME = 255  # a machine's name
MAX_DEPTH = 64  # levels of cgroups below the root (deeper is refused: the tree is built recursively)
TOP_DEPTH = 2  # levels shown outside machine.slice: /system.slice, /system.slice/foo.service
MACHINE_SLICE = "/machine.slice"


class WatchError(NsdashError):
    """A far side that sent something that is not a watch line."""


@dataclass(frozen=True)
class Watch:
    """One parsed watch line.  ROWS: (path, tasks, cpu %, cpu µs, memory, read/s, write/s)."""

    machines: tuple[dict[str, Any], ...] = ()
    cgroups: tuple[str, ...] = ()
    rows: tuple[tuple[str, int | None, float | None, int | None, int | None, float | None, float | None], ...] = ()
    machine_of: dict[str, str] = field(default_factory=dict)
    more: int = 0


def encode(machines: list[dict[str, Any]], cgroups: list[str], rows: list[list[Any]],
           machine_of: dict[str, str], more: int = 0) -> bytes:
    """The line the far side writes (its newline included)."""
    return json.dumps({"v": VERSION, "machines": machines, "cgroups": cgroups, "rows": rows,
                       "machine_of": machine_of, "more": more}, separators=(",", ":")).encode() + b"\n"


def parse(line: bytes) -> Watch:
    """LINE (without its newline) as a Watch; WatchError when it is not one."""
    if len(line) > MAX_LINE:
        raise WatchError(f"the far side sent a watch line longer than {MAX_LINE} bytes")
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):
        raise WatchError("the far side sent a watch line that is not JSON") from None
    if not isinstance(data, dict) or data.get("v") != VERSION:
        raise WatchError("the far side sent something other than a watch line",
                         "install the same nsdash version on both hosts")
    machines, cgroups = data.get("machines"), data.get("cgroups")
    if not isinstance(machines, list) or not isinstance(cgroups, list):
        raise WatchError("the far side sent a watch line without machines or cgroups")
    if len(machines) > MAX_MACHINES or len(cgroups) > MAX_CGROUPS:
        raise WatchError(f"the far side sent more than {MAX_MACHINES} machines or {MAX_CGROUPS} cgroups")
    paths = _paths(cgroups)
    known = set(paths)
    more = data.get("more")
    return Watch(machines=tuple(m for m in machines if isinstance(m, dict)),
                 cgroups=paths,
                 rows=_rows(data.get("rows"), known),
                 machine_of=_machine_of(data.get("machine_of"), known),
                 more=more if isinstance(more, int) and 0 <= more < 1 << 31 else 0)


def _paths(cgroups: list[Any]) -> tuple[str, ...]:
    """The paths that hang together: absolute, bounded, no empty or dot component, each after
    its parent ("/" first).  Others are dropped (a subtree under a dropped path goes too)."""
    kept: list[str] = []
    seen: set[str] = set()
    for path in cgroups:
        if not isinstance(path, str) or not path.startswith("/") or len(path.encode(errors="replace")) > MAX_PATH:
            continue
        if path == "/":
            if not seen:
                kept.append(path)
                seen.add(path)
            continue
        parts = path[1:].split("/")
        if len(parts) > MAX_DEPTH or any(p in ("", ".", "..") for p in parts) or path in seen:
            continue
        parent = path.rsplit("/", 1)[0] or "/"
        if parent in seen:
            kept.append(path)
            seen.add(path)
    return tuple(kept)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 63 else None


def _rate(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) and 0 <= value < 1e18 else None


def _rows(rows: Any, known: set[str]) -> tuple:
    if not isinstance(rows, list):
        return ()
    out = []
    done: set[str] = set()
    for row in rows[:MAX_CGROUPS]:
        if not isinstance(row, list) or len(row) != 7 or row[0] not in known or row[0] in done:
            continue
        done.add(row[0])
        out.append((row[0], _count(row[1]), _rate(row[2]), _count(row[3]), _count(row[4]),
                    _rate(row[5]), _rate(row[6])))
    return tuple(out)


def _machine_of(value: Any, known: set[str]) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {path: name for path, name in value.items()
            if path in known and isinstance(name, str) and name and len(name) <= MAX_NAME and "/" not in name}


class LineReader:
    """Bytes in, complete lines out; a line that grows past MAX_LINE is the far side's error."""

    def __init__(self, limit: int = MAX_LINE) -> None:
        self.limit = limit
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer += data
        lines = []
        start = 0
        while (end := self.buffer.find(b"\n", start)) >= 0:
            lines.append(bytes(self.buffer[start:end]))
            start = end + 1
        del self.buffer[:start]
        if len(self.buffer) > self.limit or any(len(line) > self.limit for line in lines):
            self.buffer.clear()
            raise WatchError(f"the far side sent a watch line longer than {self.limit} bytes")
        return lines
