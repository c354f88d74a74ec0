"""Several sources (machines' journals, console logs) as one time-ordered stream.

Each entry keeps the machine it came from.  Following waits on every
source's change descriptor at once with poll(2); nothing sleeps.
"""

from __future__ import annotations

import select
import time

from nsdash.errors import NsdashError
from nsdash.journal.entry import Entry
from nsdash.journal.filters import Filters
from nsdash.journal.locate import JournalDir, MachineLogs, locate, require_logs
from nsdash.journal.reader import JournalSource

TYPE_CHECKING = False  # typing is 2 ms of every `nsdash journal`: Source is for mypy only
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path
    from typing import Protocol

    class Source(Protocol):
        skipped: list[str]

        def entries(self) -> Iterator[Entry]: ...
        def tail(self, n: int) -> list[Entry]: ...
        def seek_end(self) -> None: ...
        def fileno(self) -> int: ...
        def timeout_ms(self) -> int: ...
        def read_new(self) -> list[Entry]: ...
        def close(self) -> None: ...


def _key(e: Entry) -> int:
    return e.realtime


class MergedLog:
    """The entries of SOURCES, merged by time: history (all or the last N), then follow."""

    def __init__(self, sources: Sequence[Source]) -> None:
        self.sources = list(sources)
        self._poll: select.poll | None = None
        self._by_fd: dict[int, Source] = {}
        self._output: int | None = None

    @property
    def skipped(self) -> list[str]:
        return [s for src in self.sources for s in src.skipped]

    def entries(self) -> Iterator[Entry]:
        """All matching entries, oldest first."""
        if len(self.sources) == 1:
            return self.sources[0].entries()
        import heapq  # several sources only

        return heapq.merge(*(s.entries() for s in self.sources), key=_key)

    def tail(self, n: int) -> list[Entry]:
        """The last N matching entries over all sources, oldest first."""
        if len(self.sources) == 1:
            found = self.sources[0].tail(n)  # (with n = 0 too: it seeks to the end, for following)
            return found[-n:] if n > 0 else []
        import heapq  # several sources only

        merged = list(heapq.merge(*(s.tail(n) for s in self.sources), key=_key))
        return merged[-n:] if n > 0 else []

    def seek_end(self) -> None:
        for s in self.sources:
            s.seek_end()

    # ------------------------------------------------------------ following

    def filenos(self) -> list[int]:
        """Descriptors that become readable when some source may have new entries."""
        if self._poll is None:
            self._poll = select.poll()
            for s in self.sources:
                fd = s.fileno()
                self._by_fd[fd] = s
                self._poll.register(fd, select.POLLIN)
        return list(self._by_fd)

    def recheck_ms(self) -> int:
        """The longest a follower should go without calling read_new() (-1: only on events)."""
        wanted = -1
        for s in self.sources:
            t = s.timeout_ms()
            if t >= 0:
                wanted = t if wanted < 0 else min(wanted, t)
        return wanted

    def end_with_reader_of(self, fd: int) -> None:
        """wait() raises BrokenPipeError once FD (the output) has lost its reader: `journal -f |
        head -1` ends when head does, not at the guest's next line, which may never come."""
        self.filenos()
        assert self._poll is not None
        self._poll.register(fd, 0)  # POLLERR (a pipe's reader gone) and POLLHUP are always reported
        self._output = fd

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a source changed or TIMEOUT seconds passed; True if something changed."""
        self.filenos()
        assert self._poll is not None
        wanted = -1 if timeout is None else int(timeout * 1000)
        recheck = self.recheck_ms()
        if recheck >= 0:
            wanted = recheck if wanted < 0 else min(wanted, recheck)
        events = self._poll.poll(wanted)
        if self._output is not None and any(fd == self._output for fd, _ in events):
            import errno

            raise BrokenPipeError(errno.EPIPE, "the output's reader has gone")
        return bool(events)

    def read_new(self) -> list[Entry]:
        """Entries added since the last read, by time (non-blocking)."""
        if len(self.sources) == 1:
            return self.sources[0].read_new()
        return sorted((e for s in self.sources for e in s.read_new()), key=_key)

    def follow(self, timeout: float | None = None) -> Iterator[Entry]:
        """New entries as they come, forever (or until TIMEOUT seconds pass with none)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            self.wait(remaining)
            new = self.read_new()
            yield from new
            if deadline is not None and not new and time.monotonic() >= deadline:
                return

    def close(self) -> None:
        for s in self.sources:
            s.close()

    def __enter__(self) -> MergedLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- opening


def sources_for(logs: MachineLogs, filters: Filters, detail: bool = False,
                only: tuple[str, ...] | None = None, follow: bool = True) -> list[Source]:
    """A machine's journal directories, or its console log when it keeps no journal."""
    require_logs(logs)
    if logs.journal_dirs:
        out: list[Source] = []
        try:
            for d in logs.journal_dirs:
                try:
                    out.append(JournalSource(d, filters, logs.name, detail, only, follow))
                except NsdashError:
                    # Gone since locate(): a booting machine's journald moves /run/log/journal
                    # to /var/log/journal when it flushes (or the machine just stopped).
                    if d.exists():
                        raise
        except BaseException:
            for source in out:
                source.close()
            raise
        return out
    assert logs.console_log is not None
    from nsdash.journal.console import ConsoleSource  # machines without a journal only

    return [ConsoleSource(logs.console_log, filters, logs.name, detail)]


def open_logs(machines: Sequence[str] = (), directories: Sequence[str | Path | JournalDir] = (),
              filters: Filters | None = None, detail: bool = False, only: tuple[str, ...] | None = None,
              follow: bool = True) -> MergedLog:
    """One stream over machines (by name) and journal directories (-D).

    only: fetch just these journal fields (None: all; Printer.fields_needed says what a format uses).
    follow=False: the stream is read once and never followed (no inotify is made for it)."""
    filters = filters or Filters()
    sources: list[Source] = []
    try:
        for name in machines:
            sources += sources_for(locate(name), filters, detail, only, follow)
        for d in directories:
            sources.append(JournalSource(d, filters, None, detail, only, follow))
    except BaseException:
        for s in sources:
            s.close()
        raise
    return MergedLog(sources)
