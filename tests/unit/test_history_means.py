"""MetricHistory.cpu_means keeps the means of whole groups between refreshes: what it answers
must stay what the plain definition gives, refresh after refresh, machines coming and going."""

from __future__ import annotations

import random

from nsdash.tui import sample_data as sd
from nsdash.tui.history import WINDOW, MetricHistory


def plain_means(values: list[float | None], samples: int, per: int) -> list[float | None]:
    """The definition: samples grouped by their numbers (number // PER), each group's known mean."""
    first = samples - len(values)
    groups: dict[int, list[float]] = {}
    for number, value in enumerate(values, first):
        known = groups.setdefault(number // per, [])
        if value is not None:
            known.append(value)
    return [sum(g) / len(g) if g else None for _, g in sorted(groups.items())]


def test_cpu_means_match_the_definition_over_random_histories():
    rng = random.Random(16)
    bb = next(m for m in sd.MACHINES if m.name == "demo-busybox")
    deb = next(m for m in sd.MACHINES if m.name == "demo-debian")
    for per in (1, 2, 3, 7):
        history = MetricHistory()
        checked = 0
        for _ in range(3 * WINDOW):
            machines = tuple(m for m in sd.MACHINES if m is not deb or rng.random() > 0.05)  # debian comes and goes
            rows = tuple(r._replace(cpu_percent=rng.choice([None, 0.0, 0.1, rng.uniform(0, 50)]))
                         if r.path in (bb.cgroup, deb.cgroup) else r for r in sd.ROWS)
            history.update(sd.snapshot(0)._replace(machines=machines, rows=rows))
            for name in ("demo-busybox", "demo-debian"):
                got = history.cpu_means(name, per)
                assert got == plain_means(history.cpu(name), history.samples, per), (per, name, history.samples)
                checked += bool(got)
        assert checked > 2 * WINDOW
        assert all(len(whole) <= WINDOW // per + 2 for whole in history._whole_means.values())


def test_a_machine_gone_and_back_starts_its_means_afresh():
    history = MetricHistory()
    bb = next(m for m in sd.MACHINES if m.name == "demo-busybox")
    with_cpu = lambda value: tuple(r._replace(cpu_percent=value) if r.path == bb.cgroup else r  # noqa: E731
                                   for r in sd.ROWS)
    for _ in range(9):
        history.update(sd.snapshot(0)._replace(rows=with_cpu(10.0)))
    assert history.cpu_means("demo-busybox", 3) == [10.0, 10.0, 10.0]
    others = tuple(m for m in sd.MACHINES if m.name != "demo-busybox")
    history.update(sd.snapshot(0)._replace(machines=others))
    for _ in range(3):
        history.update(sd.snapshot(0)._replace(rows=with_cpu(1.0)))
    assert history.cpu_means("demo-busybox", 3) == [1.0, 1.0]  # (samples 10-12: groups 3 and 4)
