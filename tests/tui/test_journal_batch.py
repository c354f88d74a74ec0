"""A journal flood costs the UI one slice at a time, and the poller never queues a second batch.

Issue 16: one RichLog write per line (~0.8 ms each) made keys lag while a machine
flooded its journal.  Issue 15: one write per batch then cost 300 ms for a batch of
5,000 lines, in one piece.  Now a batch is written in slices of WRITE_SLICE lines,
the event loop turning between them.  Not timed: these count writes, lines per
write, kept lines, messages and the order of events.
"""

from __future__ import annotations

import asyncio
import os
import threading

import pytest
from _pollerkit import collect
from tuikit import feed_sample, sample_app, ticks

from nsdash.tui.messages import JOURNAL_KEEP, JournalLines, Snapshot
from nsdash.tui.poller import Poller
from nsdash.tui.widgets import journal_pane
from nsdash.tui.widgets.follow_log import FollowLog
from nsdash.tui.widgets.journal_pane import KEEP, MIN_SLICE, SLICE_BUDGET, UNSEEN, WRITE_SLICE, JournalPane


@pytest.fixture(autouse=True)
def free_writes(monkeypatch):
    """The writes' clock stands still: every slice is WRITE_SLICE lines, however loaded the host
    (a test that times its writes sets its own clock)."""
    monkeypatch.setattr(journal_pane, "_slice_clock", lambda: 0.0)


async def test_a_batch_is_written_in_slices_with_the_event_loop_turning_between():
    app = sample_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed_sample(app, pilot)
        pane = app.screen.query_one(JournalPane)
        await pane.written()
        log = pane.query_one("#journal-log")
        order: list[str] = []
        real_write = log.write

        def write(content, *a, **kw):
            if not order:  # other work (a key, a frame) waiting as the first slice is written
                asyncio.get_running_loop().call_soon(order.append, "other work")
            order.append(f"write {len(content.plain.splitlines())}")
            return real_write(content, *a, **kw)

        log.write = write
        before = pane.writes
        n = UNSEEN // WRITE_SLICE
        pane.show(("demo-debian",), ticks(n * WRITE_SLICE), reset=False)
        await pane.written()
        await pilot.pause()
        assert pane.writes == before + n
        assert order[:2] == [f"write {WRITE_SLICE}", "other work"]  # it ran after the first slice, not after all
        assert [o for o in order if o.startswith("write")] == [f"write {WRITE_SLICE}"] * n
        assert pane.visible_text()[-1].endswith(f"flood: tick {n * WRITE_SLICE - 1}")


async def test_a_slice_takes_fewer_lines_when_its_lines_cost_more(monkeypatch):
    """A key that comes while a slice is written waits for that slice (issue 15).  Not timed:
    the writes' clock is ours and each line costs what the test says (powers of two: exact
    sums).  At 0.24 ms a line (a host a flood loads) a slice is the SLICE_BUDGET's worth, 20
    lines, after the first (100, costed at 24 ms); at 1 ms a line MIN_SLICE; cheap again,
    WRITE_SLICE."""
    clock = [0.0]
    monkeypatch.setattr(journal_pane, "_slice_clock", lambda: clock[0])
    cost = [2.0 ** -12]
    app = sample_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed_sample(app, pilot)
        pane = app.screen.query_one(JournalPane)
        await pane.written()
        log = pane.query_one(FollowLog)
        sizes: list[int] = []
        real_write = log.write

        def write(content, *a, **kw):
            n = len(content.plain.splitlines())
            sizes.append(n)
            clock[0] += n * cost[0]
            return real_write(content, *a, **kw)

        log.write = write
        pane.show(("demo-debian",), ticks(300), reset=True)
        await pane.written()
        assert sizes[0] == WRITE_SLICE and set(sizes[1:-1]) == {int(SLICE_BUDGET / cost[0])} == {20}
        assert sum(sizes) == 300
        sizes.clear()
        cost[0] = 2.0 ** -10
        pane.show(("demo-debian",), ticks(100), reset=True)
        await pane.written()
        assert sizes[0] == 20 and set(sizes[1:]) == {MIN_SLICE}  # (the first: the last estimate)
        sizes.clear()
        cost[0] = 2.0 ** -17
        pane.show(("demo-debian",), ticks(300), reset=True)
        await pane.written()
        assert sizes[:2] == [MIN_SLICE, WRITE_SLICE]


async def test_a_flood_past_what_would_be_seen_leaves_the_oldest_new_lines_out_of_the_log():
    app = sample_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed_sample(app, pilot)
        pane = app.screen.query_one(JournalPane)
        await pane.written()
        before = len(pane.visible_text())
        pane.show(("demo-debian",), ticks(UNSEEN + 250), reset=False)
        await pane.written()
        shown = pane.visible_text()
        assert len(shown) == before + UNSEEN  # the 250 oldest scrolled by unseen: never written
        assert shown[before].endswith("flood: tick 250") and shown[-1].endswith(f"flood: tick {UNSEEN + 249}")
        assert len(pane.lines) >= UNSEEN + 250  # the pane's buffer has them all (a filter writes them again)


async def test_a_batch_beyond_keep_holds_only_the_last_keep_lines():
    app = sample_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed_sample(app, pilot)
        pane = app.screen.query_one(JournalPane)
        app.post_message(JournalLines(("demo-debian",), ticks(KEEP + 1234), reset=False))
        await pilot.pause()
        await pane.written()
        shown = pane.visible_text()
        assert len(pane.lines) == len(shown) == KEEP
        assert shown[0].endswith("flood: tick 1234") and shown[-1].endswith(f"flood: tick {KEEP + 1233}")


async def test_a_filter_key_takes_effect_before_a_floods_rewrite_is_done():
    """p re-renders every kept line; the new filter shows in the border at once, the lines follow."""
    app = sample_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed_sample(app, pilot)
        pane = app.screen.query_one(JournalPane)
        pane.show(("demo-debian",), ticks(KEEP, priority=5), reset=False)
        await pane.written()
        before = pane.writes
        pane.action_cycle_priority()
        assert "≤notice" in str(pane.border_subtitle)
        assert pane.writes - before <= 1  # the rest is written in later turns
        await pane.written()
        assert pane.writes - before == KEEP // WRITE_SLICE


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
        line = ticks(1, self.n)
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
    posted, arrived, post = collect(JournalLines)
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
