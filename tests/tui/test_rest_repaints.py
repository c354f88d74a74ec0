"""The dashboard at rest with many machines (issue 16): what one refresh marks for repaint, counted.

Twenty idle machines' %CPU trade places every second: cgtop's table changes a figure in a row
and moves that row in the same refresh.  Each line is marked once, in one refresh, over the
cells in view only: the scrollbar beside them (and its lines, in every frame) is left alone."""

from __future__ import annotations

from _paintkit import painted_anew, painted_lines
from textual.geometry import Region
from tuikit import feed_sample, sample_app

from nsdash.monitor.counters import Counters
from nsdash.monitor.display import Row
from nsdash.tui import sample_data as sd
from nsdash.tui.messages import MachineInfo, SnapshotReady
from nsdash.tui.widgets.cellbars import CellScrollBar
from nsdash.tui.widgets.cpu_table import CpuTable
from nsdash.tui.widgets.machine_list import MachineList
from nsdash.tui.widgets.steady import SteadyScrollbars


def _scope(i: int) -> str:
    return f"/machine.slice/machine-idle\\x2d{i:02d}.scope"


def _rows(step: int) -> tuple[Row, ...]:
    """The sample's rows and 24 idle machines' scopes, whose %CPU (0.3 to 0.6) trade places each STEP."""
    idle = tuple(Row(_scope(i), 4, (0.3, 0.4, 0.5, 0.6)[(i * 7 + step * 3) % 4], None, 720_000 + 4096 * i, 0.0, 0.0,
                     Counters()) for i in range(24))
    return (*sd.ROWS, *idle)


async def _marked_by(table, pilot, monkeypatch, change) -> list[tuple[Region, ...]]:
    """The regions TABLE marked, call by call, while CHANGE ran (the frame after it painted)."""
    calls: list[tuple[Region, ...]] = []
    refresh = SteadyScrollbars.refresh
    monkeypatch.setattr(type(table), "refresh", lambda self, *regions, **kw: (
        calls.append(regions) if self is table else None) or refresh(self, *regions, **kw))
    change()
    monkeypatch.undo()
    return calls


async def test_a_row_changed_and_moved_marks_its_lines_once_in_one_refresh_beside_the_scrollbar(monkeypatch):
    app = sample_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await feed_sample(app, pilot)
        table = app.screen.query_one(CpuTable)
        for step in range(2):
            table.update_rows(_rows(step), dict(sd.MACHINE_OF))
            await pilot.pause()
            await pilot.pause()
        assert table.show_vertical_scrollbar  # more rows than lines: the bar is there to be left alone
        before, order = painted_lines(table), table.row_keys()
        calls = await _marked_by(table, pilot, monkeypatch, lambda: table.update_rows(_rows(2), dict(sd.MACHINE_OF)))
        assert table.row_keys() != order  # rows did move, and figures changed
        after = painted_anew(table)
        assert len(calls) == 1, calls  # one refresh for the whole update (was one per line, twice a moved line)
        marked = [y for region in calls[0] for y in range(region.y, region.bottom)]
        assert len(marked) == len(set(marked))  # no line twice
        changed = {y for y, (was, now) in enumerate(zip(before, after, strict=True)) if was != now}
        assert changed and changed <= set(marked), (sorted(changed), marked)  # every line that reads otherwise
        cells_width = table.size.width - table.scrollbar_gutter.right
        assert all(region.x == 0 and region.right == cells_width for region in calls[0]), calls[0]
        # The frame: the lines asked of the table are those, and the scrollbar is not asked.
        asked: dict[str, int] = {}
        render_lines = CellScrollBar.render_lines
        monkeypatch.setattr(CellScrollBar, "render_lines", lambda self, crop: asked.update(
            bar=asked.get("bar", 0) + crop.height) or render_lines(self, crop))
        await pilot.pause()
        await pilot.pause()
        assert asked == {}
        assert painted_lines(table) == after


async def test_the_machine_lists_changed_rows_are_marked_in_one_refresh(monkeypatch):
    """Twenty machines in their first minute: every row's uptime changes each refresh."""
    clock = [sd.T0]
    app = sample_app()
    app.clock = lambda: clock[0]
    machines = tuple(MachineInfo(f"idle-{i:02d}", "running", "busybox 1", "-", sd.T0 - 10 - i, _scope(i), 100 + i)
                     for i in range(20))
    async with app.run_test(size=(160, 48)) as pilot:
        await feed_sample(app, pilot)
        app.post_message(SnapshotReady(sd.snapshot(5)._replace(machines=machines)))
        await pilot.pause()
        await pilot.pause()
        table = app.screen.query_one(MachineList)
        before = painted_lines(table)
        clock[0] += 1
        calls = await _marked_by(table, pilot, monkeypatch, lambda: app.on_snapshot_ready(
            SnapshotReady(sd.snapshot(6)._replace(machines=machines))))
        after = painted_anew(table)
        assert len(calls) == 1, calls
        changed = {y for y, (was, now) in enumerate(zip(before, after, strict=True)) if was != now}
        marked = {y for region in calls[0] for y in range(region.y, region.bottom)}
        assert len(changed) >= 10 and changed <= marked, (sorted(changed), sorted(marked))
        await pilot.pause()
        await pilot.pause()
        assert painted_lines(table) == after


