"""Helpers for the dashboard tests: the app over fixed data, and waiting without sleeping blindly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from nsdash.tui import sample_data as sd
from nsdash.tui.app import NsdashApp
from nsdash.tui.messages import JournalLine, JournalLines, SnapshotReady


def sample_app(**kw) -> NsdashApp:
    """The real app with the poller off: tests post fixed snapshots themselves."""
    return NsdashApp(poll=False, clock=lambda: sd.T0, **kw)


def ticks(n: int, start: int = 0, priority: int = 6) -> tuple[JournalLine, ...]:
    """N lines of a journal flood on demo-debian, `tick START` on, a second apart from the sample's
    clock (PRIORITY 6, info; 5, notices, are the lines p's first step keeps)."""
    return tuple(JournalLine(int((sd.T0 + i) * 1e6), "demo-debian", priority, "flood", None, f"tick {i}")
                 for i in range(start, start + n))


async def feed_sample(app: NsdashApp, pilot, steps: int = 3) -> None:
    for i in range(steps):
        app.post_message(SnapshotReady(sd.snapshot(i)))
        await pilot.pause()
    app.post_message(JournalLines(("demo-debian",), sd.JOURNAL, reset=True))
    await pilot.pause()
    await journals_written(app, pilot)


async def journals_written(app: NsdashApp, pilot) -> None:
    """Wait until every journal pane has written what it was given (it writes in slices)."""
    from nsdash.tui.widgets.follow_log import FollowLog
    from nsdash.tui.widgets.journal_pane import JournalPane

    for pane in app.screen.query(JournalPane):
        await pane.written()
    await pilot.pause()

    def at_their_ends() -> bool:  # a following log scrolls to its end after a refresh, not at once
        return all(log.scroll_y >= log.max_scroll_y for pane in app.screen.query(JournalPane) if pane.following
                   for log in pane.query(FollowLog))

    def where() -> str:
        return "; ".join(f"{pane.id}: y {log.scroll_y}/{log.max_scroll_y}, auto {log.auto_scroll}, held {log._held}, "
                         f"virtual {log.virtual_size}, box {log.container_size}, lines {len(log.lines)}"
                         for pane in app.screen.query(JournalPane) if pane.following for log in pane.query(FollowLog))

    await wait_for(pilot, at_their_ends, timeout=10,
                   what=lambda: f"the followed journal logs scrolled to their ends ({where()})")


async def wait_for(pilot, condition: Callable[[], object], timeout: float = 30.0,
                   what: str | Callable[[], str] = "") -> None:
    """Let the app run until CONDITION holds (checked between event-loop turns)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what() if callable(what) else what}")
        await pilot.pause(0.05)
        await asyncio.sleep(0)


async def wait_for_screen(pilot, cls: type, timeout: float = 30.0, what: str | Callable[[], str] = "") -> None:
    """Let the app run until its screen is a CLS whose widgets are composed and mounted: a pushed
    screen is on the stack (app.screen) a few turns before its compose has run, so a query made
    as soon as isinstance() holds can find nothing."""
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, cls) and app.screen.is_mounted, timeout,
                   what or cls.__name__)


async def confirm_by_name(app: NsdashApp, pilot, name: str) -> None:
    """Answer a machine action's confirmation the only way it takes: the machine's name, then Enter."""
    from textual.widgets import Input

    from nsdash.tui.screens.confirm import ConfirmScreen

    await wait_for_screen(pilot, ConfirmScreen, 10, "the confirmation")
    app.screen.query_one("#confirm-typed", Input).value = name
    await pilot.pause()
    await pilot.press("enter")


async def machine_screen(app: NsdashApp, pilot):
    """The sample app showing demo-debian's machine screen (its journal pane written, no console attached)."""
    from nsdash.tui.screens.machine import MachineScreen

    await feed_sample(app, pilot)
    screen = MachineScreen("demo-debian")
    app.push_screen(screen)
    await pilot.pause()
    app._apply()
    app.post_message(JournalLines(("demo-debian",), sd.JOURNAL, reset=True))
    await pilot.pause()
    return screen
