"""Helpers for the fault tests: start detached machines and always tear them down."""

from __future__ import annotations

import time

from conftest import teardown_machine


def wait_for(pred, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


teardown = teardown_machine  # the suite-wide teardown, under the name these tests use


def one_line_error(r) -> bool:
    return (r.returncode != 0 and r.stderr.startswith("nsdash: ") and r.stderr.count("\n") == 1
            and "Traceback" not in r.stderr)
