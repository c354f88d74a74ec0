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

Once the binding has run, its frame is drawn in the same turn of the loop
(frame_now), not the four hops and a screen timer tick later that Textual takes:
nothing of the flood's can run between a key's binding and its frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from textual import events
from textual.app import App
from textual.message import Message
from textual.screen import Screen
from textual.widget import Widget

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
        self.immediate = 0  # keys whose frame frame_now drew (tests read it)
        self.frames = 0  # frames the app wrote

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

    def handled(self, app: App, screen: Screen | None = None) -> None:
        """A key's binding has run on SCREEN (the key came back to the app): its frame is drawn
        now (frame_now), or, if the binding changed nothing on screen, there is none (the
        screen's second refresh callback in a row without a frame says so: the first may run
        before the changed widgets' updates reached the screen, a turn of the loop later)."""
        if self._since is not None:
            self._handled = True
            current = app.screen
            current.call_after_refresh(self._refreshed, current, self._round, 1)
        if screen is not None and screen is app.screen:
            frames = self.frames
            frame_now(screen)
            self.immediate += self.frames > frames

    def frame(self) -> None:
        """The app wrote a frame to the terminal."""
        self.frames += 1
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


def at_once(app: App, event: events.Key) -> bool:
    """True if nothing on the way of EVENT (a key from the terminal) takes it itself: the focused
    widget and its ancestors up to the screen have no key handler of their own (on_key, a
    key_ method, a widget that consumes the key as Input does), so the key would only bubble
    back to the app, a turn of the loop per node, for the app to run its binding.  Its binding
    can run at once instead (NsdashApp.on_event)."""
    screen = app.screen
    if screen.maximized is not None and event.key == "escape":
        return False  # Textual's own: escape restores a maximised widget
    start: Widget = app.focused or screen
    for node in start.ancestors_with_self:
        if not isinstance(node, Widget):
            break  # the app: what is left is its binding
        if _handles_keys(type(node)) or node.check_consume_key(event.key, event.character):
            return False
        if any(getattr(node, f"key_{name}", None) or getattr(node, f"_key_{name}", None)
               for name in event.name_aliases):
            return False
    return True


_KEY_HANDLERS: dict[type, bool] = {}
_KEY_MESSAGES = tuple(c for c in events.Key.__mro__ if issubclass(c, Message))


def _handles_keys(cls: type) -> bool:
    """CLS has a Key handler of its own (Widget's is the dispatch to key_ methods: looked up apart)."""
    found = _KEY_HANDLERS.get(cls)
    if found is None:
        found = False
        for klass in cls.__mro__:
            if klass is Widget:
                continue
            handlers = klass.__dict__.get("_decorated_handlers") or {}
            if ("on_key" in klass.__dict__ or "_on_key" in klass.__dict__
                    or any(handlers.get(m) for m in _KEY_MESSAGES)):
                found = True
                break
        _KEY_HANDLERS[cls] = found
    return found


def frame_now(screen: Screen) -> None:
    """Draw SCREEN's pending changes now, in this turn of the loop (if it has any).

    Textual draws a change four hops after the code that made it: each changed widget
    takes a turn to tell the screen (Widget._check_refresh posts Update/Layout/UpdateScroll),
    the screen a turn to take those, another to resume its update timer, and the timer
    ticks on its own 1/60 s clock.  Between every two hops the flood's work runs (the
    journal's slices, the console's reader holding the GIL), and under a flood a key's
    frame came 50-130 ms after its binding ran.  This does those hops at once, as Textual
    would (the widget side of _check_refresh, the screen's _on_update/_on_layout/
    _on_update_scroll, then its _on_timer_update): private API of Textual 8.2 (pinned <8.3,
    as NsdashApp._display).  A widget that was told already (its Update on the way) is
    drawn twice: the second time it repaints nothing new.
    """
    app = screen.app
    if app._batch_count or not screen.is_current or not screen.is_running:
        return
    widgets = [w for w in screen.walk_children(Widget) if w._parent is not None and not w._closing]
    for widget in widgets:  # first: a restyle asks for repaints
        if widget._refresh_styles_required:
            widget._refresh_styles_required = False
            widget.update_node_styles()
    for widget in widgets:
        if widget._scroll_required:
            widget._scroll_required = False
            if not widget._layout_required:
                if widget.styles.keyline[0] != "none":
                    widget._set_dirty()
                screen._scroll_required = True
        if widget._repaint_required:
            widget._repaint_required = False
            if widget.display:
                screen._dirty_widgets.add(widget)
        if widget._layout_required:
            widget._layout_required = False
            _laid_out(screen, widget)
    if screen._layout_required or screen._scroll_required or screen._repaint_required or screen._dirty_widgets:
        screen._on_timer_update()


def _laid_out(screen: Screen, widget: Widget) -> None:
    """WIDGET asks for a layout: Widget._check_refresh's and Screen._on_layout's bookkeeping."""
    for ancestor in widget.ancestors:
        if not isinstance(ancestor, Widget):
            break
        ancestor._clear_arrangement_cache()
        ancestor._layout_updates += 1
        if not ancestor.styles.auto_dimensions:
            break
    node: Widget = widget
    for ancestor in widget.ancestors:
        if not isinstance(ancestor, Widget):
            break
        if ancestor not in screen._layout_widgets:
            screen._layout_widgets[ancestor] = set()
        if node not in screen._layout_widgets:
            screen._layout_widgets[ancestor].add(node)
            screen._layout_required = True
        if not ancestor.styles.auto_dimensions:
            break
        node = ancestor


_NONE = KeyFirst()  # for apps without a gate (widget tests with a bare App): never waits


def gate(app: App) -> KeyFirst:
    """APP's gate (NsdashApp.key_first), or one that never waits."""
    found = getattr(app, "key_first", None)
    return found if isinstance(found, KeyFirst) else _NONE
