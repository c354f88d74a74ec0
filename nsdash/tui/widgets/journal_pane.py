"""The journal pane: live follow that pauses when scrolled up, priority colours, filters, search.

The pane keeps the last entries it was given (no I/O: the poller follows the
journal and posts lines); filtering re-renders from that buffer.

Lines reach the log in slices of at most WRITE_SLICE lines (fewer when the last
slice's lines cost more than SLICE_BUDGET: a loaded host), one slice per turn
of the event loop (a writer task that yields between slices), and batches that
come within WRITE_GAP of the last write are gathered into the next: RichLog's cost
grows with the lines of a write (a flood's batch of 5,000 took 300 ms of the
UI thread in one piece, and a key pressed meanwhile waited for all of it), so
a key now waits for one slice at most.  The log is painted once per round of
slices, after its last (FollowLog.hold): a paint repaints every line of a
followed log, and a frame could come between any two slices (up to four paints
for a flood's round, fifty for a filter's rewrite of every kept line).  New
lines not yet written are bounded (UNSEEN while following): under a flood the
oldest of them, which would scroll away unseen, are left out of the log (the
pane's buffer keeps them, and a filter's re-render writes them).  No slice is
written while a key waits for its frame (nsdash.tui.keyfirst): the writer took a
turn between every two of the key's hops through Textual.

Lines come in time order and are appended, except history marked `late` (a far
host's, sent after newer lines were shown: nsdash.tui.remote_journal): older than
the last kept line, it is merged into place by time and the log written again,
once per late history, so the pane reads as one time-ordered journal.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import deque
from collections.abc import Iterable, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import Input

from nsdash.system.frozen import Frozen
from nsdash.system.text import escape
from nsdash.tui.backlog import backlog
from nsdash.tui.keyfirst import gate
from nsdash.tui.messages import JOURNAL_KEEP, JournalLine
from nsdash.tui.widgets.colours import text_style
from nsdash.tui.widgets.edges import FocusEdges
from nsdash.tui.widgets.follow_log import FollowLog

KEEP = JOURNAL_KEEP
WRITE_SLICE = 100  # lines per RichLog write at most, one write per turn of the event loop
SLICE_BUDGET = 0.005  # s: a write's share of the UI thread (fewer lines when they cost more: a loaded host)
MIN_SLICE = 10  # lines per write at least (a write's own cost is ~0.5 ms, whatever its lines)
_slice_clock = time.perf_counter  # times the writes (a test sets its own)
WRITE_GAP = 0.1  # s: a new batch this soon after the last write waits, gathering what comes (a flood's)
UNSEEN = 4 * WRITE_SLICE  # new lines queued past this while following: the oldest would scroll by unseen
PRIORITY_NAMES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
# p cycles through: everything, then up to notice, warning, err.
PRIORITY_STEPS = (None, 5, 4, 3)


class JournalFilter(Frozen):
    max_priority: int | None = None  # show entries at this priority or more urgent
    unit: str | None = None  # substring of the unit or identifier
    search: str | None = None  # case-insensitive substring of the message

    def admits(self, line: JournalLine) -> bool:
        if self.max_priority is not None and line.event is None and (
                line.priority is None or line.priority > self.max_priority):
            return False
        if self.unit:
            hay = f"{line.unit or ''} {line.identifier or ''}".lower()
            if self.unit.lower() not in hay:
                return False
        return not (self.search and self.search.lower() not in line.message.lower())

    def describe(self) -> str:
        parts = []
        if self.max_priority is not None:
            parts.append(f"≤{PRIORITY_NAMES[self.max_priority]}")
        if self.unit:
            parts.append(f"unit~{self.unit}")
        if self.search:
            parts.append(f"/{self.search}")
        return " ".join(parts)


def line_text(line: JournalLine, merged: bool) -> str:
    """One pane line, the guest's parts escaped (nsdash.system.text): a multi-line message stays on its line."""
    stamp = time.strftime("%b %d %H:%M:%S", time.localtime(line.realtime / 1e6)) if line.realtime else " " * 15
    if line.event:
        return f"{stamp} -- {escape(line.event)} --"
    who = escape(line.identifier or line.unit or "")
    machine = f"{escape(line.machine)} " if merged and line.machine else ""
    return f"{stamp} {machine}{who + ': ' if who else ''}{escape(line.message)}"


def _realtime(line: JournalLine) -> int:
    return line.realtime


def merged_in(kept: Sequence[JournalLine], new: Sequence[JournalLine]) -> list[JournalLine] | None:
    """KEPT, then NEW's lines with its late ones (a far host's history that came after newer
    lines) put in place by time, kept lines first for ties; None when that is KEPT + NEW as
    they come (no late line is older than the last kept one): appended, nothing rewritten."""
    late = [line for line in new if line.late]
    if not late or not kept or min(line.realtime for line in late) >= kept[-1].realtime:
        return None
    late.sort(key=_realtime)  # (a batch comes sorted: nsdash.tui.remote_journal.merge_batches)
    return list(heapq.merge([*kept, *(line for line in new if not line.late)], late, key=_realtime))


