"""`nsdash systemctl` argument mistakes: one line on stderr, a non-zero exit, before any machine is touched."""

from __future__ import annotations

import pytest

from tests.conftest import run_nsdash


@pytest.mark.parametrize("args,expect", [
    (["list-units"], "the following arguments are required: -M/--machine"),
    (["-M", "m1", "frob"], "unknown systemctl verb 'frob'"),
    (["-M", "m1", "start"], "'start' needs at least one unit"),
    (["-M", "m1", "-t", "bogus"], "unknown unit type 'bogus'"),
    (["-M", "m1", "-o", "yaml"], "invalid choice: 'yaml'"),
    (["-M", "m1", "-n", "-2", "status", "x"], "--lines must be 0 or more"),
])
def test_mistakes_give_one_line(args, expect):
    r = run_nsdash("systemctl", *args)
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.startswith("nsdash: ") and r.stderr.count("\n") == 1
    assert expect in r.stderr


def test_help_names_the_verbs():
    r = run_nsdash("systemctl", "--help")
    assert r.returncode == 0
    assert "list-units" in r.stdout and "--no-block" in r.stdout
