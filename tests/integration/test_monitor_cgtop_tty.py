"""`nsdash cgtop` on a terminal: a full-screen refresh loop driven by keys (real PTY)."""

from __future__ import annotations

import os
import pty
import select
import sys
import time

from tests.conftest import REPO


def _read_until(fd: int, needle: bytes, timeout: float = 10.0) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while needle not in data and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                data += os.read(fd, 65536)
            except OSError:
                break
    return data


def test_interactive_cgtop_redraws_reorders_and_quits_on_q():
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(REPO)
        os.environ["COLUMNS"], os.environ["LINES"] = "100", "30"
        os.execv(sys.executable, [sys.executable, "-m", "nsdash", "cgtop", "-d", "0.2"])
    try:
        first = _read_until(fd, b"Output/s")
        assert b"\x1b[H\x1b[2J" in first and b"Control Group" in first and b"Tasks" in first
        os.write(fd, b"%")  # CPU as time instead of percent
        assert b"CPU Time" in _read_until(fd, b"CPU Time")
        os.write(fd, b"q")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            _read_until(fd, b"\0", 0.1)
        else:
            raise AssertionError("cgtop did not quit on q")
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
