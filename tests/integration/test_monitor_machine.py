"""cgtop and cgls on a real nsdash machine, found by name through the launcher's own state."""

from __future__ import annotations

import time

from nsdash.launcher import names
from nsdash.monitor.machines import MachineMap, machine_of_process, registered_leaders
from tests.conftest import run_nsdash


def test_cgtop_and_cgls_follow_a_running_machine(busybox_tree, machine_name):
    started = run_nsdash("spawn", "-D", str(busybox_tree), "--detach", "-n",
                         "sh", "-c", "while :; do sleep 1; done")
    assert started.returncode == 0, started.stderr
    try:
        scope = MachineMap().registered.get(machine_name)
        assert scope == names.scope_path(machine_name)  # escaped as systemd-machined names it
        leader = registered_leaders()[machine_name]
        assert machine_of_process(leader) == machine_name
        top = run_nsdash("cgtop", "-b", "-n", "2", "-d", "0.3", "--extra=net", "-M", machine_name)
        assert top.returncode == 0, top.stderr
        last = top.stdout.rstrip("\n").split("\n\n")[-1].splitlines()
        row = next(line.split() for line in last if line.split()[0] == scope)
        assert row[1] != "-" and int(row[1]) >= 1  # tasks
        assert row[2] != "-"  # CPU, on the second refresh
        assert row[-2:] != ["-", "-"]  # its own veth: network counters
        tree = run_nsdash("cgls", "-M", machine_name)
        assert tree.returncode == 0 and tree.stdout.startswith(f"Control group {scope}:\n")
        assert f"─{leader} sh -c while :; do sleep 1; done" in tree.stdout
    finally:
        run_nsdash("terminate", machine_name)
        deadline = time.monotonic() + 10
        while machine_name in run_nsdash("list").stdout and time.monotonic() < deadline:
            time.sleep(0.2)
