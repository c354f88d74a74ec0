"""--register for a run in the terminal, on a host without systemd-machined (this one).

The registered path is tested against the real machined inside a booted Debian
machine: tests/integration/test_machines.py::test_nested_machine_is_registered_with_the_real_machined.
"""

import os

from conftest import run_nsdash


def _no_systemd() -> bool:
    return not os.path.isdir("/run/systemd/system")


def test_register_yes_without_machined_is_one_clear_line_and_nothing_left(busybox_tree, machine_name):
    r = run_nsdash("spawn", "--register=yes", "-M", machine_name, "-D", str(busybox_tree), "/bin/true")
    if _no_systemd():
        assert r.returncode != 0
        assert r.stderr.count("\n") == 1 and "systemd-machined is not reachable" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    else:  # a host whose machined answers: registered and unregistered around the run
        assert r.returncode == 0, r.stderr


def test_register_auto_without_machined_runs_quietly(busybox_tree, machine_name):
    r = run_nsdash("spawn", "-q", "--register=auto", "-M", machine_name, "-D", str(busybox_tree),
                   "/bin/sh", "-c", "echo ran")
    assert r.returncode == 0 and r.stdout.strip() == "ran" and r.stderr == "", r.stderr
