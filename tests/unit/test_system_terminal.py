"""nsdash.system.terminal: this process's terminal (its size, raw mode), on a real PTY."""

from __future__ import annotations

import fcntl
import os
import struct
import termios

import pytest

from nsdash.system import terminal


@pytest.fixture
def pty():
    master, slave = os.openpty()
    yield master, slave
    os.close(master)
    os.close(slave)


def test_window_size_is_rows_then_columns_and_none_off_a_terminal(pty):
    _, slave = pty
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    assert terminal.window_size(slave) == (33, 101)
    r, w = os.pipe()
    try:
        assert terminal.window_size(r) is None
    finally:
        os.close(r)
        os.close(w)


def test_raw_for_the_block_only_and_given_back_after_an_error(pty):
    _, slave = pty
    before = termios.tcgetattr(slave)
    assert before[3] & termios.ICANON and before[3] & termios.ECHO
    with pytest.raises(RuntimeError), terminal.raw(slave):
        inside = termios.tcgetattr(slave)
        assert not inside[3] & (termios.ICANON | termios.ECHO | termios.ISIG)
        raise RuntimeError("the bridge failed")
    assert termios.tcgetattr(slave) == before
    with terminal.raw(None):  # no terminal: nothing to change
        assert termios.tcgetattr(slave) == before
