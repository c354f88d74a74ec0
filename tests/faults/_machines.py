"""Helpers for the fault tests: start detached machines and always tear them down."""

from __future__ import annotations

from conftest import teardown_machine

teardown = teardown_machine  # the suite-wide teardown, under the name these tests use


def one_line_error(r) -> bool:
    return (r.returncode != 0 and r.stderr.startswith("nsdash: ") and r.stderr.count("\n") == 1
            and "Traceback" not in r.stderr)
