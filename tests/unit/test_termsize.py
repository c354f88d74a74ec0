"""nsdash.tui.termsize answers as shutil.get_terminal_size does (issue 16: without shutil's
import), in a terminal (a PTY of a known size) and without one, with and without $COLUMNS/$LINES."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_BOTH = ("import shutil; from nsdash.tui import termsize; "
         "print(tuple(shutil.get_terminal_size()), termsize.terminal_size())")


def _both(env: dict[str, str], terminal: bool) -> str:
    env = {**{k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}, "PYTHONPATH": str(REPO), **env}
    if not terminal:
        out = subprocess.run([sys.executable, "-c", _BOTH], capture_output=True, text=True, env=env, timeout=60,
                             stdin=subprocess.DEVNULL)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()
    primary, secondary = pty.openpty()
    try:
        fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 37, 123, 0, 0))
        out = subprocess.run([sys.executable, "-c", _BOTH], stdin=secondary, stdout=secondary,
                             stderr=subprocess.PIPE, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        return os.read(primary, 4096).decode().strip()
    finally:
        os.close(primary)
        os.close(secondary)


@pytest.mark.parametrize("env", [{}, {"COLUMNS": "100", "LINES": "30"}, {"COLUMNS": "100"}, {"LINES": "0"},
                                 {"COLUMNS": "x", "LINES": "-3"}])
@pytest.mark.parametrize("terminal", [True, False])
def test_the_size_is_shutils(env, terminal):
    shutils, ours = _both(env, terminal).split(") (")
    assert shutils + ")" == "(" + ours, (env, terminal)
    if terminal and not env:
        assert ours == "123, 37)"  # the PTY's own size
