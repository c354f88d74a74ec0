"""A flood is painted at the rate the terminal reads it (nsdash.tui.backlog; issue 15: keys
within 100 ms while a machine floods).

Not timed: what the driver counts against a real PTY whose reader stops and
resumes, and how many journal slices and console flood frames are held back
while the terminal is behind (counts, on a clock of the test's own).
"""

from __future__ import annotations

import os
import pty
import select
import signal
import sys
import time
import tty

from _consolekit import GatedApp, flooded
from textual.drivers._writer_thread import MAX_QUEUED_WRITES, WriterThread
from tuikit import feed_sample, sample_app, ticks, wait_for

from nsdash.tui import backlog as backlog_module
from nsdash.tui.backlog import BEHIND, CountingDriver, TerminalBacklog
from nsdash.tui.widgets import journal_pane
from nsdash.tui.widgets.journal_pane import WRITE_SLICE, JournalPane

FRAME = 8 * 1024  # characters (ASCII: as many bytes) a frame of the test's
PTY_HOLDS = 64 * 1024  # more than a PTY takes before a write blocks (about 20 KB on Linux 6.x)


class _App:
    def __init__(self) -> None:
        self.backlog = TerminalBacklog()


async def test_the_driver_counts_what_the_terminal_has_not_read_yet(monkeypatch):
    """Frames written through the driver to a PTY nobody reads stay pending (the writer thread
    blocks once the PTY is full); as the terminal reads them, the count goes back to 0."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    terminal = open(slave, "w", encoding="ascii", closefd=True)  # noqa: SIM115 (closed below)
    monkeypatch.setattr(sys, "__stderr__", terminal)  # the file Textual's Linux driver writes to
    monkeypatch.setattr(signal, "signal", lambda *a: None)  # (its SIGTSTP/SIGCONT handlers: not ours to set)
    app = _App()
    driver = CountingDriver(app)
    writer = driver._writer_thread = WriterThread(driver._file)  # as start_application_mode does
    writer.start()
    try:
        frames = MAX_QUEUED_WRITES - 2  # the queue takes them all: the test never blocks
        for i in range(frames):
            driver.write(chr(ord("a") + i % 26) * FRAME)
        total = frames * FRAME
        assert app.backlog.queued == total
        # Nobody reads: whatever the writer thread managed, the PTY holds less than PTY_HOLDS.
        assert app.backlog.pending >= total - PTY_HOLDS > BEHIND
        assert app.backlog.behind()
        got = 0
        while got < total:  # the terminal reads everything
            ready, _, _ = select.select([master], [], [], 10)
            assert ready, f"the terminal got {got} of {total} bytes"
            got += len(os.read(master, 65536))
        assert got == total
        deadline = time.monotonic() + 10
        while app.backlog.pending and time.monotonic() < deadline:  # the writer's last write returns
            time.sleep(0.001)
        assert app.backlog.pending == 0 and not app.backlog.behind()
    finally:
        writer.stop()
        terminal.close()
        os.close(master)


def test_the_dashboard_writes_through_the_counting_driver(monkeypatch):
    monkeypatch.delenv("TEXTUAL_DRIVER", raising=False)
    assert sample_app().driver_class is CountingDriver


async def test_no_journal_slice_is_written_while_the_terminal_is_behind(monkeypatch):
    """A round of slices waits while the terminal has more than BEHIND of the app's bytes to
    read, and is written once it caught up (the clock stands still: never given up)."""
    monkeypatch.setattr(backlog_module, "_clock", lambda: 1000.0)
    monkeypatch.setattr(journal_pane, "_slice_clock", lambda: 0.0)  # every slice WRITE_SLICE lines
    app = sample_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed_sample(app, pilot)
        pane = app.screen.query_one(JournalPane)
        await pane.written()
        terminal = app.backlog
        terminal.queued += BEHIND + 1  # frames given to the writer thread, not yet written on
        before, held = pane.writes, terminal.holds
        pane.show(("demo-debian",), ticks(3 * WRITE_SLICE), reset=False)
        await wait_for(pilot, lambda: terminal.holds > held, timeout=10, what="the writer to wait")
        for _ in range(5):
            await pilot.pause()
        assert pane.writes == before  # not a slice while behind
        terminal.written = terminal.queued  # the terminal read them
        await pane.written()
        assert pane.writes == before + 3  # all of the round, once caught up
        assert pane.visible_text()[-1].endswith(f"flood: tick {3 * WRITE_SLICE - 1}")


class BackloggedApp(GatedApp):
    """A console pane in an app with a gate and a backlog (NsdashApp has both)."""

    def __init__(self) -> None:
        super().__init__()
        self.backlog = TerminalBacklog()


async def test_a_flooding_console_takes_no_frame_while_the_terminal_is_behind(monkeypatch):
    """The console pane's flood frame waits while the terminal is behind; a frame for the
    pane's own key (its echo) never does."""
    app = BackloggedApp()
    async with flooded(app, monkeypatch) as flood:
        terminal = app.backlog
        assert flood.frame_taken()  # the terminal keeps up: the flood's frame
        terminal.queued += BEHIND + 1
        assert not flood.frame_taken() and not flood.frame_taken()  # behind: none taken ...
        assert terminal.skipped == 2
        assert flood.frame_taken(key=True)  # ... but the pane's own key's
        terminal.written = terminal.queued - BEHIND  # BEHIND left to read: no longer behind
        assert flood.frame_taken()
        assert terminal.skipped == 2
