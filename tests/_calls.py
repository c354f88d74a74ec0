"""Counting work, not timing it: how many Python function calls a piece of code makes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def python_calls(fn: Callable[..., Any], *args: Any) -> tuple[Any, int]:
    """FN(*ARGS)'s result and the number of Python functions it called (itself included;
    calls into C are not counted)."""
    calls = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    sys.setprofile(count)
    try:
        result = fn(*args)
    finally:
        sys.setprofile(None)
    return result, calls
