"""bench_phases splits a run by the scheduler's events: the tool's exec, the fork of the process
that becomes PID 1, PID 1's exec of the payload, PID 1's exit, the tool's exit (perf trace's
lines; other processes' events, a second exec of PID 1's pid and generators are passed over)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"

# systemd-nspawn's shape: the tool forks an outer child, which forks PID 1 early; PID 1 execs
# systemd, which forks a generator; then PID 1 powers off and the tool exits.
TRACE = """\
     0.000 systemd-nspawn/100 sched:sched_process_exec(filename: "/usr/bin/systemd-nspawn", pid: 100 (systemd-nspawn), old_pid: 100 (systemd-nspawn))
     9.500 systemd-nspawn/100 sched:sched_process_fork(parent_comm: "systemd-nspawn", parent_pid: 100 (systemd-nspawn), child_comm: "systemd-nspawn", child_pid: 101 (systemd-nspawn))
    10.250 systemd-nspawn/101 sched:sched_process_fork(parent_comm: "systemd-nspawn", parent_pid: 101 (systemd-nspawn), child_comm: "systemd-nspawn", child_pid: 102 (systemd-nspawn))
    12.000 systemd-nspawn/101 sched:sched_process_exit(comm: "systemd-nspawn", pid: 101 (systemd-nspawn), prio: 120, group_dead: 1)
    60.250 systemd/102 sched:sched_process_exec(filename: "/usr/lib/systemd/systemd", pid: 102 (systemd), old_pid: 102 (systemd))
    70.000 systemd/102 sched:sched_process_fork(parent_comm: "systemd", parent_pid: 102 (systemd), child_comm: "systemd", child_pid: 103 (systemd))
    71.000 systemd-debug-/103 sched:sched_process_exec(filename: "/usr/lib/systemd/system-generators/systemd-debug-generator", pid: 103 (systemd-debug-), old_pid: 103 (systemd-debug-))
    72.000 systemd-debug-/103 sched:sched_process_exit(comm: "systemd-debug-g", pid: 103 (systemd-debug-g), prio: 120, group_dead: 1)
   300.000 systemd-shutdo/102 sched:sched_process_exec(filename: "/usr/lib/systemd/systemd-shutdown", pid: 102 (systemd-shutdow), old_pid: 102 (systemd-shutdow))
   310.000 systemd-shutdo/102 sched:sched_process_exit(comm: "systemd-shutdow", pid: 102 (systemd-shutdow), prio: 120, group_dead: 1)
   312.500 systemd-nspawn/100 sched:sched_process_exit(comm: "systemd-nspawn", pid: 100 (systemd-nspawn), prio: 120, group_dead: 1)
"""


def test_a_run_is_split_at_pid_1s_fork_exec_and_exit(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop("bench_phases", None)
    import bench_phases

    split = bench_phases.phases(TRACE, "/systemd")
    assert split == pytest.approx({"start": 10.25, "set-up": 50.0, "exit": 2.5, "total": 312.5})


def test_a_trace_without_the_payloads_exec_is_refused_in_words(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import bench_phases

    with pytest.raises(ValueError, match="no exec of /bin/true"):
        bench_phases.phases(TRACE, "/bin/true")
