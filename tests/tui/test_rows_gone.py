"""cgroups gone from cgtop's table, removed at once (FastTable.remove_rows, not DataTable's
remove_row a row): what the terminal then shows must be what a whole repaint shows, no row
left standing where another (or nothing) now is."""

from __future__ import annotations

import pyte
import pytest
from _paintkit import terminal_fed
from textual.widget import Widget
from tuikit import sample_app

from nsdash.monitor.display import Row
from nsdash.tui import sample_data as sd
from nsdash.tui.messages import SnapshotReady
from nsdash.tui.widgets.cpu_table import CpuTable, display_order

SIZE = (120, 50)  # every row in view: a row removed moves those below it up, nothing scrolls


def _extra(n: int) -> tuple[Row, ...]:
    """N more cgroups, busy enough to rank among the others."""
    base = sd.ROWS[-1]
    return tuple(base._replace(path=f"/extra-{i}.service", cpu_percent=2.0 + i) for i in range(n))


def _text(terminal: pyte.Screen) -> list[str]:
    return [terminal.display[y] for y in range(terminal.lines)]


async def test_rows_removed_leave_the_screen_as_a_whole_repaint_paints_it(monkeypatch):
    terminal = terminal_fed(monkeypatch, SIZE)
    app = sample_app()
    async with app.run_test(size=SIZE) as pilot:
        extra = _extra(8)
        app.post_message(SnapshotReady(sd.snapshot(0)._replace(rows=sd.ROWS + extra)))
        await pilot.pause()
        await pilot.pause()
        table = app.screen.query_one(CpuTable)
        shown = table.row_count
        assert "/extra-" in "\n".join(_text(terminal))
        removes = []
        monkeypatch.setattr(CpuTable, "remove_row", lambda self, key: removes.append(key))  # (not used: batched)
        for step, kept in enumerate((extra[::2], extra[:1], ())):
            app.post_message(SnapshotReady(sd.snapshot(step + 1)._replace(rows=sd.ROWS + kept)))
            await pilot.pause()
            await pilot.pause()
            assert table.row_count == len(sd.ROWS) + len(kept) < shown
            assert table.row_keys() == display_order(sd.ROWS + kept, table.order)
            assert set(table._data) == set(table.rows) == set(table.row_keys())
            seen = _text(terminal)
            app.screen.refresh()  # every line of the screen written again
            await pilot.pause()
            await pilot.pause()
            assert seen == _text(terminal), step
            gone = {row.path for row in extra} - {row.path for row in kept}
            assert not any(path in line for line in seen for path in gone), step
        assert removes == []


@pytest.mark.parametrize("size", [SIZE, (120, 24)], ids=["all-in-view", "scrolling"])
async def test_rows_coming_and_going_repaint_their_lines_not_the_whole_table(monkeypatch, size):
    """A cgroup made or removed (a transient unit, another tool's container) moves the rows below
    its place and the rows' end: those lines are repainted, not the whole table (every line and
    the header through the styles, written out again), and the terminal shows what a whole
    repaint shows, with the table's scrollbar (24 lines: more rows than lines) or without."""
    terminal = terminal_fed(monkeypatch, size)
    app = sample_app()
    async with app.run_test(size=size) as pilot:
        app.post_message(SnapshotReady(sd.snapshot(0)))
        await pilot.pause()
        await pilot.pause()
        table = app.screen.query_one(CpuTable)
        scrolls = table.show_vertical_scrollbar
        assert scrolls == (size != SIZE)
        whole: list[str] = []  # the table's whole repaints and layouts, as they reach Textual
        refresh = Widget.refresh
        monkeypatch.setattr(Widget, "refresh", lambda self, *regions, **kw: (
            whole.append("layout" if kw.get("layout") else "whole") if self is table and (
                kw.get("layout") or not regions and kw.get("repaint", True)) else None)
            or refresh(self, *regions, **kw))
        extra = _extra(3)
        for step, rows in enumerate((sd.ROWS + extra, sd.ROWS + extra[:1], sd.ROWS + extra[1:], sd.ROWS)):
            app.post_message(SnapshotReady(sd.snapshot(0)._replace(rows=rows)))
            await pilot.pause()
            await pilot.pause()
            assert table.row_keys() == display_order(rows, table.order)
            assert whole == [], step
            seen = _text(terminal)
            app.screen.refresh()  # every line of the screen written again
            await pilot.pause()
            await pilot.pause()
            assert seen == _text(terminal), step
        assert table.show_vertical_scrollbar == scrolls
