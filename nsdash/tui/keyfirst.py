"""KeyFirst: a key's own frame comes before a flood's paints (issue 15: keys within 100 ms).

A key travels through Textual in hops, one turn of the event loop each: the
app forwards it to the focused widget, it bubbles back up, the app runs its
binding, the widgets it changed ask the screen for an update, the screen
resumes its update timer, and the frame is drawn.  A flood's work that runs
as a task of its own (the journal pane writing a round of slices) takes a
turn between every two hops: with a slice of 10-40 ms on a loaded host a key
waited 100-200 ms for its frame, behind slices and the console's flood
frames, none of them its own.

So the app tells its gate when a key arrives (`arrived`), when its
binding has run (`handled`, the key back at the app after bubbling) and when
it writes a frame (`frame`); the gate is `waiting` from the first until the
first frame after the second (or the screen's refresh, if the key changed
nothing on it), and the flood's work holds off meanwhile (JournalPane's writer waits
in `painted()`, ConsolePane skips its flood frames and its connection's reader
parses nothing: it holds the GIL the UI thread needs).  A key a widget keeps
never comes back to the app: the console pane releases the gate for a key it
sends to the guest (its echo is the pane's own frame) and the machine screen
calls ctrl+] handled once it moved the focus; any other such key, and a frame
that never comes, stop the wait HOLD_MOST seconds after the key arrived, so
the flood is never held longer than that.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from textual.app import App
from textual.screen import Screen

HOLD_MOST = 0.1  # s: the longest a key holds the flood's work back (a key that never comes back)
_clock = time.monotonic  # the gate's clock (a test sets its own)


class KeyFirst:
    """The app's gate: `waiting` while a key's frame is not yet drawn."""

    def __init__(self) -> None:
        self._since: float | None = None  # when the oldest key still waiting for its frame arrived
        self._handled = False  # a key's binding ran since: the next frame is the key's
        self._round = 0  # counts releases: a refresh asked for before the last one is no news
        self._painted: asyncio.Event | None = None
        self.holds = 0  # times flood work held back for a key (tests read it)

    @property
    def waiting(self) -> bool:
        """True while a key's frame is due (at most HOLD_MOST after the key arrived)."""
        if self._since is None:
            return False
        if _clock() - self._since < HOLD_MOST:
            return True
        self.release()
        return False

    def holding(self) -> bool:
        """`waiting`, read-only: for other threads (the console's reader), which must not release."""
        since = self._since
        return since is not None and _clock() - since < HOLD_MOST

    def arrived(self) -> None:
        """A key reached the app (from the terminal, before any widget saw it)."""
        now = _clock()
        if self._since is not None and now - self._since >= HOLD_MOST:
            # The last key's wait ran out and nothing looked since (no flood asked `waiting`):
            # that key is given up; this one waits its own HOLD_MOST, not none.
            self.release()
        if self._since is None:
            self._since = now

    def handled(self, app: App) -> None:
        """A key's binding has run (the key came back to the app): its frame is the next, or,
        if it changed nothing on screen, there is none (the screen's second refresh
        callback in a row without a frame says so: the first may run before the changed
        widgets' updates reached the screen, a turn of the loop later)."""
        if self._since is not None:
            self._handled = True
            screen = app.screen
            screen.call_after_refresh(self._refreshed, screen, self._round, 1)

    def frame(self) -> None:
        """The app wrote a frame to the terminal."""
        if self._handled:
            self.release()

    async def painted(self) -> None:
        """Return once no key waits for its frame (at most HOLD_MOST after the oldest arrived)."""
        if not self.waiting or self._since is None:
            return
        self.holds += 1
        if self._painted is None:
            self._painted = asyncio.Event()
        left = self._since + HOLD_MOST - _clock()
        round_ = self._round
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._painted.wait(), timeout=max(0.0, left))
        if self._round == round_:  # timed out: give the key up; else released already, maybe
            self.release()  # since then waiting for a newer key, whose hold is not ours to end

    def _refreshed(self, screen: Screen, round_: int, again: int) -> None:
        if round_ != self._round:
            return  # released since (a frame)
        if again:
            screen.call_after_refresh(self._refreshed, screen, round_, again - 1)
        else:
            self.release()

    def release(self) -> None:
        """Nothing waits for a frame any more (also: a key for the guest, whose echo the
        console reads and paints itself)."""
        self._round += 1
        self._since = None
        self._handled = False
        if self._painted is not None:
            self._painted.set()
            self._painted = None


_NONE = KeyFirst()  # for apps without a gate (widget tests with a bare App): never waits


def gate(app: App) -> KeyFirst:
    """APP's gate (NsdashApp.key_first), or one that never waits."""
    found = getattr(app, "key_first", None)
    return found if isinstance(found, KeyFirst) else _NONE
