"""The host's state beside an at-rest figure, so that a figure from a host not at rest is seen as such.

A process that sleeps a second between short bursts of work (the dashboard at rest) pays for every
burst with cold caches and TLBs, and how much that costs depends on what else ran meanwhile: on
this 2-core VM the same snapshot cost 1.1 ms back to back and 7.7-10.7 ms after a second asleep
(session 13, rest24), and the same dashboard measured 0.9% and 9.9% of a core half an hour apart
(session 12).  So an at-rest row is printed with:

- the load average and the other processes' CPU over the same window (/proc/stat less our own);
- the wake-up penalty: a fixed piece of work shaped like a refresh (_Work), its CPU time after a
  second asleep over its CPU time back to back (near 1.0 where nothing evicted our caches meanwhile),
  measured by a child over the same window (its CPU is left out of the others');
- the steal time (the hypervisor's other guests) and DAMON's kdamond, over the window;
- dying cgroups (removed, still pinned by page cache): v1's num_cgroups in /proc/cgroups less the
  directories there, cgroup2's nr_dying_descendants.  Checked, not a cause here: reads of
  memory.usage_in_bytes, memory.stat, cpuacct.usage, cpu.stat cost the same with 1,156 memory
  cgroups (1,000 dying, 64 KiB of page cache each) as with 153.

Nothing here is a timed test: it describes the host a bench ran on.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass

# Above these the host is called "not at rest" in the bench's line and rows.
BUSY_OTHERS = 10.0  # % of one core used by other processes over the window
PENALTY = 2.0  # the wake-up penalty


def cpu_ticks(text: str) -> tuple[int, int]:
    """(busy, steal) clock ticks of all CPUs from /proc/stat's TEXT (its first line: user nice
    system idle iowait irq softirq steal ...); busy leaves idle, iowait and steal out."""
    fields = [int(f) for f in text.split("\n", 1)[0].split()[1:]]
    fields += [0] * (8 - len(fields))
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return user + nice + system + irq + softirq, steal


def v1_cgroup_counts(text: str) -> dict[str, tuple[int, int]]:
    """/proc/cgroups' TEXT: controller -> (hierarchy id, num_cgroups), enabled controllers only."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) == 4 and parts[3] == "1":
            out[parts[0]] = (int(parts[1]), int(parts[2]))
    return out


def _directories(top: str) -> int:
    return sum(len(dirs) for _, dirs, _ in os.walk(top)) + 1


def dying_cgroups() -> dict[str, int]:
    """Removed cgroups the kernel still keeps: v1 memory's (num_cgroups less its directories) and
    cgroup2's (nr_dying_descendants at its root); what this host does not have is left out."""
    from nsdash.system import cgroupfs

    layout = cgroupfs.detect()
    out = {}
    try:
        with open("/proc/cgroups") as f:
            counts = v1_cgroup_counts(f.read())
    except OSError:
        counts = {}
    memory = layout.v1.get("memory")
    if memory is not None and counts.get("memory", (0, 0))[0] > 0:
        out["memory (v1)"] = max(0, counts["memory"][1] - _directories(str(memory)))
    if layout.unified is not None:
        try:
            with open(os.path.join(layout.unified, "cgroup.stat")) as f:
                stat = dict(line.split() for line in f if line.strip())
            out["cgroup2"] = int(stat.get("nr_dying_descendants", 0))
        except (OSError, ValueError):
            pass
    return out