async def test_a_moved_row_whose_cells_are_kept_takes_them_without_looking_each_cell_up(monkeypatch):
    """A row that only moved (idle machines trading places) is a new line (each cell carries its
    place), but its cells are the ones kept: they are taken once per row, not through _cell_body's
    lookups per cell (the row's key, its cells, the table's reactives)."""
    from nsdash.tui.widgets.fast_table import FastTable

    app = sample_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await feed_sample(app, pilot)
        table = app.screen.query_one(CpuTable)
        for order in ("path", "cpu"):  # every row painted at both of its places once
            table.order = order
            await pilot.pause()
            await pilot.pause()
        looked_up: list[int] = []
        cell_body = FastTable._cell_body
        monkeypatch.setattr(FastTable, "_cell_body", lambda self, *a: looked_up.append(1) or cell_body(self, *a))
        table._fast_lines.clear()  # every line built again from its cells
        lines = painted_lines(table)
        assert looked_up == []
        monkeypatch.undo()
        assert lines == painted_anew(table)


async def test_rows_whose_figures_are_unchanged_are_not_formatted_again(monkeypatch):
    """At rest most cgroups read as a second ago (55 of 81 here): their cells are not made again."""
    from nsdash.tui.widgets import cpu_table

    app = sample_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await feed_sample(app, pilot)
        table = app.screen.query_one(CpuTable)
        table.update_rows(_rows(0), dict(sd.MACHINE_OF))
        formatted: list[str] = []
        cells_of = cpu_table.cells_of
        monkeypatch.setattr(cpu_table, "cells_of", lambda row, cpu_time: formatted.append(row.path)
                            or cells_of(row, cpu_time))
        table.update_rows(_rows(0), dict(sd.MACHINE_OF))  # the same figures again
        assert formatted == []
        busier = tuple(r._replace(memory=(r.memory or 0) + 4096) if r.path == _scope(3) else r for r in _rows(0))
        table.update_rows(busier, dict(sd.MACHINE_OF))
        assert formatted == [_scope(3)]
        table.cpu_time = True  # %CPU becomes CPU time: every row is made again
        assert len(formatted) == 1 + len(busier)
        await pilot.pause()
        await pilot.pause()
        monkeypatch.undo()
        assert painted_lines(table) == painted_anew(table)


async def test_the_selected_row_trading_places_takes_the_highlight_along_without_a_message(monkeypatch):
    """The selected machine's idle row trades places most refreshes at rest: the cursor goes with
    it (the same row highlighted at its new line, the line it left plain) and, the row being the
    one highlighted already, no RowHighlighted goes through the table, the screen and the app."""
    from textual.widgets import DataTable

    highlighted: list[str] = []

    def hook(message) -> None:
        if isinstance(message, DataTable.RowHighlighted) and isinstance(message.data_table, CpuTable):
            highlighted.append(str(message.row_key.value))

    app = sample_app()
    async with app.run_test(size=(160, 48), message_hook=hook) as pilot:
        await feed_sample(app, pilot)
        table = app.screen.query_one(CpuTable)
        assert not table.has_focus
        table.update_rows(_rows(0), dict(sd.MACHINE_OF))
        table.select_path(_scope(5))
        await pilot.pause()
        await pilot.pause()
        assert highlighted[-1:] == [_scope(5)]  # picked: announced
        highlighted.clear()
        places = {table.cursor_row}
        header = table.header_height - int(table.scroll_y)
        checked = 0
        for step in range(1, 4):
            was = table.cursor_row
            calls = await _marked_by(table, pilot, monkeypatch, lambda step=step: table.update_rows(_rows(step), dict(sd.MACHINE_OF)))
            assert table.selected_path() == _scope(5)
            marked = {y for regions in calls for region in regions for y in range(region.y, region.bottom)}
            lines = {was + header, table.cursor_row + header}  # the line it left, the line it took
            in_view = {y for y in lines if y < table.size.height}  # (others are painted when scrolled to)
            assert in_view <= marked
            checked += len(in_view)
            places.add(table.cursor_row)
            await pilot.pause()
            await pilot.pause()
            kept = [list(table.render_line(y)) for y in range(table.size.height)]
            table._fast_lines.clear()
            table._fast_placed.clear()
            assert kept == [list(table.render_line(y)) for y in range(table.size.height)]
        assert len(places) > 1 and checked  # it did move, in view
        assert highlighted == []
