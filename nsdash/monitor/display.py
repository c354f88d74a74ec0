"""systemd-cgtop's table, as pure functions: which rows, in what order, formatted how.

The text layout follows systemd-cgtop (systemd 252) byte for byte in batch
mode: a path column as wide as the longest path, then ' %7s' tasks,
' %6.1f' CPU percent (or ' %*s' CPU time), and ' %8s' for memory, input/s and
output/s; '-' where a value is not known; blank lines between refreshes.
"""

from __future__ import annotations

# The heap functions from the C module heapq itself takes them from: heapq.py (20 KB of
# bytecode, mostly merge and nlargest) is a module more on every `nsdash cgtop`.
try:
    from _heapq import heapify, heappop, heappush
except ImportError:  # an interpreter without the accelerator
    from heapq import heapify, heappop, heappush

from nsdash.monitor.counters import Counters
from nsdash.monitor.rates import Rates
from nsdash.system.frozen import Frozen
from nsdash.system.records import Record

TYPE_CHECKING = False  # mypy reads this as True; collections.abc stays unimported at run time
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

ORDERS = ("path", "tasks", "cpu", "memory", "io")

_IEC = (("E", 1 << 60), ("P", 1 << 50), ("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10))

_TIMESPAN = (("y", 31557600 * 10**6), ("month", 2629800 * 10**6), ("w", 604800 * 10**6),
             ("d", 86400 * 10**6), ("h", 3600 * 10**6), ("min", 60 * 10**6), ("s", 10**6),
             ("ms", 1000), ("us", 1))


# format_bytes' answers, bounded (a dict, not functools.lru_cache: functools is a module more
# for `nsdash cgtop -b` to import, and a refresh asks for the same few thousand sizes again).
_BYTES_CACHE_LIMIT = 8192
_bytes_cache: dict[int, str] = {}


def format_bytes(n: int) -> str:
    """systemd's format_bytes(): IEC units, one truncated decimal, 'B' below 1K."""
    text = _bytes_cache.get(n)
    if text is None:
        if len(_bytes_cache) >= _BYTES_CACHE_LIMIT:
            _bytes_cache.clear()
        text = _bytes_cache[n] = _format_bytes(n)
    return text


def _format_bytes(n: int) -> str:
    for i, (suffix, factor) in enumerate(_IEC):
        if n >= factor:
            last = i == len(_IEC) - 1
            decimal = (n * 10 // factor) % 10 if last else (n // _IEC[i + 1][1] * 10 // 1024) % 10
            return f"{n // factor}.{decimal}{suffix}"
    return f"{n}B"


def format_timespan(usec: int, accuracy: int = 1) -> str:
    """systemd's format_timespan() (accuracy 0 behaves as 1 microsecond)."""
    if usec <= 0:
        return "0"
    accuracy = max(accuracy, 1)
    parts: list[str] = []
    t = usec
    for suffix, unit in _TIMESPAN:
        if t <= 0 or (t < accuracy and parts):
            break
        if t < unit:
            continue
        a, b = divmod(t, unit)
        sep = " " if parts else ""
        if t < 60 * 10**6 and b > 0:
            j = len(str(unit)) - 1  # digits after the point for this unit
            cc = accuracy
            while cc > 1:
                b //= 10
                j -= 1
                cc //= 10
            if j > 0:
                parts.append(f"{sep}{a}.{b:0{j}d}{suffix}")
                t = 0
                continue
        parts.append(f"{sep}{a}{suffix}")
        t = b
    return "".join(parts)


def ellipsize(text: str, width: int, percent: int = 33) -> str:
    """systemd's ellipsize(): keep PERCENT of the room at the start, the rest at the end."""
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    x = (width - 1) * percent // 100
    return text[:x] + "…" + text[len(text) - (width - x - 1):]


class Row(Record):
    """One cgroup as cgtop shows it; None where systemd-cgtop shows '-'."""

    path: str
    tasks: int | None
    cpu_percent: float | None
    cpu_usec: int | None
    memory: int | None
    io_read_bps: float | None
    io_write_bps: float | None
    counters: Counters
    extra: Mapping[str, float | int | None] | None = None


def rows_from(counters: Mapping[str, Counters], rates: Mapping[str, Rates]) -> list[Row]:
    """The cgroups cgtop shows: those with at least one known value (zero tasks or memory count as unknown)."""
    rows = []
    none = Rates()
    new = tuple.__new__  # Row(...) without a Python call per row (thousands per refresh)
    for path, c in counters.items():
        r = rates.get(path) or none
        tasks = c.tasks if c.tasks else None
        memory = c.memory if c.memory else None
        io_known = r.io_read_bps is not None and r.io_write_bps is not None
        if tasks is None and r.cpu_percent is None and memory is None and not io_known:
            continue
        cpu_usec = None if c.cpu_ns is None else c.cpu_ns // 1000
        rows.append(new(Row, (path, tasks, r.cpu_percent, cpu_usec, memory,
                              r.io_read_bps if io_known else None, r.io_write_bps if io_known else None,
                              c, None)))
    return rows


def _keys(rows: Sequence[Row], order: str, cpu_time: bool) -> list[tuple]:
    """Each row's sort key: bigger first, known before unknown; the path breaks ties."""
    if order == "path":
        return [(0, 0, r.path) for r in rows]
    values: list[float | int | None]
    if order == "cpu":
        values = [r.cpu_usec for r in rows] if cpu_time else [r.cpu_percent for r in rows]
    elif order == "tasks":
        values = [r.tasks for r in rows]
    elif order == "memory":
        values = [r.memory for r in rows]
    elif order == "io":
        values = [None if r.io_read_bps is None else r.io_read_bps + (r.io_write_bps or 0) for r in rows]
    else:
        values = [None] * len(rows)
    return [(1, 0, r.path) if v is None else (0, -v, r.path) for r, v in zip(rows, values, strict=True)]


def order_rows(rows: Sequence[Row], order: str = "cpu", cpu_time: bool = False,
               parents_first: bool = True) -> list[Row]:
    """Sort like systemd-cgtop: by ORDER, but a cgroup never before a shown ancestor.

    systemd-cgtop folds "parent first" into its qsort comparison, which is not
    a consistent order; here it is a priority walk: the best-ranked row whose
    shown ancestors are already out goes next.  Done as one sort: rows go out in
    key order, one whose shown ancestor is not out yet waits for it, and when it
    goes out its waiting descendants follow at once, best first (they rank above
    every row not reached yet).
    """
    keys = _keys(rows, order, cpu_time)
    ranked = sorted(range(len(rows)), key=keys.__getitem__)
    if not parents_first:
        return [rows[i] for i in ranked]
    by_path = {r.path: r for r in rows}
    out: list[Row] = []
    emitted: set[str] = set()
    waiting: dict[str, list[tuple]] = {}
    for i in ranked:
        row = rows[i]
        path = row.path
        if path != "/" and (path[:path.rfind("/")] or "/") not in emitted:  # (most rows: the parent is out)
            anc = _shown_ancestor(path, by_path)
            if anc is not None and anc not in emitted:
                waiting.setdefault(anc, []).append((keys[i], i))
                continue
        out.append(row)
        emitted.add(path)
        if path in waiting:
            _release(path, rows, waiting, out, emitted)
    return out


def _release(path: str, rows: Sequence[Row], waiting: dict[str, list[tuple]], out: list[Row],
             emitted: set[str]) -> None:
    """PATH just went out: the rows that waited for it go out best first, with theirs."""
    ready = waiting.pop(path)
    heapify(ready)
    while ready:
        _, i = heappop(ready)
        row = rows[i]
        out.append(row)
        emitted.add(row.path)
        for child in waiting.pop(row.path, ()):
            heappush(ready, child)


def _shown_ancestor(path: str, shown: Mapping[str, Row]) -> str | None:
    while path != "/":
        path = path[:path.rfind("/")] or "/"
        if path in shown:
            return path
    return None


# The text of each figure seen, by the figure (most repeat: 0B/s, the same sizes); a float equal to
# an int is the same key and has the same text.
_BYTES_SHOWN: dict[float | int | None, str] = {}
_RAW_SHOWN: dict[float | int | None, str] = {}


def _maybe_bytes(value: float | int | None, raw: bool) -> str:
    shown = _RAW_SHOWN if raw else _BYTES_SHOWN
    text = shown.get(value)
    if text is None:
        if value is None:
            text = "-"
        else:
            n = int(value)
            text = str(n) if raw else format_bytes(n)
        if len(shown) > 65536:
            shown.clear()
        shown[value] = text
    return text


def _maybe_timespan(usec: int | None, raw: bool) -> str:
    if usec is None:
        return "-"
    return str(usec) if raw else format_timespan(usec)


class Extra(Frozen):
    """A column nsdash adds behind --extra: header, width and how to get the text."""

    name: str
    header: str
    width: int


EXTRA_COLUMNS: dict[str, tuple[Extra, ...]] = {
    "limit": (Extra("memory_limit", "MemLimit", 8),),
    "throttle": (Extra("nr_throttled", "Throttled", 9), Extra("throttled_usec", "Thr-Time", 8)),
    "pressure": (Extra("cpu_pressure", "CPU-PSI", 7), Extra("memory_pressure", "Mem-PSI", 7),
                 Extra("io_pressure", "IO-PSI", 7)),
    "net": (Extra("net_rx_bps", "NetRx/s", 8), Extra("net_tx_bps", "NetTx/s", 8)),
}


def _extra_text(col: Extra, row: Row, raw: bool) -> str:
    if col.name in ("net_rx_bps", "net_tx_bps"):
        value = (row.extra or {}).get(col.name)
        return _maybe_bytes(value, raw)
    value = getattr(row.counters, col.name)
    if value is None:
        return "-"
    if col.name == "memory_limit":
        return _maybe_bytes(value, raw)
    if col.name == "throttled_usec":
        return _maybe_timespan(int(value), raw)
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def render(rows: Sequence[Row], *, cpu_time: bool = False, raw: bool = False,
           path_width: int | None = None, header: str | None = None,
           extras: Sequence[Extra] = (), cpu_width: int | None = None) -> list[str]:
    """The table's lines.  PATH_WIDTH None: as wide as the longest path (batch mode).

    CPU_WIDTH None: the CPU Time column is as wide as its longest value.
    """
    cpu_texts = [_maybe_timespan(r.cpu_usec, raw) for r in rows] if cpu_time else []
    if cpu_width is None:
        cpu_width = max((len(t) for t in cpu_texts), default=0)
    cut = path_width is not None  # (batch mode: the column fits every path)
    if path_width is None:
        path_width = max([3, *(len(r.path) for r in rows)])
    lines = []
    if header is not None:
        lines.append(header)
    shown = _RAW_SHOWN if raw else _BYTES_SHOWN
    for i, r in enumerate(rows):
        path = ellipsize(r.path, path_width) if cut else r.path
        tasks = "       -" if r.tasks is None else f" {r.tasks:7d}"
        if cpu_time:
            cpu = f" {cpu_texts[i]:>{cpu_width}}"
        else:
            cpu = "      -" if r.cpu_percent is None else f" {r.cpu_percent:6.1f}"
        # Each figure's text from those seen before; a new one made (and kept) by _maybe_bytes.
        memory = shown.get(r.memory) or _maybe_bytes(r.memory, raw)
        read = shown.get(r.io_read_bps) or _maybe_bytes(r.io_read_bps, raw)
        write = shown.get(r.io_write_bps) or _maybe_bytes(r.io_write_bps, raw)
        line = f"{path:<{path_width}}{tasks}{cpu} {memory:>8} {read:>8} {write:>8}"
        if extras:
            line += "".join([f" {_extra_text(col, r, raw):>{col.width}}" for col in extras])
        lines.append(line)
    return lines


def cpu_time_width(rows: Sequence[Row], raw: bool = False) -> int:
    """Width of the CPU Time column: its longest value (systemd's maxtcpu)."""
    return max((len(_maybe_timespan(r.cpu_usec, raw)) for r in rows), default=0)


# The escape sequences systemd-cgtop 252 writes, byte for byte.
_UNDERLINE, _NORMAL = "\x1b[0;4m", "\x1b[0m"
_ON, _OFF = "\x1b[0;1;39m" + _UNDERLINE, _NORMAL + _UNDERLINE
HOME_CLEAR = "\x1b[H\x1b[2J" + _NORMAL


def header_line(path_width: int, count_label: str, cpu_time: bool, cpu_width: int,
                extras: Sequence[Extra] = (), order: str | None = None, ansi: bool = False) -> str:
    """The column titles systemd-cgtop prints on a terminal, underlined, the sort column bold."""
    cpu = f"{'CPU Time':>{cpu_width}}" if cpu_time else f"{'%CPU':>6}"
    cells = [("path", f"{'Control Group':<{path_width}}"), ("tasks", f"{count_label:>7}"), ("cpu", cpu),
             ("memory", f"{'Memory':>8}"), ("io", f"{'Input/s':>8}"), ("io", f"{'Output/s':>8}")]
    cells += [("", f"{c.header:>{c.width}}") for c in extras]
    if not ansi:
        return " ".join(text for _, text in cells)
    on = lambda key: _ON if key == order else ""  # noqa: E731
    off = lambda key: _OFF if key == order else ""  # noqa: E731
    return _UNDERLINE + " ".join(f"{on(k)}{t}{off(k)}" for k, t in cells) + _NORMAL
