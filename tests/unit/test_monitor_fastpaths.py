"""The cgtop refresh's shortcuts (issue 16) give what the general path gives."""

from __future__ import annotations

import heapq
import random
from types import MappingProxyType

import pytest

from nsdash.monitor import counters as C
from nsdash.monitor import display
from nsdash.monitor.counters import Counters
from nsdash.monitor.rates import Rates, rates_between
from nsdash.monitor.sampler import Sample


def test_a_cgroup_that_never_did_io_parses_as_the_general_parser_would():
    fast = [None] * C.NFIELDS
    assert C.parse_blkio(b"Total 0\n", fast)
    slow = [None] * C.NFIELDS
    assert C.parse_blkio(b"8:0 Read 0\n8:0 Write 0\nTotal 0\n", slow)
    assert fast[C.IO_READ] == slow[C.IO_READ] == 0 and fast[C.IO_WRITE] == slow[C.IO_WRITE] == 0
    busy = [None] * C.NFIELDS
    assert C.parse_blkio(b"8:0 Read 4096\n8:0 Write 512\nTotal 4608\n", busy)
    assert (busy[C.IO_READ], busy[C.IO_WRITE]) == (4096, 512)


def test_unchanged_counters_read_as_idle_and_partial_ones_as_unknown():
    still = Counters(tasks=3, cpu_ns=10**9, memory=4096, io_read_bytes=7, io_write_bytes=9)
    no_io = Counters(tasks=3, cpu_ns=10**9)
    before = Sample(1.0, MappingProxyType({"/still": still, "/no-io": no_io}))
    after = Sample(2.0, MappingProxyType({"/still": still, "/no-io": no_io}))
    rates = rates_between(before, after)
    assert rates["/still"] == Rates(0.0, 0.0, 0.0)
    assert rates["/no-io"] == Rates(0.0, None, None)  # what it never had stays unknown
    same_time = rates_between(before, Sample(1.0, before.counters))
    assert same_time["/still"] == Rates()  # no time passed: no rate at all


def _row(path: str, cpu: float | None) -> display.Row:
    return display.Row(path, 1, cpu, None, None, None, None, Counters())


def _reference_order(rows: list[display.Row], order: str = "cpu") -> list[str]:
    """The priority walk one push at a time, as it was written first."""
    keys = dict(zip([r.path for r in rows], display._keys(rows, order, False), strict=True))
    by_path = {r.path: r for r in rows}
    waiting: dict[str, list[display.Row]] = {}
    ready: list[tuple] = []
    for r in rows:
        anc = display._shown_ancestor(r.path, by_path)
        if anc is None:
            heapq.heappush(ready, (keys[r.path], r.path))
        else:
            waiting.setdefault(anc, []).append(r)
    out = []
    while ready:
        _, path = heapq.heappop(ready)
        out.append(path)
        for child in waiting.pop(path, ()):
            heapq.heappush(ready, (keys[child.path], child.path))
    return out


def test_thousands_of_siblings_come_out_in_the_same_order():
    rows = [_row("/", 50.0), _row("/a", 1.0), _row("/b", 30.0)]
    rows += [_row(f"/a/g{i}", float(i * 37 % 101)) for i in range(500)]
    rows += [_row(f"/b/g{i}", None if i % 3 == 0 else float(i % 7)) for i in range(200)]
    rows += [_row("/a/g5/deep", 99.0)]
    got = [r.path for r in display.order_rows(rows, "cpu")]
    assert got == _reference_order(rows)
    assert got.index("/a") < got.index("/a/g5") < got.index("/a/g5/deep")


@pytest.mark.parametrize("order", display.ORDERS)
def test_children_ranked_above_their_parents_come_out_as_the_priority_walk_gives(order):
    """The one-sort walk against the heap walk: children that outrank their parent (and a
    grandchild whose parent is not shown) wait for it, then go out best first."""
    rng = random.Random(16)
    paths = ["/"] + [f"/s{i}" for i in range(6)]
    paths += [f"/s{i}/c{j}" for i in range(6) for j in range(rng.randrange(0, 9))]
    paths += [f"{p}/d{k}" for p in list(paths[7:]) for k in range(rng.randrange(0, 3))]
    paths += ["/hidden/x", "/hidden/y/z"]  # no shown ancestor but the root
    rows = [display.Row(p, rng.choice([None, 1, 5, 9]), rng.choice([None, 0.0, 3.5, 99.0]),
                        None, rng.choice([None, 4096, 1 << 20]), rng.choice([None, 0.0, 10.0]),
                        rng.choice([None, 0.0, 7.0]), Counters()) for p in paths if rng.random() < 0.8 or p == "/"]
    rng.shuffle(rows)
    got = [r.path for r in display.order_rows(rows, order)]
    assert got == _reference_order(rows, order)
    assert sorted(got) == sorted(r.path for r in rows)
    flat = [r.path for r in display.order_rows(rows, order, parents_first=False)]
    keys = dict(zip([r.path for r in rows], display._keys(rows, order, False), strict=True))
    assert flat == sorted(keys, key=keys.__getitem__)


def test_a_changed_cgroup2_count_walks_cgroup2_alone_and_keeps_what_only_v1_has(tmp_path, monkeypatch):
    from test_monitor_layouts import make_v1, make_v2

    from nsdash.monitor import sampler as S
    from nsdash.system import cgroupfs

    root = tmp_path / "cgroup"
    make_v1(root, ("/", "/a", "/v1only"))
    make_v2(root / "unified", ("/", "/a"))
    stat = root / "unified" / "cgroup.stat"
    stat.write_text("nr_descendants 1\nnr_dying_descendants 0\n")
    walked: list[str] = []
    real = S.list_cgroups
    monkeypatch.setattr(S, "list_cgroups", lambda mount, *a: walked.append(mount) or real(mount, *a))
    layout = cgroupfs.detect(root)
    assert layout.kind == "hybrid"
    with S.Sampler(layout, root_from_proc=False, rewalk_interval=3600) as sampler:
        assert {"/a", "/v1only"} <= set(sampler.sample().counters)
        full = len(walked)
        assert full > 1
        make_v1(root, ("/new",))
        make_v2(root / "unified", ("/new",))
        stat.write_text("nr_descendants 2\nnr_dying_descendants 0\n")
        got = sampler.sample().counters
        assert walked[full:] == [str(layout.unified)]  # one hierarchy walked
        assert {"/a", "/v1only", "/new"} <= set(got)  # the v1-only cgroup kept
        make_v1(root, ("/v1new",))  # v1 alone: no count moves; seen by the next full walk
        assert "/v1new" not in sampler.sample().counters
        sampler.rewalk_interval = 0
        assert "/v1new" in sampler.sample().counters
