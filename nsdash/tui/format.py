"""Pure text helpers for the widgets: sparklines, uptimes, sizes, rates."""

from __future__ import annotations

from collections.abc import Sequence

from nsdash.monitor.display import format_bytes

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float | None], width: int, top: float | None = None) -> str:
    """The last WIDTH values as bars; unknown values are blanks.  TOP defaults to the maximum seen."""
    tail = list(values)[-width:]
    known = [v for v in tail if v is not None]
    scale = top if top is not None else max(known, default=0.0)
    out = []
    for v in tail:
        if v is None:
            out.append(" ")
        elif scale <= 0 or v <= 0:
            out.append(BARS[0])
        else:
            out.append(BARS[min(len(BARS) - 1, int(v / scale * (len(BARS) - 1) + 0.5))])
    return "".join(out).rjust(width)


def uptime(seconds: float | None) -> str:
    """1d 2h, 3h 4m, 5m, 7s: the two biggest units, like machinectl's timespans, but seconds only
    in the first minute: a list of machines then repaints a row once a minute, not every second."""
    if seconds is None or seconds < 0:
        return "-"
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d {h}h"
    if h:
        return f"{h}h {m}m"
    if m:
        return f"{m}m"
    return f"{s}s"


def size(n: float | int | None) -> str:
    return "-" if n is None else format_bytes(int(n))


def rate(bps: float | None) -> str:
    return "-" if bps is None else format_bytes(int(bps)) + "/s"


def percent(p: float | None) -> str:
    return "-" if p is None else f"{p:.1f}"
