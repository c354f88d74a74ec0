"""The one worker that reads the host and posts immutable snapshots to the app.

It runs in a thread of its own: every `interval` seconds it samples the
counters, walks the cgroup tree and lists the machines; in between it waits on
the followed journal's change descriptors (and a wake-up pipe), so a journal
line reaches the pane at once without polling.  Snapshot messages coalesce in
the app's queue (SnapshotReady.can_replace), so a slow UI never falls behind.

The readers sit behind `Readers`, so the app can run over real machines
(HostReaders) or over fixed data in rendering tests.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from textual.message import Message

from nsdash.errors import NsdashError
from nsdash.monitor.host import TREE_EVERY as TREE_EVERY  # (the app sets the tree's cadence with it)
from nsdash.tui.host_readers import FirstSnapshot
from nsdash.tui.host_readers import HostReaders as HostReaders  # (where tests and benches look for it)
from nsdash.tui.messages import (
    JOURNAL_KEEP,
    JournalLine,
    JournalLines,
    Snapshot,
    SnapshotReady,
)

MIN_INTERVAL, MAX_INTERVAL = 0.25, 30.0
JOURNAL_TAIL = 300


class JournalFeed(Protocol):
    def tail(self, n: int) -> Sequence[JournalLine]: ...
    def read_new(self) -> Sequence[JournalLine]: ...
    def filenos(self) -> list[int]: ...
    def close(self) -> None: ...


class Readers(Protocol):
    """What the poller reads; every call may block on the host."""

    def snapshot(self) -> Snapshot: ...
    def open_journal(self, machines: tuple[str, ...]) -> JournalFeed: ...
    def close(self) -> None: ...


class Poller:
    """Calls the readers in its own thread and hands messages to `post` (thread-safe)."""

    def __init__(self, readers: Readers | None, post: Callable[[Message], object], interval: float = 1.0,
                 make_readers: Callable[[], Readers] | None = None, first: FirstSnapshot | None = None) -> None:
        """READERS, or None and MAKE_READERS: called in the poller's thread, so opening the host's
        files is not done on the UI thread before the first frame; or None and FIRST: readers
        made and their first snapshot taken while Textual loaded (nsdash.tui.host_readers)."""
        self.readers = readers
        self._make = make_readers
        self._first = first
        self._tree_every: int | None = None
        self.post = post
        self.interval = interval
        self._lock = threading.Lock()
        self._journal_want: tuple[str, ...] | None = None
        self._journal_changed = False
        # Lines read while the app has not yet taken the last batch (only the last the pane keeps).
        self._backlog: deque[JournalLine] = deque(maxlen=JOURNAL_KEEP)
        self._journal_unread = False  # a JournalLines is in the app's queue
        self._stop = threading.Event()
        self._close_readers = True  # when the loop ends (stop)
        self._refresh_now = False
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ control (any thread)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="nsdash-poller", daemon=True)
        self._thread.start()

    def stop(self, close_readers: bool = True) -> None:
        """End the thread and wait for it.  CLOSE_READERS False: the readers and the journal left
        open, for a process that exits next (the kernel closes their files at once; closing them
        one by one took 66 ms of `q` with 15,648 cgroup files open)."""
        self._close_readers = close_readers
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def set_interval(self, seconds: float) -> float:
        self.interval = min(MAX_INTERVAL, max(MIN_INTERVAL, seconds))
        readers = self.readers
        if readers is not None and hasattr(readers, "set_interval"):
            readers.set_interval(self.interval)  # remote hosts (-H) keep their own pace
        self._wake()
        return self.interval

    def walk_tree_every(self, refreshes: int) -> None:
        """How often the readers walk the cgroup tree (readers without a tree cadence ignore it)."""
        self._tree_every = max(1, refreshes)
        readers = self.readers  # None until the thread made them: run() applies the cadence then
        if readers is not None and hasattr(readers, "tree_every"):
            readers.tree_every = self._tree_every

    def refresh_now(self) -> None:
        self._refresh_now = True
        self._wake()

    def follow_journal(self, machines: tuple[str, ...] | None, again: bool = False) -> None:
        """Follow these machines' logs (merged), or none; AGAIN re-sends the history (a new pane)."""
        with self._lock:
            if again or machines != self._journal_want:
                self._journal_want = machines
                self._journal_changed = True
        self._wake()

    def journal_taken(self) -> None:
        """The app handled a JournalLines (UI thread): the next batch may go."""
        with self._lock:
            self._journal_unread = False
        if self._backlog:
            self._wake()

    def _post_journal(self, message: JournalLines) -> None:
        with self._lock:
            self._journal_unread = True
        self.post(message)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    # ------------------------------------------------------------ the loop

    def run(self) -> None:
        next_sample = 0.0  # the first refresh at once, unless FirstSnapshot took it
        if self.readers is None:
            try:
                if self._first is not None:
                    next_sample = self._take_first()
                else:
                    self.readers = self._make() if self._make is not None else None
            except (NsdashError, OSError) as e:
                text = e.oneline() if isinstance(e, NsdashError) else f"{type(e).__name__}: {e}"
                self.post(SnapshotReady(Snapshot(time.monotonic(), errors=(f"cannot read the host: {text}",))))
                return
            if self.readers is None:
                return
            if self._tree_every is not None:
                self.walk_tree_every(self._tree_every)
        readers = self.readers
        feed: JournalFeed | None = None
        following: tuple[str, ...] = ()
        try:
            while not self._stop.is_set():
                with self._lock:
                    changed, want = self._journal_changed, self._journal_want
                    self._journal_changed = False
                if changed:
                    if feed is not None:
                        feed.close()
                        feed = None
                    self._backlog.clear()
                    following = want or ()
                    if following:
                        feed = self._open_journal(following)
                elif feed is not None:
                    self._backlog.extend(self._guard(feed.read_new) or ())
                with self._lock:
                    send = bool(self._backlog) and not self._journal_unread
                if send:
                    batch = tuple(self._backlog)
                    self._backlog.clear()
                    self._post_journal(JournalLines(following, batch, reset=False))
                now = time.monotonic()
                if self._refresh_now or now >= next_sample:
                    self._refresh_now = False
                    snap = self._guard(readers.snapshot)
                    if snap is not None:
                        self.post(SnapshotReady(snap))
                    next_sample = time.monotonic() + self.interval
                fds = [self._wake_r] + (self._guard(feed.filenos) or [] if feed is not None else [])
                timeout = max(0.0, next_sample - time.monotonic())
                # poll(2), not select(2): a busy process may hold descriptors above 1024.
                poller = select.poll()
                for fd in fds:
                    poller.register(fd, select.POLLIN)
                try:
                    ready = [fd for fd, _ in poller.poll(timeout * 1000)]
                except OSError:
                    time.sleep(min(timeout, 0.2))
                    ready = []
                if self._wake_r in ready:
                    with contextlib.suppress(OSError):
                        os.read(self._wake_r, 4096)
        finally:
            if self._close_readers:
                if feed is not None:
                    feed.close()
                readers.close()

    def _take_first(self) -> float:
        """The readers and the snapshot FirstSnapshot took: that snapshot posted (or the error
        it met, as _guard would), the next one due an interval later; raises what making the
        readers raised."""
        assert self._first is not None
        readers, snap, error = self._first.result()
        if readers is None:
            assert error is not None
            raise error
        self.readers = readers
        if snap is not None:
            self.post(SnapshotReady(snap))
        elif error is not None:
            self._post_error(error)
        return time.monotonic() + self.interval  # as after a refresh of the loop's own, failed or not

    def _open_journal(self, machines: tuple[str, ...]) -> JournalFeed | None:
        try:
            assert self.readers is not None  # made before the loop that calls this
            feed = self.readers.open_journal(machines)
            lines = tuple(feed.tail(JOURNAL_TAIL))
        except NsdashError as e:
            self._post_journal(JournalLines(machines, (), reset=True, note=e.oneline()))
            return None
        except OSError as e:
            self._post_journal(JournalLines(machines, (), reset=True, note=f"cannot read the journal: {e}"))
            return None
        self._post_journal(JournalLines(machines, lines, reset=True))
        return feed

    def _guard(self, call):
        """A reader failing must not kill the poller: report it and carry on."""
        try:
            return call()
        except (NsdashError, OSError) as e:
            self._post_error(e)
            return None

    def _post_error(self, e: NsdashError | OSError) -> None:
        text = e.oneline() if isinstance(e, NsdashError) else f"{type(e).__name__}: {e}"
        self.post(SnapshotReady(Snapshot(time.monotonic(), errors=(text,))))


