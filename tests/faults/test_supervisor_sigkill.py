"""Kill -9 the supervisor: the cgroup stays the truth for "running"."""

from __future__ import annotations

import contextlib
import os
import signal

import pytest
from _machines import one_line_error, teardown
from conftest import alive, run_nsdash, wait_for

from nsdash.launcher.cgroup import MachineCgroup
from nsdash.machines import client
from nsdash.machines import state as st


@pytest.fixture
def names(machine_name, reaper):
    """Machines to tear down; meanwhile this process is a child subreaper (the reaper fixture,
    torn down after this one), so the processes a killed supervisor orphans are reaped here."""
    made: list[str] = []
    yield made
    for n in made:
        teardown(n)


def _reap_children() -> bool:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    return False


def _reaped(pids) -> bool:
    """Gone from /proc entirely: the host's init (our reaper once the supervisor died) took them."""
    _reap_children()
    return not any(os.path.exists(f"/proc/{p}") for p in pids)


def test_orphan_blocks_its_name_and_its_tree_until_cleaned(busybox_tree, machine_name, names):
    names += [machine_name, machine_name + "-b"]
    r = run_nsdash("spawn", "--detach", "-M", machine_name, "-bD", str(busybox_tree))
    assert r.returncode == 0, r.stderr
    s = client.status(machine_name)
    os.kill(s["supervisor"], signal.SIGKILL)
    wait_for(lambda: not st.supervisor_alive(st.machine_dir(machine_name)), what="the supervisor to die")
    cg = MachineCgroup(machine_name)
    assert cg.populated() and alive(s["leader"])  # the machine's processes outlive their supervisor
    orphan_pids = cg.pids()

    # Same tree, another name, in the foreground: refused while the orphan's processes live.
    r = run_nsdash("spawn", "-q", "-M", machine_name + "-b", "-D", str(busybox_tree), "/bin/true")
    assert one_line_error(r) and "in use by running machine" in r.stderr, r.stderr
    # Same name, in the foreground: refused as well (its cgroup is populated).
    r = run_nsdash("spawn", "-q", "-x", "-M", machine_name, "-D", str(busybox_tree), "/bin/true")
    assert one_line_error(r) and "already running" in r.stderr, r.stderr
    assert cg.populated() and alive(s["leader"])  # refusing harmed nothing

    # The next command that touches the name reports the orphan and cleans it up.
    r = run_nsdash("terminate", machine_name)
    assert "orphaned" in r.stderr and "Traceback" not in r.stderr
    assert r.returncode == 0 and r.stderr.count("\n") == 1, r.stderr  # stopped, as asked: the notice alone
    wait_for(lambda: not alive(s["leader"]), what="the orphan's processes to die")
    assert not any(d.exists() for d in cg.dirs)
    assert not st.machine_dir(machine_name).exists()
    wait_for(lambda: _reaped(orphan_pids), 30, "the orphan's zombies to be reaped")

    # And the tree is free again.
    r = run_nsdash("spawn", "-q", "-M", machine_name + "-b", "-D", str(busybox_tree), "/bin/true")
    assert r.returncode == 0, r.stderr


def test_cgroup_kill_reaches_processes_that_left_the_leader(busybox_tree, machine_name, names):
    """Daemons double-forked away from PID 1 still die with the orphan's cgroup."""
    names.append(machine_name)
    r = run_nsdash("spawn", "--detach", "-M", machine_name, "-D", str(busybox_tree), "/bin/sh", "-c",
                   "(setsid sleep 300 &) ; (setsid sleep 301 &) ; exec sleep 302")
    assert r.returncode == 0, r.stderr
    cg = MachineCgroup(machine_name)
    wait_for(lambda: len(cg.pids()) >= 3, what="three sleepers")
    pids = cg.pids()
    os.kill(client.status(machine_name)["supervisor"], signal.SIGKILL)
    wait_for(lambda: not st.supervisor_alive(st.machine_dir(machine_name)), what="the supervisor to die")
    r = run_nsdash("status", machine_name)
    assert r.returncode != 0 and "orphaned" in r.stderr
    wait_for(lambda: not any(alive(p) for p in pids), what="every process of the orphan to die")
    wait_for(lambda: _reaped(pids), 30, "the orphan's zombies to be reaped")
