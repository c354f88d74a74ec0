"""Starts racing each other, and many machines in a row and at once: nothing left behind."""

from __future__ import annotations

import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from _machines import one_line_error, teardown
from conftest import NSDASH, REPO, leak_snapshot, run_nsdash

from nsdash.launcher.container import Container
from nsdash.launcher.spec import ContainerSpec


def _together(argvs: list[list[str]], timeout: float = 60) -> list[subprocess.CompletedProcess]:
    """Start every command at the same instant (they wait on one pipe), collect their results."""
    r, w = os.pipe()
    gate = "import os,sys; os.read(0, 1); os.execvp(sys.argv[1], sys.argv[1:])"
    procs = [subprocess.Popen([NSDASH[0], "-c", gate, *argv], stdin=r, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=REPO) for argv in argvs]
    os.close(r)
    time.sleep(0.3)  # every interpreter is up and blocked in read()
    os.write(w, b"x" * len(procs))
    os.close(w)
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def test_two_detached_starts_of_one_name_make_one_machine(busybox_tree, machine_name):
    try:
        cmd = [*NSDASH, "spawn", "--detach", "-M", machine_name, "-bD", str(busybox_tree)]
        results = _together([cmd, cmd])
        ok = [x for x in results if x.returncode == 0]
        bad = [x for x in results if x.returncode != 0]
        assert len(ok) == 1 and len(bad) == 1, [x.stderr for x in results]
        assert one_line_error(bad[0]) and machine_name in bad[0].stderr
        r = run_nsdash("list")
        assert r.stdout.count(machine_name) == 1
    finally:
        teardown(machine_name)


def test_two_foreground_starts_of_one_name_run_once(busybox_tree, machine_name):
    # -x: both may share the tree, so only the name decides.
    cmd = [*NSDASH, "spawn", "-q", "-x", "-M", machine_name, "-D", str(busybox_tree), "/bin/sleep", "1"]
    results = _together([cmd, cmd])
    assert sorted(x.returncode for x in results)[0] == 0
    bad = [x for x in results if x.returncode != 0]
    assert len(bad) == 1 and one_line_error(bad[0]) and "already running" in bad[0].stderr, \
        [x.stderr for x in results]


def test_two_names_on_one_tree_at_once_run_once(busybox_tree, machine_name):
    cmds = [[*NSDASH, "spawn", "-q", "-M", f"{machine_name}-{i}", "-D", str(busybox_tree), "/bin/sleep", "1"]
            for i in (1, 2)]
    results = _together(cmds)
    bad = [x for x in results if x.returncode != 0]
    assert len(bad) == 1 and one_line_error(bad[0]) and "in use by running machine" in bad[0].stderr, \
        [x.stderr for x in results]


def test_200_short_lived_machines_in_a_loop_leave_nothing(busybox_tree, machine_name):
    before = leak_snapshot()
    started = time.monotonic()
    for i in range(200):
        spec = ContainerSpec(directory=busybox_tree, machine=f"{machine_name}-{i}", command=("/bin/true",))
        with Container(spec, console=True) as c:
            c.start()
            assert c.wait().exit_code() == 0
    elapsed = time.monotonic() - started
    after = leak_snapshot()
    assert {k: after[k] - before[k] for k in after if after[k] - before[k]} == {}
    print(f"200 machines in {elapsed:.1f} s ({elapsed / 200 * 1000:.0f} ms each)")


def test_20_machines_at_once_through_the_cli_leave_nothing(busybox_tree, machine_name):
    before = leak_snapshot()

    def one(i: int) -> subprocess.CompletedProcess:
        return run_nsdash("spawn", "-q", "-x", "-M", f"{machine_name}-{i}", "-D", str(busybox_tree),
                          "/bin/sh", "-c", "echo up-$$; sleep 0.5", timeout=120)

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, range(20)))
    assert [r.returncode for r in results] == [0] * 20, [r.stderr for r in results if r.returncode]
    assert all("up-1" in r.stdout for r in results)
    after = leak_snapshot()
    assert {k: after[k] - before[k] for k in after if after[k] - before[k]} == {}


@pytest.mark.parametrize("n", [20])
def test_20_detached_machines_at_once_then_stopped(busybox_tree, machine_name, n):
    names = [f"{machine_name}-d{i}" for i in range(n)]
    try:
        cmds = [[*NSDASH, "spawn", "--detach", "-x", "-M", name, "-bD", str(busybox_tree)] for name in names]
        results = _together(cmds, timeout=120)
        assert [r.returncode for r in results] == [0] * n, [r.stderr for r in results if r.returncode]
        listing = run_nsdash("list").stdout
        assert all(name in listing for name in names)
        with ThreadPoolExecutor(max_workers=n) as pool:
            stops = list(pool.map(lambda name: run_nsdash("terminate", name, timeout=60), names))
        assert [r.returncode for r in stops] == [0] * n, [r.stderr for r in stops if r.returncode]
    finally:
        for name in names:
            teardown(name)


def test_ctrl_c_during_a_detached_start_leaves_no_machine(busybox_tree, machine_name):
    """^C while `spawn --detach` waits for the machine (held back here: another process holds
    the tree's start lock): exit status 130 and nothing running on behind it -- not the
    supervisor, the state entry or the cgroup (the leak check)."""
    import fcntl
    import signal

    from nsdash.machines import state as st

    holder = os.open(busybox_tree, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        p = subprocess.Popen([*NSDASH, "spawn", "--detach", "-M", machine_name, "-bD", str(busybox_tree)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, cwd=REPO)
        entry = st.machine_dir(machine_name)
        deadline = time.monotonic() + 60
        while not (entry / "control").exists() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # until the supervisor runs (it then waits for the lock)
        assert p.poll() is None, p.communicate()
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 130, err
        assert "Traceback" not in err
    finally:
        os.close(holder)
    assert not entry.exists()
    assert not (entry.parent.parent / ".locks" / machine_name).exists()  # the name's start lock too
    assert run_nsdash("list").stdout.count(machine_name) == 0
