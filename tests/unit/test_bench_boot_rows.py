"""bench_boot's rows for `make bench`: each guest's boot-to-poweroff (issue 16's figure across the
matrix) is the sum of each run's two timed halves, paired run by run with systemd-nspawn's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_each_guest_gets_a_boot_to_poweroff_row_from_its_runs_halves(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop("bench_boot", None)
    import bench_boot
    from report import Report

    results = {"busybox": {
        "nsdash": {"login": [1.0, 2.0, 3.0], "poweroff": [0.5, 0.1, 0.2], "survivors": [0.0, 0.0, 0.0]},
        "systemd-nspawn": {"login": [1.0, 1.0, 4.0], "poweroff": [0.5, 1.0, 0.2], "survivors": [0.0, 0.0, 0.0]},
    }}
    report = Report("boot", False)
    bench_boot.report_rows(report, results)
    rows = {r["what"]: r for r in report.rows}
    assert set(rows) == {"boot to login, busybox (busybox)", "poweroff typed to exit, busybox (busybox)",
                         "boot-to-poweroff (login + poweroff), busybox (busybox)"}
    total = rows["boot-to-poweroff (login + poweroff), busybox (busybox)"]
    # per run: nsdash 1.5, 2.1, 3.2 against 1.5, 2.0, 4.2: medians 2.1 and 2.0, pair ratios 1.0, 1.05, 0.76
    assert (total["nsdash"], total["peer_value"], total["peer"]) == (2.1, 2.0, "systemd-nspawn")
    assert abs(total["ratio"] - 1.05) < 1e-9
    lo, hi = total["spread"]
    assert abs(lo - 3.2 / 4.2) < 1e-9 and abs(hi - 2.1 / 2.0) < 1e-9


def _bench_boot(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop("bench_boot", None)
    import bench_boot

    return bench_boot


def test_the_bench_terminal_answers_each_size_query_once_in_order_even_split_over_reads(monkeypatch):
    """systemd 257+ asks the console its size (CSI 18 t, then CSI 6 n) and waits about 1/3 s for
    each answer; the bench's PTY answers as a 24x80 terminal, once per query, in order."""
    bb = _bench_boot(monkeypatch)
    out = bytearray(b"\x1b[18t")
    reply, scanned = bb.answers(out, 0)
    assert reply == b"\x1b[8;24;80t" and scanned == len(out)
    assert bb.answers(out, scanned) == (b"", len(out))  # asked once, answered once
    out += b"Welcome\x1b7\x1b[32766;32766H\x1b["  # the cursor query arrives split over two reads
    reply, scanned = bb.answers(out, scanned)
    assert reply == b""
    out += b"6n\x1b8 and \x1b[18t"
    reply, scanned = bb.answers(out, scanned)
    assert reply == b"\x1b[24;80R\x1b[8;24;80t"
    assert bb.answers(out + b"no query here", scanned)[0] == b""


def test_the_bench_boots_with_the_nsdash_command_a_user_types(monkeypatch, tmp_path):
    """The installed `nsdash` beside the interpreter (bin/nsdash: no site, no runpy), as
    bench_spawn and bench_verbs run it; `python -m nsdash` only where none is installed."""
    bb = _bench_boot(monkeypatch)
    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    python.touch()
    monkeypatch.setattr(sys, "executable", str(python))
    assert bb.argv("nsdash", Path("/t"), "m")[:2] == [str(python), "-m"]
    (tmp_path / "bin" / "nsdash").touch()
    assert bb.argv("nsdash", Path("/t"), "m") == [str(tmp_path / "bin" / "nsdash"), "spawn", "-q", "-bD", "/t",
                                                  "-M", "m"]
    assert bb.nsdash_boot_env()["PYTHONPATH"] == str(BENCH.parent)


def test_the_guests_pid1_is_the_tools_child_that_is_pid_1_in_its_namespace(monkeypatch, tmp_path):
    """The poweroff split times the guest's PID 1 through a pidfd: found in /proc as the tool's
    child whose innermost PID is 1 (not the tool's other children, not another tool's PID 1)."""
    bb = _bench_boot(monkeypatch)

    def proc(pid: int, ppid: int, nspid: str) -> None:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "status").write_text(f"Name:\tx\nPPid:\t{ppid}\nNSpid:\t{nspid}\n")

    proc(100, 1, "100")  # the tool
    proc(101, 100, "101")  # a helper of the tool, in the host's namespace
    proc(102, 7, "102\t1")  # another tool's guest
    (tmp_path / "self").mkdir()
    assert bb.guest_pid1(100, str(tmp_path)) is None
    proc(103, 100, "103\t1")
    assert bb.guest_pid1(100, str(tmp_path)) == 103


def test_the_poweroff_split_gives_rows_for_the_guests_shutdown_and_the_tools_exit(monkeypatch):
    bb = _bench_boot(monkeypatch)
    from report import Report

    results = {"sid": {
        "nsdash": {"login": [1.0], "poweroff": [0.2], "survivors": [0.0], "shutdown": [0.19], "exit": [0.01]},
        "systemd-nspawn": {"login": [1.0], "poweroff": [0.2], "survivors": [0.0], "shutdown": [0.198],
                           "exit": [0.002]},
    }}
    report = Report("boot", False)
    bb.report_rows(report, results)
    rows = {r["what"]: r for r in report.rows}
    shutdown = rows["poweroff: the guest's shutdown (typed to its PID 1 gone), sid (systemd)"]
    assert (shutdown["nsdash"], shutdown["peer_value"]) == (0.19, 0.198)
    assert abs(rows["poweroff: the tool's exit after the guest's PID 1, sid (systemd)"]["ratio"] - 5.0) < 1e-9
    lines = bb.split_table(results, markdown=False)
    assert lines[1].split()[:2] == ["sid", "0.19"] and "10.0 (10.0-10.0)" in lines[1] and "2.0 (2.0-2.0)" in lines[1]


