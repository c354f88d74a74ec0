"""The closed sets are Literal types mypy checks, and they match the run-time lists."""

from __future__ import annotations

import gc
from typing import get_args

from mypy import api

from nsdash.launcher import modes, optable, userns


def test_each_literal_equals_the_tuple_the_options_accept():
    assert get_args(modes.ConsoleMode) == optable.CONSOLE
    assert get_args(modes.Register) == optable.REGISTER
    assert get_args(modes.LinkJournal) == optable.LINK_JOURNAL
    assert get_args(modes.ResolvConf) == optable.RESOLV_CONF
    assert get_args(modes.Timezone) == optable.TIMEZONE
    assert get_args(modes.Ownership) == optable.OWNERSHIP == userns.OWNERSHIP
    assert get_args(modes.Volatile) == optable.VOLATILE


PROBE = '''
from pathlib import Path
from nsdash.launcher.container import Outcome
from nsdash.launcher.plan import Hardening
from nsdash.launcher.spec import ContainerSpec
from nsdash.machines.run import console_mode
from nsdash.machines.state import Phase
ContainerSpec(machine="m", directory=Path("/"), console="read-only", link_journal="try-host")
ContainerSpec(machine="m", directory=Path("/"), console="bogus")  # line 9
ContainerSpec(machine="m", directory=Path("/"), register="maybe")  # line 10
Outcome("crashed", 1)  # line 11
console_mode("autopipe", True, True)
Hardening(seccomp="not bytes")  # line 13
up: Phase = "degraded"
down: Phase = "sleeping"  # line 15
'''


def test_mypy_refuses_a_value_outside_a_closed_set(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    thresholds = gc.get_threshold()
    try:
        out, err, status = api.run([str(probe), "--cache-dir", str(tmp_path / "cache"), "--no-error-summary",
                                    "--python-version", "3.11"])
    finally:
        gc.set_threshold(*thresholds)  # mypy sets its own (200000, ...) for the process: not ours to keep
    assert status == 1, err
    lines = {int(line.split(":")[1]) for line in out.splitlines() if ": error:" in line}
    assert lines == {9, 10, 11, 13, 15}, out
