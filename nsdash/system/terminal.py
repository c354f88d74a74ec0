"""This process's own terminal: its size and raw mode, for the commands that bridge it to a
console or a command inside a machine (login and shell, here and over -H).

termios and tty load on the first raw(): a -H command without a terminal never needs them.
"""

from __future__ import annotations

import contextlib
import os

TYPE_CHECKING = False  # mypy reads this as True
if TYPE_CHECKING:
    from collections.abc import Iterator


def window_size(fd: int) -> tuple[int, int] | None:
    """(rows, columns) of the terminal on FD; None when FD is not a terminal."""
    try:
        cols, rows = os.get_terminal_size(fd)
    except OSError:
        return None
    return rows, cols


@contextlib.contextmanager
def raw(fd: int | None) -> Iterator[None]:
    """The terminal on FD in raw mode for the block, its mode given back after (once what was
    written has gone out: TCSADRAIN); with None, nothing is changed."""
    if fd is None:
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
