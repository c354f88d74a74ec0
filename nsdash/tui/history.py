"""The last minute of each machine's CPU, memory and I/O, kept from snapshot to snapshot.

Pure: fed one Snapshot at a time on the UI thread (cheap: a dict lookup per
machine), read by the machine list's sparklines and the machine view.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from nsdash.tui.messages import Snapshot

WINDOW = 60  # samples: a minute at the default 1 s refresh


class Series:
    """One machine's last WINDOW samples of each figure (None: not known then)."""

    __slots__ = ("cpu", "memory", "io")

    def __init__(self) -> None:
        self.cpu: deque[float | None] = deque(maxlen=WINDOW)
        self.memory: deque[float | None] = deque(maxlen=WINDOW)
        self.io: deque[float | None] = deque(maxlen=WINDOW)


class MetricHistory:
    def __init__(self) -> None:
        self.by_machine: dict[str, Series] = {}
        self.samples = 0  # snapshots taken in: the newest sample's number + 1, the same for every machine
        # (name, per) -> group number -> the mean of that whole group (cpu_means): a group whole in
        # the window never changes, so at rest only the first and the newest bar are worked out again.
        self._whole_means: dict[tuple[str, int], dict[int, float | None]] = {}

    def update(self, snap: Snapshot) -> None:
        if not snap.machines and snap.errors:
            return  # an error-only snapshot carries no figures
        self.samples += 1
        rows = {r.path: r for r in snap.rows}
        live = set()
        tops: dict[str, str] | None = None
        for m in snap.machines:
            live.add(m.name)
            series = self.by_machine.setdefault(m.name, Series())
            row = rows.get(m.cgroup) if m.cgroup else None
            if m.cgroup is None and m.host is not None:
                # a remote machine: no cgroup of its own here, its row is the top one the map names
                tops = _tops(snap.machine_of) if tops is None else tops
                top = tops.get(m.name)
                row = rows.get(top) if top else None
            series.cpu.append(row.cpu_percent if row else None)
            series.memory.append(float(row.memory) if row and row.memory is not None else None)
            io = None
            if row and row.io_read_bps is not None:
                io = row.io_read_bps + (row.io_write_bps or 0.0)
            series.io.append(io)
        for gone in set(self.by_machine) - live:
            del self.by_machine[gone]
            for key in [key for key in self._whole_means if key[0] == gone]:
                del self._whole_means[key]

    def cpu(self, name: str) -> list[float | None]:
        s = self.by_machine.get(name)
        return list(s.cpu) if s else []

    def cpu_means(self, name: str, per: int) -> list[float | None]:
        """The machine's CPU as the means of PER samples each, oldest first (None: none known).
        The groups are fixed by the samples' numbers, not counted back from the newest: a group
        holds the same samples from refresh to refresh (the newest fills up), so a chart of them
        moves one step every PER refreshes instead of every bar changing at every refresh."""
        s = self.by_machine.get(name)
        if not s:
            return []
        values = list(s.cpu)
        end = self.samples  # the number after the newest sample's
        first = end - len(values)  # the number of the oldest sample kept
        whole = self._whole_means.setdefault((name, per), {})
        means: list[float | None] = []
        for group in range(first // per, (end + per - 1) // per):
            lo, hi = group * per, group * per + per
            if first <= lo and hi <= end:
                if group not in whole:
                    whole[group] = _mean(values[lo - first:hi - first])
                means.append(whole[group])
            else:  # the oldest group, partly gone from the window, or the newest, still filling
                means.append(_mean(values[max(lo, first) - first:min(hi, end) - first]))
        if len(whole) > len(means):  # groups gone from the window
            oldest = first // per
            for group in [group for group in whole if group < oldest]:
                del whole[group]
        return means


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _tops(machine_of: Mapping[str, str]) -> dict[str, str]:
    """Each machine's top cgroup: the shortest path the map gives it."""
    tops: dict[str, str] = {}
    for path, name in machine_of.items():
        if name not in tops or len(path) < len(tops[name]):
            tops[name] = path
    return tops
