"""The dashboard over several hosts (issue 20): the pure parts, no ssh."""

from __future__ import annotations

import pytest

from nsdash.cli.dashboard import hosts_file
from nsdash.errors import NsdashError, UsageError
from nsdash.remote.hosts import backoff
from nsdash.remote.target import Target
from nsdash.tui.remote import UNREACHABLE, machine_info, split_key


def test_backoff_doubles_from_one_second_up_to_thirty():
    assert [backoff(n) for n in range(0, 8)] == [0, 1, 2, 4, 8, 16, 30, 30]
    assert backoff(10_000) == 30  # no overflow after a long outage


def test_key_splits_at_the_first_slash():
    assert split_key("root@far1:2222/bb") == ("root@far1:2222", "bb")
    with pytest.raises(NsdashError):
        split_key("bb")


def test_machine_info_takes_names_and_escapes_far_text():
    m = machine_info("far1", {"machine": "bb", "state": "\x1b[31mrunning", "os": "debian", "version": "12",
                              "addresses": ["10.0.0.2", "fe80::1"], "leader": 4242, "cgroup": "/machine.slice/x",
                              "since": "2026-12-05T00:00:00Z", "boot": 2})
    assert m is not None
    assert (m.name, m.host, m.os, m.address, m.boot) == ("far1/bb", "far1", "debian 12", "10.0.0.2", 2)
    assert "\x1b" not in m.state and m.state.endswith("running")
    # the far side's PIDs and cgroups mean nothing here: never taken
    assert m.leader is None and m.cgroup is None and m.root is None
    assert m.started == 1796428800.0
    assert machine_info("far1", {"machine": "bb", "state": "running"}, reachable=False).state == UNREACHABLE
    assert machine_info("far1", {"machine": "a/b"}) is None
    assert machine_info("far1", {"machine": 7}) is None
    assert machine_info("far1", {"machine": "x" * 10, "state": "y" * 500}).state == "y" * 24


def test_hosts_file(tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    assert hosts_file(env) == []
    (tmp_path / "nsdash").mkdir()
    (tmp_path / "nsdash" / "hosts").write_text("# build farm\nbuild1\n\nroot@build2:2222  # the big one\nbuild1\n")
    assert hosts_file(env) == [Target("build1"), Target("build2", "root", 2222)]
    (tmp_path / "nsdash" / "hosts").write_text("build1\n-oProxyCommand=x\n")
    with pytest.raises(UsageError, match=r"hosts:2: "):
        hosts_file(env)


def test_a_host_that_fails_is_reported_in_one_line_and_stop_cuts_its_backoff_short(monkeypatch):
    import time

    from nsdash.remote.hosts import HostWatch

    # an "ssh" that fails at once as ssh does when the host is down (exit 255, its last words on stderr)
    monkeypatch.setenv("NSDASH_SSH_COMMAND", "sh -c 'echo ssh: connect to host down: No route to host >&2; exit 255'")
    watch = HostWatch(Target("down"), interval=0.1, timeout=5)
    watch.start()
    try:
        deadline = time.monotonic() + 30
        while watch.state()[1] is None:
            assert time.monotonic() < deadline, "no failure reported"
            time.sleep(0.02)
        machines, error, fresh = watch.state()
        assert machines == [] and not fresh
        assert error is not None and "cannot reach down" in error and "No route to host" in error
        assert "\n" not in error
    finally:
        watch.stop()
    assert not watch._thread.is_alive()
    assert watch.connects >= 1


def test_stop_kills_an_ssh_that_never_greets(monkeypatch):
    import time

    from nsdash.remote.hosts import HostWatch

    # a host that takes the connection and says nothing: the greeting would wait its whole timeout
    monkeypatch.setenv("NSDASH_SSH_COMMAND", "sh -c 'exec sleep 600'")
    watch = HostWatch(Target("silent"), interval=1, timeout=600)
    watch.start()
    deadline = time.monotonic() + 30
    while watch._ssh is None:
        assert time.monotonic() < deadline, "ssh never started"
        time.sleep(0.02)
    ssh = watch._ssh
    watch.stop()
    assert not watch._thread.is_alive()  # (without the kill it would still wait for the greeting)
    assert ssh.poll() is not None  # killed and reaped
