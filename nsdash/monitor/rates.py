"""CPU percent and byte rates: pure functions of two samples.

As systemd-cgtop computes them: the delta of a cumulative counter over the
delta of monotonic time.  CPU is a fraction of one CPU, so N busy CPUs read
N x 100%.  Without a previous sample (the first refresh) there is no value.
A counter that went backwards (the cgroup was removed and made again between
two samples) gives None rather than a negative rate.
"""

from __future__ import annotations

from nsdash.monitor.counters import Counters
from nsdash.monitor.sampler import Sample
from nsdash.system.records import Record

TYPE_CHECKING = False  # mypy reads this as True; collections.abc stays unimported at run time
if TYPE_CHECKING:
    from collections.abc import Mapping

    from nsdash.monitor.net import NetCounters  # net_rates' inputs: cgtop imports net only for --extra=net


class Rates(Record):
    """Per-second figures for one cgroup between two samples."""

    cpu_percent: float | None = None  # 100.0 = one CPU busy
    io_read_bps: float | None = None
    io_write_bps: float | None = None


def delta_rate(before: int | None, after: int | None, seconds: float) -> float | None:
    """(after - before) / seconds, or None when either is unknown or the counter went back."""
    if before is None or after is None or after < before or seconds <= 0:
        return None
    return (after - before) / seconds


def cpu_percent(before: Counters | None, after: Counters, seconds: float) -> float | None:
    if before is None or before.cpu_ns is None or after.cpu_ns is None:
        return None
    rate = delta_rate(before.cpu_ns, after.cpu_ns, seconds)
    return None if rate is None else rate / 1e7  # ns per s -> percent of one CPU


def rates_between(before: Sample | None, after: Sample) -> dict[str, Rates]:
    """Rates for every cgroup in AFTER; empty Rates where BEFORE lacks it (first sample)."""
    if before is None:
        return {path: Rates() for path in after.counters}
    seconds = after.timestamp - before.timestamp
    old = before.counters
    result: dict[str, Rates] = {}
    empty = Rates()
    idle = Rates(0.0, 0.0, 0.0)
    for path, now in after.counters.items():
        prev = old.get(path)
        if prev is None:
            result[path] = empty
        elif prev == now and now.cpu_ns is not None and now.io_read_bytes is not None \
                and now.io_write_bytes is not None and seconds > 0:
            result[path] = idle  # nothing moved (most cgroups, most refreshes): one comparison
        else:
            result[path] = Rates(
                cpu_percent(prev, now, seconds),
                delta_rate(prev.io_read_bytes, now.io_read_bytes, seconds),
                delta_rate(prev.io_write_bytes, now.io_write_bytes, seconds),
            )
    return result


def net_rates(before: Mapping[str, NetCounters | None] | None, after: Mapping[str, NetCounters | None],
              seconds: float) -> dict[str, tuple[float | None, float | None]]:
    """Machine -> (received, sent) bytes per second between two network samples."""
    result: dict[str, tuple[float | None, float | None]] = {}
    for name, now in after.items():
        prev = None if before is None else before.get(name)
        if prev is None or now is None:
            result[name] = (None, None)
        else:
            result[name] = (delta_rate(prev.rx_bytes, now.rx_bytes, seconds),
                            delta_rate(prev.tx_bytes, now.tx_bytes, seconds))
    return result
