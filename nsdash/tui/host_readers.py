"""The dashboard's real readers, and its first snapshot taken while Textual still loads.

This module imports no Textual (tests/tui/test_first_snapshot.py checks it), so
`nsdash` can start the first snapshot in a thread before it imports the toolkit:
the host's readers opened, the counters sampled once, the cgroup tree walked and
the machines listed while the main thread imports Textual (issue 16: the first
full frame within 250 ms).  Before, the poller thread began that snapshot only
once the app had mounted, side by side with the composition of the first
screen; when it came late (a loaded host) the screen painted its empty panels
first, four frames of work for nothing, and the full frame waited for it.  Now it
is ready long before the screen is composed, and about a third of it (opening and
reading /proc and cgroupfs files, the GIL released) runs on the other core.

The poller (nsdash.tui.poller) takes over the readers and posts this snapshot
first; its next refresh comes one interval later, as if it had taken it itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from nsdash.errors import NsdashError
from nsdash.monitor.host import HostSnapshots

if TYPE_CHECKING:
    from nsdash.monitor.snapshot import Snapshot
    from nsdash.tui.poller import JournalFeed


class HostReaders(HostSnapshots):
    """The real readers: the host's snapshots (nsdash.monitor.host) and its machines' journals."""

    def open_journal(self, machines: tuple[str, ...]) -> JournalFeed:
        from nsdash.tui.poller import host_journal  # (Textual is loaded by the time a journal is followed)

        return host_journal(machines)


class FirstSnapshot:
    """HostReaders made and their first snapshot taken in a thread of their own, started at once.

    `result()` (the poller's thread) claims both and waits for them; what failed is handed on,
    as the poller would have met it: the readers' error (no readers), or the snapshot's
    (readers, no snapshot).  Only the errors a reader may raise are caught, as the poller
    catches them.  Readers nobody claimed are closed by `close()` (the app ended), or by the
    thread itself if it finishes after that: quitting never waits for a host read.
    """

    def __init__(self, make: Callable[[], HostReaders] = HostReaders) -> None:
        """MAKE: the readers' maker (tests give their own)."""
        self._make = make
        self.readers: HostReaders | None = None
        self.snapshot: Snapshot | None = None
        self.error: NsdashError | OSError | None = None
        self._lock = threading.Lock()
        self._finished = False  # the thread is done
        self._claimed = False  # the poller asked for the readers: its own to close
        self._closed = False  # the app ended: nobody will ask
        self._thread = threading.Thread(target=self._take, name="nsdash-first-snapshot", daemon=True)
        self._thread.start()

    def _take(self) -> None:
        try:
            self.readers = self._make()
            self.snapshot = self.readers.snapshot()
        except (NsdashError, OSError) as e:
            self.error = e
        finally:
            with self._lock:
                self._finished = True
                orphaned = self._closed and not self._claimed
            if orphaned:
                self._close_readers()

    def result(self) -> tuple[HostReaders | None, Snapshot | None, NsdashError | OSError | None]:
        """(readers, snapshot, error) once the thread is done; the readers are the caller's to close."""
        with self._lock:
            self._claimed = True
        self._thread.join()
        return self.readers, self.snapshot, self.error

    def close(self) -> None:
        """The app ended: its readers closed unless the poller claimed them (now, or when the
        thread has made them); never waits."""
        with self._lock:
            self._closed = True
            now = self._finished and not self._claimed
        if now:
            self._close_readers()

    def _close_readers(self) -> None:
        if self.readers is not None:
            self.readers.close()
