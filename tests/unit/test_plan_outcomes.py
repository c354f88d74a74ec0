"""Pure pieces of the run: how PID 1's end maps to an outcome and an exit code, the console
mode actually used, the ^]^]^] detector, signal names, UUIDs."""

from __future__ import annotations

import os
import signal
import uuid

import pytest

from nsdash.launcher.container import Outcome
from nsdash.launcher.plan import format_uuid, new_uuid, signal_name
from nsdash.machines.run import EscapeDetector, console_mode


def _signalled(sig: int) -> int:
    return sig  # a wait status for "killed by SIG" (no core dump)


def _exited(code: int) -> int:
    return code << 8


@pytest.mark.parametrize("status,kind,code,exit_code", [
    (_exited(0), "exited", 0, 0),
    (_exited(7), "exited", 7, 7),
    (_signalled(signal.SIGHUP), "reboot", 0, 0),  # reboot(2) in a PID namespace
    (_signalled(signal.SIGINT), "poweroff", 0, 0),  # poweroff/halt
    (_signalled(signal.SIGKILL), "killed", signal.SIGKILL, 137),
    (_signalled(signal.SIGTERM), "killed", signal.SIGTERM, 143),
])
def test_outcome_from_wait_status(status, kind, code, exit_code):
    assert os.WIFSIGNALED(status) or os.WIFEXITED(status)
    outcome = Outcome.from_wait_status(status)
    assert (outcome.kind, outcome.status, outcome.exit_code()) == (kind, code, exit_code)


@pytest.mark.parametrize("requested,stdin_tty,stdout_tty,used", [
    ("interactive", True, True, "interactive"),
    ("interactive", False, False, "read-only"),  # nspawn's default off a terminal
    ("autopipe", True, True, "interactive"),
    ("autopipe", True, False, "pipe"),
    ("pipe", True, True, "pipe"),
    ("read-only", True, True, "read-only"),
    ("passive", False, True, "passive"),
])
def test_console_mode(requested, stdin_tty, stdout_tty, used):
    assert console_mode(requested, stdin_tty, stdout_tty) == used


def test_three_escapes_within_a_second():
    d = EscapeDetector()
    assert not d.feed(b"\x1d", now=0.0)
    assert not d.feed(b"\x1d", now=0.4)
    assert d.feed(b"\x1d", now=0.8)
    d = EscapeDetector()
    assert not d.feed(b"\x1d\x1d", now=0.0)
    assert not d.feed(b"\x1d", now=1.5)  # too slow: the window restarts
    d = EscapeDetector()
    assert not d.feed(b"\x1dx\x1d\x1d", now=0.0)  # another key in between resets the count
    assert d.feed(b"\x1d\x1d\x1d", now=0.0)


def test_signal_names_and_uuids():
    assert signal_name(signal.SIGRTMIN + 3) == "SIGRTMIN+3"
    assert signal_name(signal.SIGTERM) == "SIGTERM"
    h = new_uuid()
    assert len(h) == 32 and uuid.UUID(h).version == 4
    assert format_uuid(h) == str(uuid.UUID(h))
