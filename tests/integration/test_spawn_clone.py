"""A plain spawn clones the container's PID 1 straight into its cgroup and namespaces (issue 16:
where a spawn's time goes).  Counted, not timed: under strace, the one process made before the
payload's exec is PID 1 itself, by one clone3 that carries CLONE_NEWPID and CLONE_INTO_CGROUP.
The middle child it replaces cost a fork, an unshare, a second fork and an exit, each a copy or
a teardown of the supervisor's memory.  What the payload sees stays as it was."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from conftest import NSDASH, REPO

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")

# (Not vfork: how subprocess runs a host program, as ctypes.util's ldconfig while a cold cache
# of the seccomp filter is compiled; each such child execs at once.)
MADE = ("clone(", "clone3(", "fork(")
SCRIPT = "echo $$; cat /proc/self/cgroup"


def traced_spawn(tmp_path, *args: str) -> tuple[subprocess.CompletedProcess, list[tuple[int, str]]]:
    """`nsdash spawn -q -P ARGS` under strace -f: its result and the (pid, call) lines of every
    process-making call and exec."""
    log = tmp_path / "strace.log"
    r = subprocess.run(["strace", "-f", "-qq", "-o", str(log), "-e", "trace=clone,clone3,fork,execve",
                        *NSDASH, "spawn", "-q", "-P", *args], capture_output=True, text=True, cwd=REPO,
                       timeout=120, stdin=subprocess.DEVNULL)
    calls = []
    for line in log.read_text().splitlines():
        pid, _, call = line.partition(" ")
        calls.append((int(pid), call.strip()))
    return r, calls


def made_before_payload(calls: list[tuple[int, str]], payload: str) -> list[tuple[int, str]]:
    """The process-making calls before the exec of PAYLOAD (the first exec of it)."""
    made = []
    for pid, call in calls:
        if call.startswith("execve(") and f'"{payload}"' in call.split(",")[0]:
            return made
        if call.startswith(MADE) and "resumed" not in call:
            made.append((pid, call))
    raise AssertionError(f"{payload} was never executed: {calls}")


def test_pid1_is_the_one_process_a_spawn_makes_before_exec(busybox_tree, machine_name, tmp_path):
    r, calls = traced_spawn(tmp_path, "-D", str(busybox_tree), "-M", machine_name, "/bin/sh", "-c", SCRIPT)
    assert r.returncode == 0, r.stderr
    made = made_before_payload(calls, "/bin/sh")
    assert len(made) == 1, f"more than PID 1 was made before the payload ran (a middle child?): {made}"
    pid, call = made[0]
    assert call.startswith("clone3(") and "CLONE_NEWPID" in call and "CLONE_INTO_CGROUP" in call, call
    assert "CLONE_NEWCGROUP" not in call  # made by PID 1 once it is in every hierarchy's cgroup
    child = int(call.rsplit("=", 1)[1].split()[0])
    payload_pid = next(p for p, c in calls if c.startswith('execve("/bin/sh"'))
    assert payload_pid == child  # the clone's child is the one that execs: PID 1
    # What the payload sees: it is PID 1, and every hierarchy's cgroup is its namespace's root.
    lines = r.stdout.split()
    assert lines[0] == "1"
    cgroups = lines[1:]
    assert cgroups and all(line.rsplit(":", 1)[1] == "/" for line in cgroups), cgroups


def test_a_spawn_in_a_user_namespace_still_has_its_middle_child(busybox_tree, machine_name, tmp_path):
    """-U: the middle child makes the user namespace that PID 1's ID maps are written for (the
    direct clone is only for what it can make alone); the payload's view is the same."""
    r, calls = traced_spawn(tmp_path, "-U", "-D", str(busybox_tree), "-M", machine_name,
                            "/bin/sh", "-c", SCRIPT)
    assert r.returncode == 0, r.stderr
    made = made_before_payload(calls, "/bin/sh")
    assert len(made) == 2, made
    assert r.stdout.split()[0] == "1"
    assert all(line.rsplit(":", 1)[1] == "/" for line in r.stdout.split()[1:])
