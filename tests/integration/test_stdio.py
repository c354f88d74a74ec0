"""Odd standard descriptors, as root on the BusyBox tree: `nsdash spawn` with its standard
output closed, read-only or failing; `nsdash login` with a stdin it cannot read.

systemd-nspawn 252 drops the guest's output then and exits 0 (`>&-`), or says
"write(): No space left on device" and exits 0 (`>/dev/full`).  nsdash refuses a
console with nowhere to go before anything is made, and says a failing one once
and exits non-zero; --console=pipe and --console=passive run as under nspawn.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from conftest import REPO, console_log, run_nsdash, wait_for

RAN = "/ran"  # the payload's mark in the tree: it ran, to its end
SCRIPT = f"echo hello; sleep 0.1; echo again; echo done > {RAN}"
REFUSED = ("nsdash: standard output is closed (or read-only): the guest's console has nowhere to go; "
           "run it with its output open (>/dev/null drops it; --console=passive shows none)\n")


def spawn_with(redirect: str, tree, *options: str, script: str = SCRIPT) -> subprocess.CompletedProcess:
    """`nsdash spawn -q [OPTIONS] -D TREE /bin/sh -c SCRIPT` with REDIRECT applied by a shell."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("NSDASH_DEBUG", None)
    argv = [sys.executable, "-S", str(REPO / "bin" / "nsdash"), "spawn", "-q", *options, "-D", str(tree),
            "/bin/sh", "-c", script]
    return subprocess.run(["sh", "-c", f'exec "$@" {redirect}', "sh", *argv], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60, cwd=REPO)


@pytest.mark.parametrize("redirect", [">&-", "1</dev/null"])
def test_a_closed_or_read_only_stdout_is_refused_before_anything_runs(busybox_tree, redirect):
    r = spawn_with(redirect, busybox_tree)
    assert (r.returncode, r.stderr) == (1, REFUSED)
    assert not (busybox_tree / RAN.lstrip("/")).exists()  # nothing ran (the leak check: nothing left)


def test_a_failing_stdout_is_said_once_and_the_exit_status_is_1(busybox_tree):
    r = spawn_with(">/dev/full", busybox_tree)
    assert r.returncode == 1
    assert r.stderr == ("nsdash: write error: No space left on device; the guest's output is dropped from "
                        "here on (free some space or send it elsewhere)\n")
    assert (busybox_tree / RAN.lstrip("/")).read_text() == "done\n"  # the machine ran on to its end


def test_a_failing_stdout_keeps_a_failed_payloads_own_status(busybox_tree):
    r = spawn_with(">/dev/full", busybox_tree, script="echo hello; exit 7")
    assert r.returncode == 7
    assert r.stderr.startswith("nsdash: write error: No space left on device;")


def test_a_reader_gone_is_no_error(busybox_tree):
    """`nsdash spawn ... | true`: the pipe's reader went away; the machine runs on, quietly."""
    r = spawn_with("| true", busybox_tree, script=f"sleep 0.2; {SCRIPT}")
    assert (r.returncode, r.stderr) == (0, "")
    assert (busybox_tree / RAN.lstrip("/")).read_text() == "done\n"


@pytest.mark.parametrize("console, status, stderr", [
    ("pipe", 0, "sh: write error: Bad file descriptor\n" * 2),  # the payload has our descriptors: it says so
    ("passive", 0, ""),  # no output is shown: nothing to refuse
])
def test_pipe_and_passive_consoles_run_with_stdout_closed(busybox_tree, console, status, stderr):
    r = spawn_with(">&-", busybox_tree, f"--console={console}")
    assert (r.returncode, r.stderr) == (status, stderr)
    assert (busybox_tree / RAN.lstrip("/")).read_text() == "done\n"


def test_login_with_a_write_only_stdin_reads_it_as_ended(detached, busybox_tree, machine_name):
    """`nsdash login M 0>/dev/null`: no input to send, as at its end; the console is still shown
    until the machine goes (was: the first read's EBADF as a traceback)."""
    detached("-bD", str(busybox_tree))
    wait_for(lambda: "login:" in console_log(machine_name), what="the getty prompt")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("NSDASH_DEBUG", None)
    login = subprocess.Popen(["sh", "-c", 'exec "$@" 0>/dev/null', "sh", sys.executable, "-S",
                              str(REPO / "bin" / "nsdash"), "login", machine_name],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO)
    try:
        time.sleep(0.5)  # (its first look at stdin; nothing to wait for that can be seen)
        assert login.poll() is None, login.communicate()
        assert run_nsdash("poweroff", machine_name).returncode == 0
        out, err = login.communicate(timeout=30)
    finally:
        if login.poll() is None:
            login.kill()
            login.wait()
    assert login.returncode == 0, err
    assert b"login:" in out
    assert err.decode().endswith(f"Machine {machine_name} terminated.\r\n"), err
