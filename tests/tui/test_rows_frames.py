"""A frame renders the lines it writes, not the box around them (nsdash/tui/rows.py; issue 16).

Counted, never timed: which widgets are asked for how many lines in a frame, and the bytes a
frame writes, against Textual's own render_partial_update on the very same repaints."""

from __future__ import annotations

import re
from dataclasses import replace

import textual
from textual._compositor import Compositor
from textual.containers import Horizontal
from textual.widget import Widget
from tuikit import sample_app

from nsdash.tui import rows
from nsdash.tui import sample_data as sd
from nsdash.tui.messages import Snapshot, SnapshotReady
from nsdash.tui.screens.dashboard import DashboardScreen


def _moves_kept(frame: str) -> str:
    """FRAME without the cursor moves that nothing is written after."""
    return re.sub(r"\x1b\[\d+;\d+H(?=\x1b\[\d+;\d+H|\n|$)", "", frame)


def _snapshot(step: int) -> Snapshot:
    """The sample's host a second later each STEP: the figures of cgtop's rows move."""
    moved = tuple(row._replace(cpu_percent=None if row.cpu_percent is None else row.cpu_percent + step % 3 * 0.7)
                  for row in sd.ROWS)
    return replace(sd.snapshot(step), rows=moved)


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
        for step in range(6):
            app.post_message(SnapshotReady(_snapshot(step)))
            await pilot.pause()
        for key in ("down", "down", "tab", "down", "down", "tab", "f", "f", "tab", "up"):
            await pilot.press(key)
            app.post_message(SnapshotReady(_snapshot(step := step + 1)))
            await pilot.pause()
    assert len(frames) >= 10
    # Textual also moves the cursor to a piece that starts where a span ends, and writes nothing
    # there; the screen reads the same without those moves.
    assert all(_moves_kept(ours) == _moves_kept(theirs) and len(ours) <= len(theirs) for ours, theirs in frames)
    assert lines["rows"] < 0.7 * lines["textual"], lines
