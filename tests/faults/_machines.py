"""Helpers for the fault tests: start detached machines and always tear them down."""

from __future__ import annotations

import os
import signal
import time

from conftest import run_nsdash

from nsdash.machines import state as st


def wait_for(pred, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def teardown(name: str) -> None:
    """Whatever state a test left NAME in: stop it, kill its supervisor, clean its orphan."""
    d = st.machine_dir(name)
    if st.supervisor_alive(d):
        run_nsdash("terminate", name, timeout=30)
    if st.supervisor_alive(d):
        s = st.read_state(d)
        if s:
            os.kill(s.supervisor, signal.SIGKILL)
        wait_for(lambda: not st.supervisor_alive(d), 5, "supervisor death")
    if d.exists():
        from nsdash.launcher.orphans import clean_orphan

        clean_orphan(name)


def one_line_error(r) -> bool:
    return (r.returncode != 0 and r.stderr.startswith("nsdash: ") and r.stderr.count("\n") == 1
            and "Traceback" not in r.stderr)
