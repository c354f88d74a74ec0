"""A machine's process whose name is not UTF-8 is one of its processes to the debugging tools.

Any process names itself (its comm) with any bytes, and the kernel writes them raw into the
Name: line of /proc/PID/status, which the debugging tools' PID translation (trace, profile,
debug, the dashboard's debugging panes) read as text for its NSpid: line: the decode error was
taken for a process gone, so the machine's init so named made the whole machine 'stopped' to
them, and any other process so named was missing.  The status is read as bytes now.
A real BusyBox machine does it to itself.
"""

from __future__ import annotations

from pathlib import Path

from conftest import wait_for

from nsdash.inside.debugging.pids import MachineProcesses
from nsdash.inside.target import resolve
from nsdash.machines import client

SCRIPT = r"""
printf '\377\376' > /proc/self/comm
(printf 'x\377' > /proc/self/comm; sleep 1000 & wait) &
sleep 1000 & wait
"""


def test_processes_named_with_any_bytes_are_the_machines(detached, busybox_tree, machine_name):
    detached("-D", str(busybox_tree), "/bin/sh", "-c", SCRIPT)
    leader = client.status(machine_name)["leader"]
    wait_for(lambda: Path(f"/proc/{leader}/comm").read_bytes() == b"\xff\xfe\n", what="the init's name")
    procs = MachineProcesses(resolve(machine_name))  # raised ProcessGone: 'machine stopped'
    wait_for(lambda: len(procs.processes()) == 4, what="the machine's four processes")
    found = procs.processes()
    assert [p.pid for p in found][0] == 1 and found[0].host_pid == leader
    assert procs.by_pid(1).host_pid == leader
    assert sorted(p.comm for p in found) == sorted(["\ufffd\ufffd", "x\ufffd", "sleep", "sleep"])