class _Work:
    """A fixed piece of work shaped like a refresh: a walk over 20,000 of 60,000 small objects
    (more memory than the caches hold, so what a second asleep evicted is fetched again) and 200
    reads of /proc and cgroup files.  A smaller piece (dict churn in the caches) showed no penalty
    where this showed x2.4 and a dashboard snapshot x7 (1.1 ms back to back, 7.7 after 1 s)."""

    def __init__(self) -> None:
        self.objects: list[dict[str, int | str]] = [{"a": i, "b": str(i)} for i in range(60000)]
        paths = ("/proc/self/stat", "/proc/loadavg", "/proc/stat", "/sys/fs/cgroup/unified/cgroup.stat",
                 "/sys/fs/cgroup/cgroup.stat")
        self.fds = []
        for path in paths:
            try:
                self.fds.append(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
            except OSError:
                continue

    def __call__(self) -> int:
        total = 0
        for o in self.objects[::3]:
            total += len(o)
        for _ in range(200 // max(1, len(self.fds))):
            for fd in self.fds:
                os.pread(fd, 4096, 0)
        return total


def _kdamond_ticks() -> int:
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
        except OSError:
            continue
        if head.split("(", 1)[-1].startswith("kdamond"):
            fields = rest.split()
            total += int(fields[11]) + int(fields[12])
    return total


def _stat() -> tuple[int, int]:
    with open("/proc/stat") as f:
        return cpu_ticks(f.read())


@dataclass
class Window:
    """The host over one measured window; `ours` is the measured process's CPU (% of a core)."""

    seconds: float
    others: float  # % of one core: everything busy on the host less `ours`
    steal: float
    kdamond: float
    load: float
    penalty: tuple[float, float, float] | None
    dying: dict[str, int]

    def at_rest(self) -> bool:
        return self.others < BUSY_OTHERS and (self.penalty is None or not self.penalty[0] >= PENALTY)

    def line(self) -> str:
        pen = (f"wake-up penalty x{self.penalty[0]:.1f} ({self.penalty[1]:.2f} ms of fixed work after 1 s asleep, "
               f"{self.penalty[2]:.2f} back to back)" if self.penalty else "wake-up penalty not measured")
        dying = ", ".join(f"{k} {v}" for k, v in self.dying.items()) or "none seen"
        verdict = "at rest" if self.at_rest() else (f"NOT AT REST (others >= {BUSY_OTHERS:g}% or penalty >= "
                                                    f"x{PENALTY:g}): the figure is the host's as much as ours")
        return (f"host {verdict}: others {self.others:.1f}% of a core, load {self.load:.2f}, {pen}; "
                f"steal {self.steal:.2f}%, kdamond {self.kdamond:.2f}%; dying cgroups: {dying}")

    def note(self) -> str:
        pen = f"penalty x{self.penalty[0]:.1f}" if self.penalty else "penalty -"
        return (f"host {'at rest' if self.at_rest() else 'NOT at rest'}: others {self.others:.1f}%, {pen}, "
                f"load {self.load:.2f}, steal {self.steal:.2f}%")


class Watch:
    """Start before a measured window, `end(ours)` after it (OURS: the measured processes' CPU over
    it, % of a core).  The wake-up penalty is measured over the same window by a child process
    (its sleeps are the window's; its CPU is not ours and is taken out of the others')."""

    def __init__(self, penalty: bool = True) -> None:
        import subprocess
        import sys

        self._child = (subprocess.Popen([sys.executable, "-S", __file__, "penalty"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True) if penalty else None)
        self._t = time.monotonic()
        self._busy, self._steal = _stat()
        self._kd = _kdamond_ticks()

    def end(self, ours: float) -> Window:
        wall = time.monotonic() - self._t
        busy, steal = _stat()
        kd = _kdamond_ticks()
        hz = os.sysconf("SC_CLK_TCK")

        def pct(ticks: float) -> float:
            return 100 * ticks / hz / wall if wall > 0 else 0.0

        penalty, child = None, 0.0
        if self._child is not None:
            out, _ = self._child.communicate("")  # its stdin closed: it prints and exits
            fields = out.split()
            if len(fields) == 3:  # none after a window shorter than a second
                cold, hot, ticks = fields
                penalty, child = (float(cold) / float(hot), float(cold), float(hot)), pct(int(ticks))
            elif len(fields) == 1:
                child = pct(int(fields[0]))
        return Window(wall, max(0.0, pct(busy - self._busy) - ours - child), pct(steal - self._steal),
                      pct(kd - self._kd), os.getloadavg()[0], penalty, dying_cgroups())


def _penalty_child() -> None:
    """`hoststate.py penalty`: the fixed work back to back, then once after each second asleep
    until stdin closes; prints both medians (ms) and its own CPU ticks (only those before a second)."""
    import select
    import sys

    work = _Work()
    work()
    hot, cold = [], []
    for _ in range(6):
        t = time.thread_time()
        work()
        hot.append(time.thread_time() - t)
    while not select.select([sys.stdin], [], [], 1.0)[0]:
        t = time.thread_time()
        work()
        cold.append(time.thread_time() - t)
    times = os.times()
    ticks = round((times.user + times.system) * os.sysconf("SC_CLK_TCK"))
    if cold and min(hot) > 0:
        print(f"{statistics.median(cold) * 1000} {statistics.median(hot) * 1000} {ticks}")
    else:
        print(ticks)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="A library of the benches (bench_dashboard's at-rest rows); run "
                                             "alone, the child a Watch starts: the wake-up penalty until stdin closes.")
    ap.add_argument("what", choices=["penalty"])
    ap.parse_args()
    _penalty_child()
