"""The console pane: renders the terminal model; keys go to the machine while it has focus.

The model keeps a bounded history (TerminalModel's `history` lines); under a
flood the connection skips what would scroll past unseen (connection.py) and
the border says how much.  Keys the machine does not take (it stopped reading
its console: SEND_MAX bytes wait in connection.py) are dropped, as a tty's input
queue drops them: the pane rings the bell and the border counts them.

ctrl+] leaves the pane (like telnet and nsdash login); shift+pageup and
shift+pagedown scroll the history, boot separators included.  Rendering
happens at most about FPS times a second, FLOOD_FPS while the console floods
(a frame also follows a key by ECHO_WAIT, for its echo; none while a key elsewhere waits
for its frame: nsdash.tui.keyfirst) and only for lines whose text or
colours changed since the last frame (pyte calls every line dirty when the screen scrolls); the model is read
under the connection's lock, the strips are made when Textual paints.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.color import Color, ColorParseError
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.geometry import Region
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip
from textual.timer import Timer
from textual.widget import Widget

from nsdash.system.text import escape
from nsdash.tui.backlog import backlog
from nsdash.tui.keyfirst import gate
from nsdash.tui.widgets.edges import FocusEdges, restyling

if TYPE_CHECKING:  # the console stack (pyte) loads when a pane is made, not with the dashboard
    from nsdash.tui.console.connection import ConsoleConnection, Session
    from nsdash.tui.console.terminal import Run

FPS = 30
FLOOD_FPS = 10  # frames a second while the console floods (each repaints the lines that read otherwise)
FLOOD_BYTES = 16 * 1024  # parsed since the last frame: past this the console floods
_clock = time.monotonic  # the frame clock (a test sets its own)
NOTE_EVERY = 1.0  # s: the border's figure of skipped bytes changes at most this often
ECHO_WAIT = 0.008  # s after a key until the frame that should show its echo
LEAVE_KEY = "ctrl+right_square_bracket"
# pyte's names that Rich spells otherwise: SGR 33 is 'brown', SGR 93/103 'brightbrown', and
# SGR 105 'bfightmagenta' (a typo in pyte 0.8).
_COLOURS = {"brown": "yellow", "brightbrown": "bright_yellow", "bfightmagenta": "bright_magenta", "default": None}


def style_of(run: Run, cache: dict[tuple, Style]) -> Style:
    key = (run.fg, run.bg, run.bold, run.italics, run.underscore, run.reverse)
    style = cache.get(key)
    if style is None:
        fg, bg = (_colour(run.fg), _colour(run.bg))
        style = Style(color=fg, bgcolor=bg, bold=run.bold or None, italic=run.italics or None,
                      underline=run.underscore or None, reverse=run.reverse or None)
        cache[key] = style
    return style


def _colour(name: str) -> str | None:
    if name in _COLOURS:
        return _COLOURS[name]
    if len(name) == 6 and all(c in "0123456789abcdefABCDEF" for c in name):
        return "#" + name
    colour = name.replace("bright", "bright_") if name.startswith("bright") and "_" not in name else name
    try:
        Color.parse(colour)
    except ColorParseError:  # a name Rich does not know must not stop the pane: the default colour
        return None
    return colour


class ConsolePane(FocusEdges, Widget, can_focus=True):
    """A machine's console: attach(), then type; ctrl+] leaves, shift+pageup scrolls back."""

    attached: reactive[str | None] = reactive(None)
    scrollback: reactive[int] = reactive(0)  # lines scrolled back into the history

    class Left(Message):
        """The user pressed the leave key."""

    class Ended(Message):
        def __init__(self, machine: str, reason: str) -> None:
            super().__init__()
            self.machine = machine
            self.reason = reason

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        from nsdash.tui.console.terminal import TerminalModel

        self.model = TerminalModel(80, 24)
        self.connection: ConsoleConnection | None = None
        # Set by the leave key until the pane has focus again: keys typed right after it
        # (Escape, to go back) may reach us before the screen has moved the focus, and are
        # the screen's then, never the guest's.
        self._leaving = False
        self._styles: dict[tuple, Style] = {}
        self._lines: list[Strip | list[Run]] = []  # a line's strip, or its runs until painted
        self._runs: list[list[Run] | None] = []  # each line's runs as of the last frame
        self.shown_bytes = 0  # how much of the console's output the last frame shows
        self.skipped_bytes = 0  # how much of it a flood made the pane leave out
        self.dropped_keys = 0  # keys (and pastes) dropped: the console did not take them
        self._ticker: Timer | None = None
        self._soon: Timer | None = None
        self._cursor: tuple[int, int] | None = None  # as of the last frame, if visible
        self._painted = float("-inf")  # when the last frame was taken (time.monotonic)
        self._noted = float("-inf")  # when the border last said how much a flood skipped

    def on_mount(self) -> None:
        self._ticker = self.set_interval(1 / FPS, self._tick)

    # ------------------------------------------------------------ public

    def attach(self, machine: str, connection: ConsoleConnection | None = None,
               opener: Callable[[str, int, int], Session] | None = None) -> None:
        """Attach to MACHINE's console, opened with OPENER (the launcher's attach; the
        connection itself is injectable for tests)."""
        self.detach()
        from nsdash.tui.console.connection import ConsoleConnection
        from nsdash.tui.console.terminal import TerminalModel

        self.model = TerminalModel(max(self.size.width, 20), max(self.size.height, 5))
        self.skipped_bytes = 0
        self.dropped_keys = 0
        self._lines = []
        self._runs = []
        self._cursor = None
        if connection is None:
            connection = (ConsoleConnection(machine, self.model, self._ended) if opener is None
                          else ConsoleConnection(machine, self.model, self._ended, attach=opener))
        self.connection = connection
        self.connection.model = self.model
        self.connection.hold = gate(self.app).holding  # no parsing while a key waits for its frame
        self.attached = machine
        self.connection.start()

    def detach(self, reason: str | None = None) -> None:
        """Let go of the console; REASON (why it ended: a machine that stopped, a host that
        dropped) stays on the border as one line until the next attach."""
        if self.connection is not None:
            self.connection.close()
            self.connection = None
        self.attached = None
        if reason:
            self.border_subtitle = Text(escape(" ".join(reason.split())))  # one line, never markup

    def screen_text(self) -> list[str]:
        if self.connection is None:
            return self.model.display()
        with self.connection.locked_for_ui():
            return self.model.display()

    # ------------------------------------------------------------ rendering

    def _tick(self, key: bool = False) -> None:
        conn = self.connection
        if conn is None:
            return
        if not conn.changed.is_set():
            self._note_skipped(conn.model.bytes_skipped, _clock())  # a figure held back by the last frames
            return
        # A flood changes every line of every frame: paint it FLOOD_FPS times a second, so the UI
        # thread keeps time for keys (a key's own frame, KEY, is never held back).
        now = _clock()
        if (not key and conn.model.bytes_fed - self.shown_bytes > FLOOD_BYTES
                and (now - self._painted < 1 / FLOOD_FPS or gate(self.app).waiting
                     or backlog(self.app).skip())):
            # and no flood frame while another key's frame is due (nsdash.tui.keyfirst) or the
            # terminal has not read the last ones (nsdash.tui.backlog)
            return
        self._painted = now
        conn.changed.clear()
        model = self.model
        old_cursor = self._cursor
        # Under the lock only what the frame needs from the model: the changed lines'
        # runs.  Strips are made when Textual paints the line (it skips frames under load).
        with conn.locked_for_ui():
            dirty = model.take_dirty()
            if len(self._lines) != model.lines:
                self._lines = [Strip.blank(self.size.width)] * model.lines
                self._runs = [None] * model.lines
                dirty = set(range(model.lines))
            # pyte marks every line dirty when the screen scrolls; a line that reads as it did
            # in the last frame (a flood of like lines: `yes`, a progress bar) is not repainted.
            for y in list(dirty):
                runs = model.line_runs(y)
                if runs == self._runs[y]:
                    dirty.discard(y)
                    continue
                self._runs[y] = runs
                self._lines[y] = runs
            history = model.history_length
            self._cursor = model.cursor if model.cursor_visible else None
            self.shown_bytes = model.bytes_fed
            skipped = model.bytes_skipped
        self._note_skipped(skipped, now)
        if self.scrollback:
            self.scrollback = min(self.scrollback, history)
        for cursor in (old_cursor, self._cursor):
            if cursor is not None:
                dirty.add(cursor[1])
        if self.scrollback or len(dirty) > len(self._lines) // 2:
            self.refresh()
        else:
            width = self.size.width
            self.refresh(*(Region(0, y, width, 1) for y in dirty))

    def _note_skipped(self, skipped: int, now: float) -> None:
        """Put SKIPPED (bytes a flood made the pane leave out) in the border.  A new border
        repaints the whole pane, every line under it: so under a flood, whose skips come
        several times a second, at most every NOTE_EVERY seconds (the first one at once)."""
        if skipped != self.skipped_bytes and (not self.skipped_bytes or now - self._noted >= NOTE_EVERY):
            self.skipped_bytes = skipped
            self._noted = now
            self.watch_attached(self.attached)

    def _tick_soon(self) -> None:
        """Take the next frame shortly after a key, not up to a frame later: its echo
        comes back within a few ms.  The frame clock restarts from there, so the
        pane still paints about FPS times a second."""
        if self._soon is None:
            self._soon = self.set_timer(ECHO_WAIT, self._soon_tick)

    def _soon_tick(self) -> None:
        self._soon = None
        if self.connection is not None and self.connection.echo_pending:
            # The reader has not yet parsed what came after the key (a flood ahead of its
            # echo): a frame now would not show it, and the next is a flood frame away.
            self._soon = self.set_timer(ECHO_WAIT, self._soon_tick)
            return
        if self._ticker is not None:
            self._ticker.reset()
        self._tick(key=True)

    def _strip(self, runs: list[Run]) -> Strip:
        """One line, cut or padded to the pane's width."""
        cache = self._styles
        width = self.size.width
        strip = Strip([Segment(r.text, style_of(r, cache)) for r in runs])  # Strip measures: wide characters
        return strip if strip.cell_length == width else strip.crop_extend(0, width, None)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if self.scrollback and self.connection is not None:
            with self.connection.locked_for_ui():
                history = self.model.history_length
                index = history - self.scrollback + y
                if index < history:
                    strip = self._strip(self.model.history_runs_at(index)) if index >= 0 else Strip.blank(width)
                    return strip.crop_extend(0, width, None)
                y = index - history
        if y < len(self._lines):
            line = self._lines[y]
            strip = line if isinstance(line, Strip) else self._strip(line)
            self._lines[y] = strip
            if strip.cell_length != width:  # resized since the frame was made
                strip = strip.crop_extend(0, width, None)
            if self._cursor is not None and self._cursor[1] == y and self.has_focus and self.scrollback == 0:
                strip = _with_cursor(strip, self._cursor[0])
            return strip
        return Strip.blank(width)

    def on_resize(self, event: events.Resize) -> None:
        if self.connection is not None and event.size.width > 0 and event.size.height > 0:
            self.connection.resize(event.size.width, event.size.height)

    # ------------------------------------------------------------ input

    async def on_key(self, event: events.Key) -> None:
        if event.key == LEAVE_KEY:
            event.stop()
            self._leaving = True
            self.post_message(self.Left())
            return
        if self._leaving:
            return  # not stopped: it goes on to the screen's bindings
        if event.key in ("shift+pageup", "shift+pagedown"):
            event.stop()
            page = max(1, self.size.height - 1)
            with (self.connection.locked_for_ui() if self.connection else _null()):
                limit = self.model.history_length
            step = page if event.key == "shift+pageup" else -page
            self.scrollback = max(0, min(limit, self.scrollback + step))
            return
        if self.connection is None:
            return
        data = self.model.key_bytes(event.key, event.character)
        if data is not None:
            event.stop()
            event.prevent_default()
            self.scrollback = 0
            gate(self.app).release()  # the guest's key: its echo is to be read and painted, not held
            if self._sent(data):
                self._tick_soon()

    # Widget's own focus handlers repaint every line; what the focus changes here is the
    # cursor (drawn while focused) and the edges (FocusEdges).  (Textual calls one of a
    # class's _on_focus and on_focus: this is both.)
    def _on_focus(self, event: events.Focus) -> None:
        event.prevent_default()
        self._leaving = False
        with restyling((self,)):  # has_focus restyles the pane: its edges change
            self.has_focus = True
        self._refresh_cursor_line()
        if self.parent is not None:
            self.parent.post_message(events.DescendantFocus(self))

    def _on_blur(self, event: events.Blur) -> None:
        event.prevent_default()
        with restyling((self,)):  # has_focus restyles the pane: its edges change
            self.has_focus = False
        self._refresh_cursor_line()
        if self.parent is not None:
            self.parent.post_message(events.DescendantBlur(self))

    def _refresh_cursor_line(self) -> None:
        if self._cursor is not None:
            self.refresh(Region(0, self._cursor[1], self.size.width, 1))

    def on_paste(self, event: events.Paste) -> None:
        if self.connection is not None and not self._leaving:
            self._sent(event.text.replace("\n", "\r").encode())

    def _sent(self, data: bytes) -> bool:
        """Send DATA; when the console dropped it (it has not taken the keys before), ring the
        bell, as a terminal does when a tty's input queue is full, and count it on the border."""
        assert self.connection is not None
        if self.connection.send(data):
            return True
        self.dropped_keys += 1
        self.app.bell()
        self.watch_attached(self.attached)
        return False

    def watch_scrollback(self) -> None:
        self.set_class(self.scrollback > 0, "-scrolled")
        self.refresh()

    def watch_attached(self, machine: str | None) -> None:
        self.set_class(machine is not None, "-attached")
        # A Text, never markup: a str title is read as markup, and a far host names its machines.
        self.border_title = Text(f"Console: {escape(machine)}") if machine else "Console (not attached)"
        skipped = f" · {self.skipped_bytes / 1e6:.1f} MB of a flood skipped" if self.skipped_bytes else ""
        dropped = (f" · {self.dropped_keys} key{'s' * (self.dropped_keys > 1)} dropped: the console is not reading"
                   if self.dropped_keys else "")
        self.border_subtitle = f"ctrl+] leaves · shift+pgup history{skipped}{dropped}" if machine else ""

    def on_unmount(self) -> None:
        self.detach()

    def _ended(self, reason: str) -> None:
        """From the I/O thread: the session ended."""
        message = self.Ended(self.attached or "", reason)
        try:
            self.app.call_from_thread(self.post_message, message)
        except RuntimeError:  # already on the UI thread (a failed send)
            self.post_message(message)


def _with_cursor(strip: Strip, x: int) -> Strip:
    """STRIP with cell X in reverse video (X counts cells: a wide character takes two)."""
    if not 0 <= x < strip.cell_length:  # a frame from before the pane narrowed
        return strip
    left, cell, right = strip.divide([x, x + 1, strip.cell_length])
    marked = [Segment(seg.text, (seg.style or Style()) + Style(reverse=not (seg.style and seg.style.reverse)))
              for seg in cell]
    return Strip([*left, *marked, *right])


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
