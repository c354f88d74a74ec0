"""A frame renders the lines it writes, not the box around them (nsdash/tui/rows.py; issue 16).

Counted, never timed: which widgets are asked for how many lines in a frame, and the bytes a
frame writes, against Textual's own render_partial_update on the very same repaints."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pyte
import textual
from _paintkit import terminal_fed
from textual._compositor import Compositor
from textual.app import App
from textual.containers import Horizontal
from textual.pilot import Pilot
from textual.widget import Widget
from tuikit import sample_app

from nsdash.tui import installed, rows
from nsdash.tui import sample_data as sd
from nsdash.tui.messages import Snapshot, SnapshotReady
from nsdash.tui.screens.dashboard import DashboardScreen
from nsdash.tui.widgets.cellbars import CellScrollBar
from nsdash.tui.widgets.follow_log import FollowLog
from nsdash.tui.widgets.steady import SteadyScrollbars


def _moves_kept(frame: str) -> str:
    """FRAME without the cursor moves that nothing is written after."""
    return re.sub(r"\x1b\[\d+;\d+H(?=\x1b\[\d+;\d+H|\n|$)", "", frame)


def _snapshot(step: int) -> Snapshot:
    """The sample's host a second later each STEP: the figures of cgtop's rows move."""
    moved = tuple(row._replace(cpu_percent=None if row.cpu_percent is None else row.cpu_percent + step % 3 * 0.7)
                  for row in sd.ROWS)
    return sd.snapshot(step)._replace(rows=moved)


async def _life(app: App, pilot: Pilot) -> AsyncIterator[str]:
    """The dashboard's life in these tests: snapshots, focus moves, a cursor walk, a panel
    maximised and back; yields what was done after each step has been painted."""
    for step in range(6):
        app.post_message(SnapshotReady(_snapshot(step)))
        await pilot.pause()
        yield f"snapshot {step}"
    for key in ("down", "down", "tab", "down", "down", "tab", "f", "f", "tab", "up"):
        await pilot.press(key)
        app.post_message(SnapshotReady(_snapshot(step := step + 1)))
        await pilot.pause()
        yield f"{key}, snapshot {step}"


def test_the_installed_textual_is_the_one_rows_was_written_for():
    """rows.RowsCompositor overrides a private method: on another Textual, read it again
    (render_partial_update, _render_chops, ChopsUpdate) and move PINNED."""
    assert textual.__version__ == rows.PINNED, (
        f"Textual {textual.__version__} is installed; nsdash/tui/rows.py was written for {rows.PINNED}: "
        "compare Compositor.render_partial_update with RowsCompositor's, then move PINNED")
    assert rows.usable()


def test_the_pinned_version_is_read_without_importlib_metadata_and_agrees_with_it(monkeypatch):
    """rows.pinned_installed reads pip's dist-info directory (issue 16: importlib.metadata's
    import was 4% of the start); it says what textual.__version__ (importlib.metadata) says."""
    assert rows.pinned_installed() is (textual.__version__ == rows.PINNED)
    assert installed.textual_version() == textual.__version__
    monkeypatch.setattr(rows, "PINNED", "0.0.1")  # no such dist-info: the metadata's answer
    assert rows.pinned_installed() is False


async def test_a_frame_asks_the_widgets_on_the_written_lines_for_those_lines_only(monkeypatch):
    app = sample_app()
    async with app.run_test(size=(160, 50)) as pilot:
        for step in range(3):
            app.post_message(SnapshotReady(_snapshot(step)))
            await pilot.pause()
        screen = app.screen
        assert isinstance(screen, DashboardScreen) and isinstance(screen._compositor, rows.RowsCompositor)
        asked: list[tuple[Widget, int]] = []
        render_lines = Widget.render_lines
        monkeypatch.setattr(Widget, "render_lines", lambda self, crop: asked.append((self, crop.height))
                            or render_lines(self, crop))
        written: list[int] = []
        partial = rows.RowsCompositor.render_partial_update

        def counted(self):
            written.extend(y for y, _, _ in self._regions_to_spans(self._dirty_regions))
            return partial(self)

        monkeypatch.setattr(rows.RowsCompositor, "render_partial_update", counted)
        app.post_message(SnapshotReady(_snapshot(3)))
        await pilot.pause()
        await pilot.pause()
        assert written, "the new figures were not written"
        # Textual's own asked the screen and the rows' containers (behind the panels) for all
        # their lines, and every panel in the box for all of its: 200+ lines for these few.
        assert not [w for w, _ in asked if w is screen or isinstance(w, Horizontal)], asked
        assert sum(n for _, n in asked) <= 3 * len(set(written)), (asked, sorted(set(written)))


async def test_frames_write_what_textuals_frames_write(monkeypatch):
    """Each partial frame through the dashboard's life here (snapshots, focus moves, a cursor
    walk, a panel maximised and back) written both ways, compared byte for byte."""
    app = sample_app()
    frames: list[tuple[str, str]] = []
    lines = {"rows": 0, "textual": 0}
    asking = ["rows"]
    render_lines, ours_of = Widget.render_lines, rows.RowsCompositor.render_partial_update

    def counting(self, crop):
        lines[asking[0]] += crop.height
        return render_lines(self, crop)

    def both(self):
        dirty = self._dirty_regions.copy()
        ours = ours_of(self)
        self._dirty_regions = dirty
        asking[0] = "textual"
        theirs = Compositor.render_partial_update(self)
        asking[0] = "rows"
        assert (ours is None) == (theirs is None)
        if ours is not None and theirs is not None:
            frames.append((ours.render_segments(app.console), theirs.render_segments(app.console)))
        return ours

    async with app.run_test(size=(160, 50)) as pilot:
        monkeypatch.setattr(Widget, "render_lines", counting)
        monkeypatch.setattr(rows.RowsCompositor, "render_partial_update", both)
        async for _ in _life(app, pilot):
            pass
    assert len(frames) >= 10
    # Textual also moves the cursor to a piece that starts where a span ends, and writes nothing
    # there; the screen reads the same without those moves.
    assert all(_moves_kept(ours) == _moves_kept(theirs) and len(ours) <= len(theirs) for ours, theirs in frames)
    assert lines["rows"] < 0.7 * lines["textual"], lines


SMALL = (100, 24)  # the cgroup tree and the tables scroll: their scrollbars are drawn


def _cells(terminal: pyte.Screen) -> list[list[pyte.screens.Char]]:
    return [[terminal.buffer[y][x] for x in range(terminal.columns)] for y in range(terminal.lines)]


async def _screens_seen(monkeypatch, rows_on: bool) -> tuple[list[tuple[str, list[list[pyte.screens.Char]]]], App]:
    """The terminal's cells after each step of _life, every frame the app wrote (full and
    partial) fed to a terminal model, with nsdash's compositor and cell scrollbars, or
    without them as on a Textual other than rows.PINNED (usable() False)."""
    if not rows_on:
        monkeypatch.setattr(rows, "usable", lambda: False)
    terminal = terminal_fed(monkeypatch, SMALL)
    app = sample_app()
    seen = []
    async with app.run_test(size=SMALL) as pilot:
        async for step in _life(app, pilot):
            await pilot.pause()
            seen.append((step, _cells(terminal)))
        assert isinstance(app.screen._compositor, rows.RowsCompositor) == rows_on
        bars = [w._vertical_scrollbar for w in app.screen.walk_children()  # FollowLog's are its own
                if isinstance(w, SteadyScrollbars) and not isinstance(w, FollowLog) and w._vertical_scrollbar is not None]
        assert bars and all(isinstance(b, CellScrollBar) == rows_on for b in bars)
    monkeypatch.undo()
    return seen, app


async def test_textuals_own_compositor_and_scrollbars_show_the_same_screens(monkeypatch):
    """The fallback (another Textual: rows.install() keeps Textual's compositor, the tables and
    the tree keep Textual's ScrollBar) has a test of its own: the same life, the same cells on
    the terminal after every step, colours and attributes included."""
    ours, _ = await _screens_seen(monkeypatch, rows_on=True)
    theirs, _ = await _screens_seen(monkeypatch, rows_on=False)
    assert [step for step, _ in ours] == [step for step, _ in theirs]
    assert any(cell.data != " " for cell in ours[0][1][0]), "nothing was painted"
    for (step, a), (_, b) in zip(ours, theirs, strict=True):
        differ = [y for y in range(SMALL[1]) if a[y] != b[y]]
        assert not differ, (step, ["".join(c.data for c in a[y]) + " | " + "".join(c.data for c in b[y])
                                   for y in differ[:3]])


# What a guest may name things (review21): wide characters and emoji, combining marks piled
# on one letter, a zero-width joiner, controls (escaped before they are painted), markup, and
# a name far longer than its column; each refresh changes them, so cells change width.
_GUEST_TEXT = ("漢字😀", "é\u0301\u0302\u0303\u0304q", "👩\u200d💻", "x\x1b[2J\x9b\u202e[b]y", "w" * 300, "")


def _hostile(step: int) -> Snapshot:
    base = _snapshot(step)
    text = _GUEST_TEXT[step % len(_GUEST_TEXT)] + _GUEST_TEXT[(step + 2) % len(_GUEST_TEXT)]
    machines = tuple(m._replace(os=text, address=text[::-1]) for m in base.machines)
    commands = {pid: f"{cmd} {text}" for pid, cmd in base.commands.items()}
    return base._replace(machines=machines, commands=commands)


async def test_frames_with_what_a_guest_writes_are_textuals_frames(monkeypatch):
    """Guest text that is wide, combining, zero-width or longer than its column, changing at
    every refresh: each partial frame is Textual's own, byte for byte (no cell left stale
    that Textual would have written, none written that it would not)."""
    app = sample_app()
    frames: list[tuple[str, str]] = []
    ours_of = rows.RowsCompositor.render_partial_update

    def both(self):
        dirty = self._dirty_regions.copy()
        ours = ours_of(self)
        self._dirty_regions = dirty
        theirs = Compositor.render_partial_update(self)
        assert (ours is None) == (theirs is None)
        if ours is not None and theirs is not None:
            frames.append((ours.render_segments(app.console), theirs.render_segments(app.console)))
        return ours

    async with app.run_test(size=(160, 50)) as pilot:
        monkeypatch.setattr(rows.RowsCompositor, "render_partial_update", both)
        step = 0
        for key in ("down", "tab", "down", "right", "tab", "down", "f", "f", "tab", "up", "down", "down"):
            app.post_message(SnapshotReady(_hostile(step := step + 1)))
            await pilot.pause()
            await pilot.press(key)
            await pilot.pause()
    assert len(frames) >= 10
    assert any("漢字" in ours for ours, _ in frames) and any("\u0301" in ours for ours, _ in frames)
    assert all(_moves_kept(ours) == _moves_kept(theirs) for ours, theirs in frames)
    assert not any(re.search("[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f-\x9f\u202e]", ours) for ours, _ in frames)
