"""The terminal's size as shutil.get_terminal_size gives it, without importing shutil.

Textual's Linux driver asks shutil for the size when it starts (and on each
resize), and shutil's import brings bz2 and lzma, their C libraries loaded: about
5 M instructions (0.5%) to the dashboard's first frame (issue 16; 29 M in an
interpreter that has loaded nothing else), for a question os answers.  The answer
is shutil's: $COLUMNS and $LINES when they are positive numbers, else the size of
the terminal on the interpreter's own stdout, else 80 columns by 24 lines
(tests/unit/test_termsize.py compares the two).
"""

from __future__ import annotations

import os
import sys

FALLBACK = (80, 24)  # shutil.get_terminal_size's default


def _env(name: str) -> int:
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        return 0


def terminal_size() -> tuple[int, int]:
    """(columns, lines), as shutil.get_terminal_size() with its default fallback answers."""
    columns, lines = _env("COLUMNS"), _env("LINES")
    if columns <= 0 or lines <= 0:
        out = sys.__stdout__
        try:
            size = os.get_terminal_size(out.fileno()) if out is not None else os.terminal_size(FALLBACK)
        except (AttributeError, ValueError, OSError):
            size = os.terminal_size(FALLBACK)
        columns = columns if columns > 0 else size.columns or FALLBACK[0]
        lines = lines if lines > 0 else size.lines or FALLBACK[1]
    return columns, lines