# ---------------------------------------------------------------- the real readers
# (their snapshots: nsdash.monitor.host, which the far side of -H runs without Textual; the
# readers themselves: nsdash.tui.host_readers, which `nsdash` imports before Textual)


def _line_of(entry, machine: str | None = None) -> JournalLine:
    from nsdash.journal.entry import SHOWN_FIELD_MAX, shown

    return JournalLine(realtime=int(entry.realtime or 0), machine=getattr(entry, "machine", None) or machine,
                       priority=entry.priority, identifier=shown(entry.identifier, SHOWN_FIELD_MAX),
                       unit=shown(entry.unit, SHOWN_FIELD_MAX), message=shown(entry.message) or "",
                       event=getattr(entry, "event", None))


class _HostJournal:
    def __init__(self, machines: tuple[str, ...]) -> None:
        from nsdash.journal import open_logs

        self.log = open_logs(list(machines))

    def tail(self, n: int) -> list[JournalLine]:
        return [_line_of(e) for e in self.log.tail(n)]

    def read_new(self) -> list[JournalLine]:
        return [_line_of(e) for e in self.log.read_new()]

    def filenos(self) -> list[int]:
        return self.log.filenos()

    def close(self) -> None:
        self.log.close()


def host_journal(machines: tuple[str, ...]) -> JournalFeed:
    """The followed journals of these machines on this host (HostReaders.open_journal)."""
    return _HostJournal(machines)
