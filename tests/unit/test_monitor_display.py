"""Pure parts of the monitor: rates, systemd-cgtop's number formats and order, cgls drawing."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from nsdash.cli.cgls import draw
from nsdash.cli.cgtop import parse_seconds
from nsdash.errors import UsageError
from nsdash.monitor import display
from nsdash.monitor.counters import Counters
from nsdash.monitor.rates import Rates, cpu_percent, delta_rate, rates_between
from nsdash.monitor.sampler import Sample
from nsdash.monitor.tree import CgroupNode


def _sample(t: float, **cpu_ns: int) -> Sample:
    return Sample(t, MappingProxyType({"/" + k: Counters(cpu_ns=v) for k, v in cpu_ns.items()}))


def test_cpu_percent_is_delta_usage_over_delta_monotonic_time():
    a, b = _sample(10.0, x=0, y=0), _sample(12.0, x=2 * 10**9, y=4 * 10**9)
    rates = rates_between(a, b)
    assert rates["/x"].cpu_percent == pytest.approx(100.0)
    assert rates["/y"].cpu_percent == pytest.approx(200.0)  # two CPUs busy: 2 x 100%


def test_first_sample_and_new_cgroups_have_no_cpu_value():
    b = _sample(1.0, x=5)
    assert rates_between(None, b)["/x"] == Rates()
    assert rates_between(_sample(0.0), b)["/x"].cpu_percent is None


def test_counter_going_back_gives_none_not_negative():
    assert cpu_percent(Counters(cpu_ns=900), Counters(cpu_ns=100), 1.0) is None
    assert delta_rate(None, 5, 1.0) is None
    assert delta_rate(0, 4096, 2.0) == 2048.0


@pytest.mark.parametrize("value, text", [
    (0, "0B"), (1023, "1023B"), (1024, "1.0K"), (745472, "728.0K"), (258048, "252.0K"),
    (1473867776, "1.3G"), (350666752, "334.4M"), (5 << 40, "5.0T"),
])
def test_format_bytes_matches_systemd(value, text):
    assert display.format_bytes(value) == text


@pytest.mark.parametrize("usec, text", [
    (0, "0"), (1776, "1.776ms"), (11380617, "11.380617s"), (495253190, "8min 15.253190s"),
    (3600 * 10**6, "1h"), (90 * 10**6, "1min 30s"), (7, "7us"),
])
def test_format_timespan_matches_systemd(usec, text):
    assert display.format_timespan(usec) == text


def _row(path: str, cpu: float | None = None, tasks: int | None = None, mem: int | None = None):
    return display.Row(path, tasks, cpu, None, mem, None, None, Counters())


def test_order_puts_parents_before_children_and_busiest_first():
    rows = [_row("/b", 5.0), _row("/a/x", 90.0), _row("/a", 95.0), _row("/", 100.0), _row("/b/y", 1.0),
            _row("/c", None)]
    got = [r.path for r in display.order_rows(rows, "cpu")]
    assert got == ["/", "/a", "/a/x", "/b", "/b/y", "/c"]
    # A child busier than its parent still comes after it.
    rows = [_row("/p", 1.0), _row("/p/hot", 50.0), _row("/q", 10.0)]
    assert [r.path for r in display.order_rows(rows, "cpu")] == ["/q", "/p", "/p/hot"]


def test_order_by_path_and_memory():
    rows = [_row("/b", mem=10), _row("/a", mem=5), _row("/c")]
    assert [r.path for r in display.order_rows(rows, "path")] == ["/a", "/b", "/c"]
    assert [r.path for r in display.order_rows(rows, "memory")] == ["/b", "/a", "/c"]


def test_rows_skip_cgroups_with_nothing_known_and_zero_counts_as_unknown():
    counters = {"/empty": Counters(tasks=0, memory=0), "/busy": Counters(tasks=2, memory=4096)}
    rows = display.rows_from(counters, {})
    assert [r.path for r in rows] == ["/busy"]


def test_batch_layout_is_systemd_cgtops():
    rows = [display.Row("/", None, 100.5, None, 342392422, None, None, Counters()),
            display.Row("/mtest/a", 2, 99.6, None, 745472, 0.0, 0.0, Counters())]
    # '%-*s' path as wide as the longest, ' %7s' tasks, ' %6.1f' CPU, ' %8s' x 3
    assert display.render(rows) == [
        "/       " + "       -" + "  100.5" + "   326.5M" + "        -" * 2,
        "/mtest/a" + "       2" + "   99.6" + "   728.0K" + "       0B" * 2,
    ]
    assert display.render(rows, raw=True)[1] == "/mtest/a       2   99.6   745472        0        0"


def test_extra_columns_only_when_asked():
    c = Counters(memory_limit=1 << 30, nr_throttled=3, throttled_usec=1500, cpu_pressure=1.25)
    rows = [display.Row("/x", 1, None, None, 4096, None, None, c)]
    extras = [*display.EXTRA_COLUMNS["limit"], *display.EXTRA_COLUMNS["throttle"],
              *display.EXTRA_COLUMNS["pressure"]]
    line = display.render(rows, extras=extras)[0]
    assert line == "/x        1      -     4.0K        -        -     1.0G         3  1.500ms    1.25       -       -"
    assert display.render(rows)[0] == "/x        1      -     4.0K        -        -"


def test_ellipsize_keeps_a_third_at_the_start():
    assert display.ellipsize("/machine.slice/machine-long.scope", 20) == "/machi…ne-long.scope"
    assert display.ellipsize("/short", 20) == "/short"


def test_delay_parsing_like_systemd():
    assert parse_seconds("0.1") == pytest.approx(0.1)
    assert parse_seconds("500ms") == pytest.approx(0.5)
    assert parse_seconds("1min") == 60
    with pytest.raises(UsageError):
        parse_seconds("soon")


def test_cgls_drawing():
    tree = CgroupNode("/", (
        CgroupNode("/a", (CgroupNode("/a/deep", (), (77,)),), (5, 1000)),
        CgroupNode("/empty", (), ()),
        CgroupNode("/b", (), (42,)),
    ), (1,))
    cmd = {1: "/sbin/init splash", 5: "sleep 300", 1000: "x" * 100, 77: "[kworker/0:1]", 42: "sh"}
    lines = draw(tree, lambda pid, cols: cmd[pid] if cols is None else cmd[pid][:cols],
                 columns=None, cgroup_id=lambda p: {"/a": 9}.get(p))
    assert lines == [
        "├─1 /sbin/init splash",
        "├─a (#9)",
        "│ ├─   5 sleep 300",
        "│ ├─1000 " + "x" * 100,
        "│ └─deep",
        "│   └─77 [kworker/0:1]",
        "└─b",
        "  └─42 sh",
    ]
    hidden = draw(tree, lambda pid, cols: cmd[pid], columns=None, is_kthread=lambda pid: pid == 77)
    text = "\n".join(hidden)
    assert "deep" in text and "77" not in text  # a kernel thread keeps its cgroup shown, not itself
    shown_all = draw(tree, lambda pid, cols: cmd[pid], columns=None, show_all=True)
    assert "├─empty" in shown_all


def test_cgls_marks_unreadable_subtrees_and_drops_vanished_ones():
    tree = CgroupNode("/", (CgroupNode("/locked", unreadable=True), CgroupNode("/gone", vanished=True),
                            CgroupNode("/quiet", (), ())))
    assert draw(tree, lambda pid, cols: "x", columns=80) == ["└─locked (unreadable)"]


def test_terminal_header_is_systemd_cgtops_bytes():
    # Captured from systemd-cgtop 252 -b -m on a 100-column terminal.
    got = display.header_line(38, "Tasks", False, 6, order="memory", ansi=True)
    assert got == ("\x1b[0;4mControl Group                            Tasks   %CPU "
                   "\x1b[0;1;39m\x1b[0;4m  Memory\x1b[0m\x1b[0;4m  Input/s Output/s\x1b[0m")
    plain = display.header_line(20, "Procs", True, 10)
    assert plain == "Control Group          Procs   CPU Time   Memory  Input/s Output/s"
