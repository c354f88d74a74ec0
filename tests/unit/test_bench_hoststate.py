"""bench/hoststate.py: what bench_dashboard prints beside an at-rest row, so that a figure from a
host not at rest (others busy, a wake-up penalty, dying cgroups) is seen as such."""

from __future__ import annotations

import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _hoststate(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop("hoststate", None)
    import hoststate

    return hoststate


def test_cpu_ticks_count_busy_without_idle_iowait_and_steal(monkeypatch):
    hs = _hoststate(monkeypatch)
    #            user nice system idle iowait irq softirq steal guest guest_nice
    text = "cpu  100 2 30 5000 7 1 4 9 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n"
    assert hs.cpu_ticks(text) == (100 + 2 + 30 + 1 + 4, 9)
    assert hs.cpu_ticks("cpu  1 2 3 4\n") == (6, 0)  # an old kernel's four columns


def test_v1_counts_keep_enabled_controllers_with_their_hierarchy(monkeypatch):
    hs = _hoststate(monkeypatch)
    text = ("#subsys_name\thierarchy\tnum_cgroups\tenabled\n"
            "cpuset\t3\t1\t1\nmemory\t4\t218\t1\nnet_cls\t0\t4\t1\nrdma\t9\t1\t0\n")
    assert hs.v1_cgroup_counts(text) == {"cpuset": (3, 1), "memory": (4, 218), "net_cls": (0, 4)}


def _window(hs, others=2.0, penalty=(1.2, 1.5, 1.25)):
    return hs.Window(20.0, others, 0.0, 0.5, 0.3, penalty, {"memory (v1)": 215, "cgroup2": 3})


def test_a_quiet_host_is_at_rest_and_says_so(monkeypatch):
    hs = _hoststate(monkeypatch)
    w = _window(hs)
    assert w.at_rest()
    assert "host at rest" in w.line() and "memory (v1) 215" in w.line() and "x1.2" in w.line()
    assert w.note().startswith("host at rest")


def test_busy_others_or_a_wake_up_penalty_mark_the_figure(monkeypatch):
    hs = _hoststate(monkeypatch)
    for w in (_window(hs, others=hs.BUSY_OTHERS + 1), _window(hs, penalty=(hs.PENALTY, 4.0, 2.0))):
        assert not w.at_rest()
        assert "NOT AT REST" in w.line() and "NOT at rest" in w.note()
    assert _window(hs, penalty=None).at_rest()  # not measured: judged on the others alone


def test_the_penalty_child_reports_after_its_stdin_closes(monkeypatch):
    hs = _hoststate(monkeypatch)
    w = hs.Watch().end(0.0)
    assert w.penalty is None  # closed at once: not one sample after a second asleep
    watch = hs.Watch()
    time.sleep(2.2)  # the child starts, then sleeps a second before its first sample
    w = watch.end(0.0)
    assert w.penalty is not None
    ratio, cold, hot = w.penalty
    assert cold > 0 and hot > 0 and ratio == cold / hot
    assert w.others >= 0.0 and w.seconds >= 2.2
