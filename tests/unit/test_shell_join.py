"""`nsdash shell` pins the leader it joins: a PID reused after the machine stopped is refused."""

from __future__ import annotations

import os

import pytest

from nsdash.errors import NsdashError
from nsdash.launcher.join import in_cgroup, pin_leader, still_running

HYBRID = """\
9:name=systemd:/
4:memory:/machine.slice/machine-web.scope
0::/machine.slice/machine-web.scope/init.scope
"""


def test_in_cgroup_matches_the_path_or_below_in_any_hierarchy():
    assert in_cgroup(HYBRID, "/machine.slice/machine-web.scope")
    assert not in_cgroup(HYBRID, "/machine.slice/machine-we")  # a prefix of a name is not the cgroup
    assert not in_cgroup("0::/user.slice\n", "/machine.slice/machine-web.scope")


def test_a_process_outside_the_machines_cgroup_is_not_joined():
    with pytest.raises(NsdashError, match="no longer its leader"):
        pin_leader("web", os.getpid(), "/machine.slice/machine-nsdash-nonexistent.scope")


def test_a_leader_gone_before_we_look_is_not_joined():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)  # reaped: the PID is free (and could be anyone's next)
    with pytest.raises(NsdashError, match="stopped while we joined it"):
        pin_leader("web", pid, "/")


def test_the_pidfd_tells_when_the_pinned_process_has_exited():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.read(r, 1)
        os._exit(0)
    pidfd = pin_leader("web", pid, "/")  # "/" holds every process
    try:
        assert still_running(pidfd)
        os.write(w, b"x")
        os.waitpid(pid, 0)
        assert not still_running(pidfd)
    finally:
        os.close(pidfd)
        os.close(r)
        os.close(w)