def _entry(message: object, usec: int) -> str:
    import json

    return json.dumps({"MESSAGE": message, "__MONOTONIC_TIMESTAMP": str(usec)})


def test_the_guests_shutdown_is_split_at_its_journals_marks_after_the_typed_poweroff(monkeypatch):
    """Issue 16: which step of a systemd guest's own shutdown is longer under which tool.  The
    marks are found in its journal (monotonic microseconds, the host's clock), the first of each
    at or after the typed poweroff; the tool's CPU is added by boot_once, not here."""
    bb = _bench_boot(monkeypatch)
    journal = [
        _entry("Shutting down.", 9_000_000),  # an earlier shutdown of the same boot's journal: before typed
        _entry("The system will power off now!", 10_010_000),
        _entry([83, 104], 10_020_000),  # a binary MESSAGE (a list of bytes): skipped
        "not json",
        _entry("Shutting down.", 10_090_000),
        _entry("Journal stopped", 10_140_000),
        _entry("Shutting down.", 10_150_000),  # a second one: the first counts
    ]
    split = bb.shutdown_phases(journal, typed=10.0, gone=10.160)
    assert split is not None
    assert list(split) == list(bb.PHASES[:4])
    got = [round(v * 1000, 3) for v in split.values()]
    assert got == [10.0, 80.0, 50.0, 20.0]


def test_a_shutdown_without_every_mark_in_order_has_no_phases(monkeypatch):
    bb = _bench_boot(monkeypatch)
    accepted = _entry("The system will power off now!", 10_010_000)
    units = _entry("Shutting down.", 10_090_000)
    assert bb.shutdown_phases([], typed=10.0, gone=10.2) is None  # no journal (busybox, sysvinit...)
    assert bb.shutdown_phases([accepted, units], typed=10.0, gone=10.2) is None  # journald never told
    # PID 1 seen gone before the journal's last mark: clocks that disagree, not a phase of -x ms
    assert bb.shutdown_phases([accepted, units, _entry("Journal stopped", 10_300_000)], typed=10.0,
                              gone=10.2) is None


def test_the_tools_cpu_time_is_read_per_thread_in_nanoseconds(monkeypatch, tmp_path):
    bb = _bench_boot(monkeypatch)
    for tid, ns in (("41", "2500000 100 3"), ("42", "500000 7 1")):
        (tmp_path / "41" / "task" / tid).mkdir(parents=True)
        (tmp_path / "41" / "task" / tid / "schedstat").write_text(ns + "\n")
    assert bb.cpu_seconds(41, proc=str(tmp_path)) == 0.003
    assert bb.cpu_seconds(99, proc=str(tmp_path)) is None  # gone


def test_the_boot_is_split_at_the_guests_first_output_and_its_startup_finished(monkeypatch):
    bb = _bench_boot(monkeypatch)
    journal = [_entry("Startup finished in 270ms.", 5_000_000),  # a previous boot's, before this one's output
               _entry("Startup finished in 300ms.", 10_300_000)]
    split = bb.boot_phases(journal, first_output=10.0, login=11.3)
    assert split == {"first output to startup finished": pytest.approx(0.3),
                     "startup finished to login prompt": pytest.approx(1.0)}
    assert bb.boot_phases(journal[:1], first_output=10.0, login=11.3) is None


class _Run:
    start = 100.0
    first_output = 100.2
    cpu_at_first_output = 0.06
    guest_gone = None
    cpu_at_gone = None


def test_a_runs_phases_hold_what_could_be_told(monkeypatch):
    """A guest without a journal (or PID 1 not seen gone) still has the tool's start and CPU."""
    bb = _bench_boot(monkeypatch)
    found = bb.run_phases(_Run(), [], login_at=101.5, typed=102.0, cpu_typed=0.07)
    assert set(found) == {"exec to the guest's first output", "tool CPU to the first output"}
    assert abs(found["exec to the guest's first output"] - 0.2) < 1e-9


def test_machines_sharing_machine_slice_are_the_populated_scopes_under_it(monkeypatch, tmp_path):
    """nsdash's guest shares machine.slice's CPU weight with every other machine there; the bench
    names them so a comparison made while others run is not taken for one made at rest."""
    bb = _bench_boot(monkeypatch)
    from nsdash.system import cgroupfs

    for name, populated in (("machine-a.scope", 1), ("machine-b.scope", 0), ("machine-c.scope", 1)):
        (tmp_path / "machine.slice" / name).mkdir(parents=True)
        (tmp_path / "machine.slice" / name / "cgroup.events").write_text(f"populated {populated}\nfrozen 0\n")
    (tmp_path / "machine.slice" / "cgroup.events").write_text("populated 1\n")  # a file, not a scope
    layout = cgroupfs.Layout("unified", tmp_path, tmp_path, {})
    assert bb.machines_sharing_the_slice(layout) == ["machine-a.scope", "machine-c.scope"]
    assert bb.machines_sharing_the_slice(cgroupfs.Layout("legacy", tmp_path, None, {})) == []
