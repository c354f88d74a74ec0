"""A journal flood costs the UI one write per batch, and the poller never queues a second batch.

Issue 16: one RichLog write per line (~0.8 ms each) made keys lag while a machine
flooded its journal.  Not timed: these count writes, kept lines and messages.
"""

from __future__ import annotations

import os
import threading

from tuikit import feed_sample, sample_app

from nsdash.tui import sample_data as sd
from nsdash.tui.messages import JOURNAL_KEEP, JournalLine, JournalLines, Snapshot
from nsdash.tui.poller import Poller
from nsdash.tui.widgets.journal_pane import KEEP, JournalPane


def ticks(start: int, n: int) -> tuple[JournalLine, ...]:
    return tuple(JournalLine(int((sd.T0 + i) * 1e6), "demo-debian", 6, "flood", None, f"tick {i}")
                 for i in range(start, start + n))


async def test_one_poll_of_lines_is_one_write():
    app = sample_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed_sample(app, pilot)
        pane = app.screen.query_one(JournalPane)
        before = pane.writes
        app.post_message(JournalLines(("demo-debian",), ticks(0, 700), reset=False))
        await pilot.pause()
        assert pane.writes == before + 1
        assert pane.visible_text()[-1].endswith("flood: tick 699")


async def test_a_batch_beyond_keep_holds_only_the_last_keep_lines():
    app = sample_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed_sample(app, pilot)
        pane = app.screen.query_one(JournalPane)
        before = pane.writes
        app.post_message(JournalLines(("demo-debian",), ticks(0, KEEP + 1234), reset=False))
        await pilot.pause()
        assert pane.writes == before + 1  # the whole pane written again, at once
        shown = pane.visible_text()
        assert len(pane.lines) == len(shown) == KEEP
        assert shown[0].endswith("flood: tick 1234") and shown[-1].endswith(f"flood: tick {KEEP + 1233}")


class _Feed:
    """A journal that always has news: one new line at each read, its descriptor always readable."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe2(os.O_CLOEXEC)
        os.write(self.w, b"x")  # never drained: poll(2) always says readable
        self.n = 0
        self.reads = threading.Semaphore(0)

    def tail(self, n: int):
        return ()

    def read_new(self):
        line = ticks(self.n, 1)
        self.n += 1
        self.reads.release()
        return line

    def filenos(self) -> list[int]:
        return [self.r]

    def close(self) -> None:
        for fd in (self.r, self.w):
            os.close(fd)


class _Readers:
    def __init__(self) -> None:
        self.feed = _Feed()

    def snapshot(self) -> Snapshot:
        return Snapshot(0.0)

    def open_journal(self, machines):
        return self.feed

    def close(self) -> None:
        pass


def test_poller_posts_the_next_batch_only_once_the_last_is_taken():
    readers = _Readers()
    posted: list[JournalLines] = []
    arrived = threading.Semaphore(0)

    def post(message) -> None:
        if isinstance(message, JournalLines):
            posted.append(message)
            arrived.release()

    poller = Poller(readers, post, interval=30.0)
    poller.follow_journal(("demo-debian",))
    poller.start()
    try:
        assert arrived.acquire(timeout=30)
        assert posted[0].reset and posted[0].lines == ()
        for _ in range(20):  # the feed is read on: lines pile up, none is posted
            assert readers.feed.reads.acquire(timeout=30)
        assert len(posted) == 1
        poller.journal_taken()
        assert arrived.acquire(timeout=30)
        batch = posted[1]
        assert not batch.reset and len(batch.lines) >= 20
        assert [line.message for line in batch.lines] == [f"tick {i}" for i in range(len(batch.lines))]
        for _ in range(5):
            assert readers.feed.reads.acquire(timeout=30)
        assert len(posted) == 2  # not taken yet: still one batch out
        poller.journal_taken()
        assert arrived.acquire(timeout=30)
        assert posted[2].lines[0].message == f"tick {len(batch.lines)}"  # nothing lost in between
    finally:
        poller.stop()
    assert len(posted[-1].lines) <= JOURNAL_KEEP
