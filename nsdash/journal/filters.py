"""journalctl's filter options, parsed and validated: pure logic, no journal access.

-p PRIORITY (names, numbers, FROM..TO), -u UNIT (mangled like systemd:
"sshd" means "sshd.service"), -b [N|ID] and --since/--until (journalctl's
time syntax, in local time).
"""

from __future__ import annotations

import time

from nsdash.errors import UsageError
from nsdash.system.frozen import Frozen

PRIORITY_NAMES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
UNIT_TYPES = ("service", "socket", "target", "device", "mount", "automount", "swap", "timer",
              "path", "slice", "scope")


class Filters(Frozen):
    """What to show.  priorities: the PRIORITY values shown (None: all).
    units: mangled unit names or globs.  boot: None (all boots), an int (journalctl's
    -b N: 1 = first, 0 = current/last, -1 = the one before) or a 32-hex boot ID.
    since/until: microseconds since the epoch."""

    priorities: frozenset[int] | None = None
    units: tuple[str, ...] = ()
    boot: int | str | None = None
    since: int | None = None
    until: int | None = None

    def admits_time(self, realtime: int) -> bool:
        return (self.since is None or realtime >= self.since) and (self.until is None or realtime <= self.until)

    def admits_priority(self, priority: int | None) -> bool:
        # Console lines carry no priority; they count as info, as journald files stdout.
        return self.priorities is None or (6 if priority is None else priority) in self.priorities


def _one_priority(text: str) -> int:
    t = text.strip().lower()
    if t.isdigit() and int(t) <= 7:
        return int(t)
    if t in PRIORITY_NAMES:
        return PRIORITY_NAMES.index(t)
    raise UsageError(f"unknown log level '{text}'",
                     "use 0-7 or one of " + ", ".join(PRIORITY_NAMES) + ", or a range like warning..err")


def parse_priority(text: str) -> frozenset[int]:
    """journalctl -p: one level (it and everything more important) or FROM..TO."""
    if ".." in text:
        lo_text, hi_text = text.split("..", 1)
        lo = _one_priority(lo_text) if lo_text else 0
        hi = _one_priority(hi_text) if hi_text else 7
        lo, hi = min(lo, hi), max(lo, hi)
        return frozenset(range(lo, hi + 1))
    return frozenset(range(0, _one_priority(text) + 1))


def mangle_unit(name: str) -> str:
    """Like systemd's unit_name_mangle_with_suffix(".service"): "sshd" -> "sshd.service"."""
    if not name or "/" in name:
        raise UsageError(f"invalid unit name '{name}'", "give a unit name such as 'sshd' or 'cron.service'")
    if is_glob(name):
        return name
    suffix = name.rsplit(".", 1)[-1] if "." in name else ""
    return name if suffix in UNIT_TYPES else f"{name}.service"


def is_glob(unit: str) -> bool:
    # No re here: importing it (enum, functools, collections with it) is milliseconds of every
    # `nsdash journal`; the options that need a pattern import it themselves.
    return "*" in unit or "?" in unit or "[" in unit


def parse_boot(text: str | None) -> int | str:
    """journalctl -b [N|ID]: no value means the current (last) boot."""
    if text is None or text == "":
        return 0
    import re
    t = text.strip().lower().replace("-", "") if len(text.strip()) > 8 else text.strip()
    if re.fullmatch(r"[0-9a-f]{32}", t):
        return t
    if re.fullmatch(r"[+-]?\d+", text.strip()):
        return int(text)
    raise UsageError(f"invalid boot '{text}'", "give a boot offset (0, -1, 1, ...) or a 32-digit boot ID")


_UNITS_US = {
    "us": 1, "usec": 1, "ms": 1000, "msec": 1000,
    "s": 10**6, "sec": 10**6, "second": 10**6, "seconds": 10**6,
    "m": 60 * 10**6, "min": 60 * 10**6, "minute": 60 * 10**6, "minutes": 60 * 10**6,
    "h": 3600 * 10**6, "hr": 3600 * 10**6, "hour": 3600 * 10**6, "hours": 3600 * 10**6,
    "d": 86400 * 10**6, "day": 86400 * 10**6, "days": 86400 * 10**6,
    "w": 7 * 86400 * 10**6, "week": 7 * 86400 * 10**6, "weeks": 7 * 86400 * 10**6,
    "month": 2629800 * 10**6, "months": 2629800 * 10**6, "M": 2629800 * 10**6,
    "y": 31557600 * 10**6, "year": 31557600 * 10**6, "years": 31557600 * 10**6,
}
_SPAN = r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)"


def boot_index(offset: int, count: int) -> int | None:
    """Where boot OFFSET (journalctl's -b: 1 is the first, 0 the last, -1 the one before) is in COUNT boots."""
    pick = offset - 1 if offset > 0 else count - 1 + offset
    return pick if 0 <= pick < count else None


def _span_us(text: str) -> int | None:
    """'1h 30min' -> microseconds; None when TEXT is not a span."""
    import re

    span = re.compile(_SPAN)
    pos, total = 0, 0.0
    text = text.strip()
    while pos < len(text):
        m = span.match(text, pos)
        if not m or m.group(2) not in _UNITS_US:
            return None
        total += float(m.group(1)) * _UNITS_US[m.group(2)]
        pos = m.end()
    return int(total) if text else None


def parse_time(text: str, now: float | None = None) -> int:
    """journalctl's --since/--until syntax -> microseconds since the epoch (local time)."""
    from datetime import datetime, timedelta  # only with --since/--until: not on every read

    now = time.time() if now is None else now
    t = text.strip()
    today = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
    words = {"now": datetime.fromtimestamp(now), "today": today,
             "yesterday": today - timedelta(days=1), "tomorrow": today + timedelta(days=1)}
    if t in words:
        return int(words[t].timestamp() * 10**6)
    if t.startswith("@"):
        try:
            return int(float(t[1:]) * 10**6)
        except ValueError:
            pass
    if t[:1] in "+-":
        span = _span_us(t[1:])
        if span is not None:
            return int(now * 10**6) + (span if t[0] == "+" else -span)
    if t.endswith(" ago"):
        span = _span_us(t[:-4])
        if span is not None:
            return int(now * 10**6) - span
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d",
                "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f"):
        try:
            return int(datetime.strptime(t, fmt).timestamp() * 10**6)
        except ValueError:
            continue
    for fmt in ("%H:%M:%S", "%H:%M"):
        try:
            clock = datetime.strptime(t, fmt)
        except ValueError:
            continue
        stamp = today.replace(hour=clock.hour, minute=clock.minute, second=clock.second)
        return int(stamp.timestamp() * 10**6)
    raise UsageError(f"failed to parse timestamp '{text}'",
                     "use 'YYYY-MM-DD HH:MM:SS', 'today', 'yesterday', '-1h', '10min ago' or '@EPOCH'")