def slice_for(per_line: float) -> int:
    """Lines a write takes when each cost PER_LINE seconds in the last: what fits SLICE_BUDGET,
    within MIN_SLICE..WRITE_SLICE.  A key that comes while a slice is written waits for it
    (issue 15): 100 lines took 10-40 ms on a host a flood loads, 5 ms at rest."""
    if per_line <= 0:
        return WRITE_SLICE
    return max(MIN_SLICE, min(WRITE_SLICE, int(SLICE_BUDGET / per_line)))


class JournalPane(FocusEdges, Vertical):
    """The followed machines' log lines, with filters; focus it and press p, u, / or end."""

    BINDINGS = [
        Binding("p", "cycle_priority", "Priority"),
        Binding("u", "ask('unit')", "Unit"),
        Binding("slash", "ask('search')", "Search"),
        Binding("end", "follow", "Follow", show=False),
        Binding("escape", "clear_filters", "Clear", show=False),
    ]
    COMPONENT_CLASSES = {f"journal-pane--{n}" for n in PRIORITY_NAMES} | {
        "journal-pane--event", "journal-pane--console", "journal-pane--match"}

    following: reactive[bool] = reactive(True)
    # repaint=False: a new filter shows in the log's lines and the subtitle, each repainting
    # itself; the reactive's own repaint drew every line of the pane in p's frame
    filter: reactive[JournalFilter] = reactive(JournalFilter, always_update=True, repaint=False)

    def __init__(self, **kw) -> None:
        # Born following (the reactive's default): watch_following's set_class at mount then changes
        # nothing, where adding the class restyled the pane, its log and its input (issue 16).
        kw["classes"] = " ".join(filter(None, (kw.get("classes"), "-following")))
        super().__init__(**kw)
        self.lines: deque[JournalLine] = deque(maxlen=KEEP)
        self.machines: tuple[str, ...] = ()
        self.note: str | None = None
        self._asking: str | None = None
        self.writes = 0  # RichLog writes made (one per slice: see _write)
        self._unwritten: deque[JournalLine] = deque(maxlen=KEEP)  # admitted, for the writer task
        self._scroll_end: bool | None = None
        self._end_after = False  # scroll to the end when the queued lines are written (a re-render)
        self._last_write = float("-inf")
        self._slice = WRITE_SLICE  # lines the next write takes (see _write_round)
        self._writer: asyncio.Task[None] | None = None
        self._written = asyncio.Event()
        self._written.set()

    def compose(self) -> ComposeResult:
        yield FollowLog(wrap=False, markup=False, highlight=False, auto_scroll=True, max_lines=KEEP, id="journal-log")
        # The query box (u, /) is mounted the first time it is asked for: composed hidden at start it
        # cost the first frame an Input's styles parsed, applied and mounted (issue 16).

    def on_mount(self) -> None:
        self._retitle()
        if self.lines or self.note:
            self.call_after_refresh(self._render_all)
        # Written lines keep the colours they were written in: a new theme writes them again.
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._render_all())

    # ------------------------------------------------------------ public

    def show(self, machines: tuple[str, ...], lines: Iterable[JournalLine], reset: bool,
             note: str | None = None) -> None:
        self.machines = machines
        if reset:
            self.lines.clear()
            self.note = note
        new = list(lines)[-KEEP:]
        merged = merged_in(self.lines, new)
        placed = merged is not None
        if merged is None:
            self.lines.extend(new)
        else:
            self.lines = deque(merged, maxlen=KEEP)
        if not self.query(FollowLog):
            self._retitle()
            return  # not composed yet (or going away): on_mount renders what is kept
        if reset or placed or len(new) >= KEEP:
            self._render_all()
        else:
            self._write(self.query_one(FollowLog), new, scroll_end=None)
        self._retitle()

    def visible_text(self) -> list[str]:
        """The rendered lines (for tests and screenshots)."""
        return [line.text for line in self.query_one(FollowLog).lines]

    async def written(self) -> None:
        """Return once every line given so far is in the log (for tests and screenshots)."""
        await self._written.wait()

    # ------------------------------------------------------------ watchers

    def watch_following(self, following: bool) -> None:
        self.set_class(following, "-following")
        self.set_class(not following, "-paused")
        self._retitle()

    def watch_filter(self) -> None:
        if self.is_mounted:
            self._render_all()
            self._retitle()

    # ------------------------------------------------------------ helpers

    def _render_all(self) -> None:
        if not self.query(FollowLog):
            return
        log = self.query_one(FollowLog)
        log.hold()  # the old lines stay shown until the new ones are all written (no empty frame)
        log.clear()
        self._unwritten.clear()
        if self.note and not self.lines:
            log.write(Text(escape(self.note, newline=True), style=text_style(self, "journal-pane--event")))
        self._write(log, self.lines, scroll_end=False)
        self._end_after = self.following  # once written, scrolled to the end in one step
        if self._writer is None:  # nothing to write: paint the cleared log now
            log.release()

    def _write(self, log: FollowLog, lines: Iterable[JournalLine], scroll_end: bool | None) -> None:
        """Queue the admitted LINES for the writer task, which writes them WRITE_SLICE at a time."""
        f = self.filter
        self._unwritten.extend(line for line in lines if f.admits(line))
        if scroll_end is None and self.following:
            # A flood: more new lines than one gap's writes would scroll by without being seen.  They
            # are left out of the log (the pane's buffer keeps them: a filter writes them again).
            while len(self._unwritten) > UNSEEN:
                self._unwritten.popleft()
        self._scroll_end = scroll_end
        if self._unwritten and self._writer is None:
            self._written.clear()
            self._writer = asyncio.create_task(self._write_slices(log))

    async def _write_slices(self, log: FollowLog) -> None:
        """Write the queued lines in rounds, at most one round per WRITE_GAP (a flood's batches
        are gathered, so the log is written and painted about 1/WRITE_GAP times a second, not
        per batch); a re-render's round starts at once."""
        try:
            while self._unwritten and self.is_attached:
                wait = self._last_write + WRITE_GAP - time.monotonic()
                if wait > 0 and not self._end_after:
                    await asyncio.sleep(wait)
                await self._write_round(log)
        finally:
            log.release()
            self._end_after = False
            self._writer = None
            self._unwritten.clear()
            self._written.set()

    async def _write_round(self, log: FollowLog) -> None:
        """Write the lines queued now, a slice per write and a turn of the event loop between
        writes (so keys and frames go between them), the log painted once, after the last.
        A write's cost is per write (measure, render, scroll) and per line, ~0.8 ms a write
        when written line by line; a paint repaints every line of the log (it scrolls)."""
        log.hold()
        left = len(self._unwritten)  # lines queued during the round wait for the next
        keys, terminal = gate(self.app), backlog(self.app)
        while left > 0 and self._unwritten and self.is_attached:
            await keys.painted()  # a key pressed meanwhile is drawn first (nsdash.tui.keyfirst)
            await terminal.caught_up()  # no slice while the terminal is behind (nsdash.tui.backlog)
            n = min(self._slice, left, len(self._unwritten))
            started = _slice_clock()
            texts = [self._styled(self._unwritten.popleft()) for _ in range(n)]
            log.write(Text("\n").join(texts), scroll_end=self._scroll_end)
            self._slice = slice_for((_slice_clock() - started) / n)
            left -= n
            self.writes += 1
            self._last_write = time.monotonic()
            await asyncio.sleep(0)
        log.release()
        if self._end_after and not self._unwritten and self.following and self.is_attached:
            # after the next layout (one that shows a scrollbar, a wide line, changes the end), and
            # only if the user did not scroll up meanwhile
            log.follow_end()

    def _styled(self, line: JournalLine) -> Text:
        if line.event:
            cls = "journal-pane--event"
        elif line.priority is None:
            cls = "journal-pane--console"
        else:
            cls = f"journal-pane--{PRIORITY_NAMES[max(0, min(7, line.priority))]}"
        text = Text(line_text(line, len(self.machines) > 1), style=text_style(self, cls))
        if self.filter.search:
            text.highlight_words([self.filter.search], style=text_style(self, "journal-pane--match", background=True),
                                 case_sensitive=False)
        return text

    def _retitle(self) -> None:
        who = ", ".join(self.machines) if self.machines else "no machine"
        state = "following" if self.following else "paused (end: follow)"
        extra = self.filter.describe()
        # Text: never read as markup; set only when it reads otherwise (a batch of lines keeps it)
        self.set_edge_titles(Text(f"Journal: {escape(who)}"), Text(f"{escape(extra)}  {state}" if extra else state))

    # ------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # escape clears filters only when there are some; otherwise it means "back".
        if action == "clear_filters":
            return self.filter != JournalFilter()
        return True

    def action_cycle_priority(self) -> None:
        i = PRIORITY_STEPS.index(self.filter.max_priority) if self.filter.max_priority in PRIORITY_STEPS else 0
        self.filter = JournalFilter(PRIORITY_STEPS[(i + 1) % len(PRIORITY_STEPS)], self.filter.unit,
                                    self.filter.search)

    async def action_ask(self, what: str) -> None:
        self._asking = what
        boxes = self.query("#journal-query").results(Input)
        box = next(boxes, None)
        if box is None:
            box = Input(id="journal-query", classes="-hidden")
            await self.mount(box)
        box.placeholder = "unit or identifier (empty: all)" if what == "unit" else "search text (empty: none)"
        box.value = (self.filter.unit if what == "unit" else self.filter.search) or ""
        box.remove_class("-hidden")
        box.focus()

    def action_follow(self) -> None:
        self.query_one(FollowLog).resume()

    def action_clear_filters(self) -> None:
        self.filter = JournalFilter()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        value = event.value.strip() or None
        if self._asking == "unit":
            self.filter = JournalFilter(self.filter.max_priority, value, self.filter.search)
        else:
            self.filter = JournalFilter(self.filter.max_priority, self.filter.unit, value)
        event.input.add_class("-hidden")
        self.query_one(FollowLog).focus()
