"""The trace pane: strace's lines for a machine, live; it follows, pauses, filters and searches.

No I/O: the trace screen's worker runs strace (nsdash.inside.debugging) and
hands lines to show(); the pane keeps the last KEEP of them, so a filter
re-renders from that buffer.  space pauses the display (lines still arrive and
are kept, shown on resume); scrolling up stops following, end follows again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Input

from nsdash.inside.debugging.strace import Line
from nsdash.tui.widgets.colours import text_style
from nsdash.tui.widgets.follow_log import FollowLog
from nsdash.tui.widgets.steady import set_titles

KEEP = 5000


class TracePane(Vertical):
    """A live trace: space pauses, / filters (a substring), e asks for strace's -e expression (the
    screen restarts strace with it), end follows, escape clears the filter."""

    class Expression(Message):
        """The user gave a new strace -e expression ('' for every call)."""

        def __init__(self, expression: str) -> None:
            super().__init__()
            self.expression = expression

    BINDINGS = [
        Binding("space", "toggle_pause", "Pause"),
        Binding("slash", "ask", "Filter"),
        Binding("e", "ask('expression')", "Syscalls"),
        Binding("end", "follow", "Follow", show=False),
        Binding("escape", "clear_filter", "Clear", show=False),
    ]
    COMPONENT_CLASSES = {"trace-pane--message", "trace-pane--match"}

    following: reactive[bool] = reactive(True)
    paused: reactive[bool] = reactive(False)
    search: reactive[str] = reactive("")

    def __init__(self, title: str = "Trace", **kw) -> None:
        super().__init__(**kw)
        self.title = title
        self.lines: deque[Line] = deque(maxlen=KEEP)
        self.state = "starting"  # starting | tracing | ended: ...
        self._unshown = 0  # lines kept while paused, not yet written
        self.expression = ""  # strace's -e expression in force
        self._asking = "search"

    def compose(self) -> ComposeResult:
        yield FollowLog(wrap=False, markup=False, highlight=False, auto_scroll=True, max_lines=KEEP, id="trace-log")
        yield Input(placeholder="show lines containing (empty: all)", id="trace-query", classes="-hidden")

    def on_mount(self) -> None:
        self._retitle()
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._render_all())

    # ------------------------------------------------------------ public

    def show(self, lines: Iterable[Line]) -> None:
        """Add LINES (already in the machine's terms and escaped) to the pane."""
        new = list(lines)
        self.lines.extend(new)
        if self.paused or not self.query(FollowLog):
            self._unshown += len(new)
            self._retitle()
            return
        log = self.query_one(FollowLog)
        for line in new:
            if self._admits(line):
                log.write(self._styled(line), scroll_end=None)
        self._retitle()

    def set_state(self, state: str) -> None:
        self.state = state
        self._retitle()

    def visible_text(self) -> list[str]:
        """The rendered lines (for tests)."""
        return [line.text for line in self.query_one(FollowLog).lines]

    # ------------------------------------------------------------ watchers

    def watch_following(self, following: bool) -> None:
        self.set_class(not following, "-paused")
        self._retitle()

    def watch_paused(self, paused: bool) -> None:
        self.set_class(paused, "-paused")
        if not paused and self._unshown and self.is_mounted:
            self._unshown = 0
            self._render_all()
        self._retitle()

    def watch_search(self) -> None:
        if self.is_mounted:
            self._render_all()
            self._retitle()

    # ------------------------------------------------------------ helpers

    def _admits(self, line: Line) -> bool:
        return not self.search or self.search.lower() in line.text.lower()

    def _render_all(self) -> None:
        if not self.query(FollowLog):
            return
        log = self.query_one(FollowLog)
        log.clear()
        for line in self.lines:
            if self._admits(line):
                log.write(self._styled(line), scroll_end=False)
        if self.following:
            log.scroll_end(animate=False)

    def _styled(self, line: Line) -> Text:
        text = Text(line.text)
        if line.kind != "trace":
            text.stylize(text_style(self, "trace-pane--message"))
        if self.search:
            text.highlight_words([self.search], style=text_style(self, "trace-pane--match", background=True),
                                 case_sensitive=False)
        return text

    def _retitle(self) -> None:
        # Text, not markup: titles name units and processes the guest named.
        parts = [f"-e {self.expression}"] if self.expression else []
        if self.search:
            parts.append(f"/{self.search}")
        if self.paused:
            parts.append(f"paused, {self._unshown} new (space: resume)")
        elif not self.following:
            parts.append("scrolled (end: follow)")
        else:
            parts.append("following")
        parts.append(self.state)
        set_titles(self, Text(self.title), Text("  ".join(parts)))  # only when it reads otherwise

    # ------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # escape clears the filter only when there is one; otherwise it means "back".
        if action == "clear_filter":
            return bool(self.search)
        return True

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused

    def action_ask(self, what: str = "search") -> None:
        self._asking = what
        box = self.query_one("#trace-query", Input)
        if what == "expression":
            box.placeholder = "strace -e expression, e.g. trace=openat,read or trace=%file (empty: every call)"
            box.value = self.expression
        else:
            box.placeholder = "show lines containing (empty: all)"
            box.value = self.search
        box.remove_class("-hidden")
        box.focus()

    def action_follow(self) -> None:
        self.query_one(FollowLog).resume()

    def action_clear_filter(self) -> None:
        self.search = ""

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self._asking == "expression":
            self.expression = event.value.strip()
            self.post_message(self.Expression(self.expression))
        else:
            self.search = event.value.strip()
        event.input.add_class("-hidden")
        self.query_one(FollowLog).focus()
