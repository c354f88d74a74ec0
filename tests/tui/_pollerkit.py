"""The poller's tests, once: readers that read no host, and a post() that keeps what the poller
posts (the poller's own thread posts; the test waits on a semaphore, never sleeps)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from nsdash.tui.messages import Snapshot, SnapshotReady


class StubReaders:
    """Just enough of HostReaders for the poller: a snapshot at 1.0 (the first one an I/O error
    with FAIL_FIRST), no journal, the thread they were made in, the snapshots taken, closed."""

    def __init__(self, fail_first: bool = False) -> None:
        self.made_in = threading.current_thread()
        self.tree_every = 2
        self.fail_first = fail_first
        self.snapshots = 0
        self.closed = False

    def snapshot(self) -> Snapshot:
        self.snapshots += 1
        if self.fail_first and self.snapshots == 1:
            raise OSError(5, "Input/output error")
        return Snapshot(1.0)

    def open_journal(self, machines):
        raise OSError("no journal here")

    def close(self) -> None:
        self.closed = True


def collect(kind: type = SnapshotReady) -> tuple[list, threading.Semaphore, Callable[[object], None]]:
    """(posted, arrived, post): post() keeps the messages of KIND in posted, releasing arrived
    once for each."""
    posted: list = []
    arrived = threading.Semaphore(0)

    def post(message) -> None:
        if isinstance(message, kind):
            posted.append(message)
            arrived.release()

    return posted, arrived, post
