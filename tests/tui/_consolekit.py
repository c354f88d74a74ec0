"""The console pane's tests, once: an app that is the pane alone (with a key-first gate), a
connection that is only the model and its flags, and a flood fed a frame at a time on a clock of
the test's own."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from textual.app import App, ComposeResult
from textual.pilot import Pilot

from nsdash.tui.console.terminal import TerminalModel
from nsdash.tui.keyfirst import KeyFirst
from nsdash.tui.widgets import console_pane
from nsdash.tui.widgets.console_pane import FLOOD_BYTES, FLOOD_FPS, ConsolePane


def until(condition, timeout: float = 20.0) -> bool:
    """Whether CONDITION() came true within TIMEOUT s (looked at every few ms)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


class PaneApp(App):
    """A console pane, alone."""

    def compose(self) -> ComposeResult:
        yield ConsolePane()


class GatedApp(PaneApp):
    """A console pane in an app with a gate (NsdashApp has one)."""

    def __init__(self) -> None:
        super().__init__()
        self.key_first = KeyFirst()


class StubConnection:
    """Just enough of a ConsoleConnection for the pane's _tick: a model, the changed flag, the
    lock, the echo window (what came after a sent key is parsed: console16's) and what was sent."""

    def __init__(self, model: TerminalModel) -> None:
        self.model = model
        self.changed = threading.Event()
        self.lock = threading.Lock()
        self.echo_pending = False

    def locked_for_ui(self):
        return self.lock

    def send(self, data: bytes) -> bool:
        self.sent = data
        return True

    def close(self) -> None:
        pass


async def stub_connected(pilot) -> tuple[ConsolePane, StubConnection]:
    """The app's console pane, mounted, on a StubConnection of its model."""
    pane = pilot.app.query_one(ConsolePane)
    await pilot.pause()
    conn = StubConnection(pane.model)
    pane.connection = conn
    return pane, conn


class Flood:
    """A console pane on a StubConnection whose clock (console_pane._clock) is `clock`."""

    pilot: Pilot
    pane: ConsolePane
    conn: StubConnection

    def __init__(self) -> None:
        self.clock = 1000.0

    def frame_taken(self, key: bool = False) -> bool:
        """FLOOD_BYTES more of a flood, a flood frame's interval later: whether the pane's tick
        (for its own KEY's echo with KEY) drew it."""
        self.pane.model.feed(b"y\r\n" * FLOOD_BYTES)
        self.conn.changed.set()
        self.clock += 1 / FLOOD_FPS
        self.pane._tick(key=key)
        return not self.conn.changed.is_set()


@asynccontextmanager
async def flooded(app: App, monkeypatch) -> AsyncIterator[Flood]:
    """APP (its one console pane) running at 100x30, the pane on a StubConnection, the pane's
    clock the test's own from 1000.0 (set before the app starts); the pane let go after."""
    flood = Flood()
    monkeypatch.setattr(console_pane, "_clock", lambda: flood.clock)
    async with app.run_test(size=(100, 30)) as pilot:
        flood.pilot = pilot
        flood.pane, flood.conn = await stub_connected(pilot)
        yield flood
        flood.pane.connection = None
