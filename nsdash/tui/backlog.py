"""TerminalBacklog: a flood is painted at the rate the terminal reads it (issue 15).

Textual hands every frame to a writer thread through a queue (30 writes deep);
the thread writes them to the terminal and blocks while the terminal has not
read what came before.  A terminal that reads slower than a flood is painted
(tmux working through the console's and the journal's repaints, on a loaded
host) leaves frames waiting in that queue, and a key's frame, written after
them, shows only once the terminal has read them all: the last slow keys of a
flood (0.2-0.3 s) waited there, after the app had drawn them.

The kernel cannot say how far behind the terminal is: TIOCOUTQ on a PTY's
slave end is always 0 (the pty driver keeps no count; checked on 6.18), and a
PTY takes about 20 KB before a write blocks.  So the backlog is counted here,
where the bytes pass: `queued` counts what the app gave the driver, `written`
what the writer thread's writes have passed on to the terminal (the kernel's
buffer, or Python's, flushed at the queue's end).  Their difference is what a
new frame waits behind, besides the PTY's own buffer.

While more than BEHIND bytes are pending, the flood's producers hold off: the
journal pane's writer waits in `caught_up()` before a slice, the console pane
takes no flood frame.  A key's own frame is never held, so it has at most
BEHIND bytes and one flood frame ahead of it (and the PTY's buffer).  A wait
ends after WAIT_MOST even if the terminal has not caught up (a count gone
wrong must not stop the panes for good; Textual's full queue then blocks as it
always did).
"""

from __future__ import annotations

import asyncio
import io
import time
from typing import IO, Any, cast

from nsdash.tui import termsize
from nsdash.tui.quiet_input import QuietInputDriver

BEHIND = 2 * 1024  # characters pending past which the flood's producers wait
WAIT_MOST = 1.0  # s: the longest one wait for the terminal lasts
POLL = 0.005  # s: how often a wait looks again (the writer thread tells no one)
_clock = time.monotonic  # (a test sets its own)


class TerminalBacklog:
    """Bytes given to the terminal's writer thread and not yet written by it."""

    def __init__(self) -> None:
        self.queued = 0  # characters the app wrote to the driver (the UI thread adds)
        self.written = 0  # characters the writer thread wrote on (that thread adds)
        self.holds = 0  # times flood work waited for the terminal (tests read it)
        self.skipped = 0  # flood frames not taken while behind (tests read it)
        self.most = 0  # the most ever pending when a producer looked

    @property
    def pending(self) -> int:
        return self.queued - self.written

    def behind(self) -> bool:
        """True while the terminal has more than BEHIND bytes of ours still to read."""
        pending = self.queued - self.written
        if pending > self.most:
            self.most = pending
        return pending > BEHIND

    def skip(self) -> bool:
        """`behind`, counting a flood frame left out for it (the console pane)."""
        if self.behind():
            self.skipped += 1
            return True
        return False

    async def caught_up(self) -> None:
        """Return once the terminal is no more than BEHIND bytes behind (at most WAIT_MOST)."""
        if not self.behind():
            return
        self.holds += 1
        until = _clock() + WAIT_MOST
        while self.behind() and _clock() < until:
            await asyncio.sleep(POLL)


class _CountedFile:
    """The terminal's file as the writer thread sees it: each write counted once it returned."""

    def __init__(self, file: IO[str], backlog: TerminalBacklog) -> None:
        self._file = file
        self._backlog = backlog

    def write(self, text: str) -> int:
        written = self._file.write(text)
        self._backlog.written += len(text)
        return written

    def flush(self) -> None:
        self._file.flush()

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding ...: the file's own
        return getattr(self._file, name)


class CountingDriver(QuietInputDriver):
    """Textual's Linux driver, its output counted into the app's `backlog` (NsdashApp.get_driver_class),
    its input thread asleep until input (nsdash.tui.quiet_input).

    Counting goes where the bytes pass, with no private state replaced: `write` (the UI
    thread's way into the writer queue) and the file the writer thread is made with."""

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        found = getattr(app, "backlog", None)
        self._backlog = found if isinstance(found, TerminalBacklog) else TerminalBacklog()
        if self._file is not None:
            self._file = cast(io.TextIOWrapper, _CountedFile(self._file, self._backlog))

    def write(self, data: str) -> None:
        self._backlog.queued += len(data)
        super().write(data)

    def _get_terminal_size(self) -> tuple[int, int]:
        # Textual's asks shutil.get_terminal_size: the same answer without shutil's import
        # (bz2 and lzma and their libraries) on the way to the first frame (nsdash.tui.termsize).
        return termsize.terminal_size()


def backlog(app: object) -> TerminalBacklog:
    """APP's backlog (NsdashApp.backlog), or one that is never behind."""
    found = getattr(app, "backlog", None)
    return found if isinstance(found, TerminalBacklog) else _NONE


_NONE = TerminalBacklog()
