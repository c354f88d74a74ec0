"""A bench that is stopped still stops what it started.

Benches start machines, make thousands of cgroups and run dashboards in tmux,
and undo that in `finally` blocks (and report.py removes the bench's state
directory at exit).  Ctrl-C runs those blocks; SIGTERM and SIGHUP, by default,
kill the process where it stands: a bench killed so once left 21 machines
running.  `unwind_on_signals()` (report.py calls it on import, so every bench
has it) makes SIGTERM and SIGHUP raise SystemExit in the main thread, as Ctrl-C
raises KeyboardInterrupt, so the same blocks run.  `shielded()` holds such
signals (Ctrl-C too) while a cleanup runs, and raises for the first one after
it: a second Ctrl-C or kill does not cut the cleanup short.  SIGKILL cannot be
caught; nothing here helps against it.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from typing import Any

UNWOUND = (signal.SIGTERM, signal.SIGHUP)
_held: list[int] | None = None  # the signals that came while shielded (None: not shielded)


def _raise_for(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)  # the exit status a shell reports for a process killed by it


def _on_signal(signum: int, _frame: object) -> None:
    if _held is not None:
        _held.append(signum)
        return
    _raise_for(signum)


def unwind_on_signals() -> None:
    """SIGTERM and SIGHUP unwind the main thread (SystemExit 128+N) instead of killing the process.
    A handler a bench set itself is kept; only the main thread may set handlers (else nothing)."""
    for sig in UNWOUND:
        with contextlib.suppress(ValueError):  # not the main thread
            if signal.getsignal(sig) is signal.SIG_DFL:
                signal.signal(sig, _on_signal)


class shielded(contextlib.AbstractContextManager):  # noqa: N801 - used as a function, like contextlib's
    """Run a cleanup to its end: SIGINT, SIGTERM and SIGHUP wait until it is done, then the first
    of them raises as it would have (KeyboardInterrupt, SystemExit), unless the cleanup runs in a
    `finally` that an exception already unwinds (a first signal): that one goes on."""

    def __enter__(self) -> shielded:
        global _held
        self.outer = _held is not None  # nested: the outer one holds and raises
        self.previous: dict[int, Any] = {}
        if not self.outer:
            for sig in (signal.SIGINT, *UNWOUND):
                with contextlib.suppress(ValueError):  # not the main thread
                    self.previous[sig] = signal.signal(sig, _on_signal)
            _held = []
        return self

    def __exit__(self, *exc: object) -> None:
        global _held
        if self.outer:
            return
        held, _held = _held or [], None
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        if held and exc[1] is None and sys.exc_info()[1] is None:
            _raise_for(held[0])
