"""FastTable's caches against what the table paints without them: after a theme switch, a
resize and a column change; and their size while rows come and go."""

from __future__ import annotations

from tuikit import feed_sample, sample_app

from nsdash.tui import sample_data as sd
from nsdash.tui.messages import SnapshotReady
from nsdash.tui.widgets.cgroup_tree import CgroupTree
from nsdash.tui.widgets.cpu_table import CpuTable
from nsdash.tui.widgets.fast_table import FastTable
from nsdash.tui.widgets.journal_pane import JournalPane
from nsdash.tui.widgets.machine_list import MachineList


def painted(table: FastTable) -> list[list[tuple[str, object]]]:
    """Every line the table paints now (header and rows), text and style per segment."""
    return [[(s.text, s.style) for s in table.render_line(y)] for y in range(table.size.height)]


def uncached(table: FastTable) -> list[list[tuple[str, object]]]:
    table._fast_cells.clear()
    table._fast_bodies.clear()
    table._fast_lines.clear()
    return painted(table)


async def test_theme_switch_repaints_cached_rows_in_the_new_colours():
    app = sample_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await feed_sample(app, pilot)
        tables = [app.screen.query_one(CpuTable), app.screen.query_one(MachineList)]
        dark = [painted(t) for t in tables]
        app.action_toggle_theme()
        await pilot.pause()
        await pilot.pause()
        for table, before in zip(tables, dark, strict=True):
            now = painted(table)
            assert now != before
            assert now == uncached(table)


async def test_resize_repaints_cached_rows_at_the_new_width():
    app = sample_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await feed_sample(app, pilot)
        table = app.screen.query_one(CpuTable)
        painted(table)
        await pilot.resize_terminal(100, 30)
        await pilot.pause()
        assert painted(table) == uncached(table)


async def test_cgroups_coming_and_going_leave_no_cache_behind():
    app = sample_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await feed_sample(app, pilot)
        table = app.screen.query_one(CpuTable)
        base = sd.ROWS
        for i in range(30):
            extra = tuple(base[0]._replace(path=f"/transient-{i}-{j}.scope") for j in range(20))
            app.post_message(SnapshotReady(sd.snapshot(3 + i)._replace(rows=base + extra)))
            await pilot.pause()
            painted(table)
        live = table.row_count
        assert live == len(base) + 20
        assert len(table._versions) <= live
        assert len({key for key, _column in table._fast_cells}) <= live


def painted_colour(widget, word: str):
    """The colour WORD is painted in, on the first of WIDGET's lines that shows it."""
    line = next(widget.render_line(y) for y in range(widget.size.height) if word in widget.render_line(y).text)
    return next(seg.style.color for seg in line if word in seg.text)


async def each_theme(app, pilot):
    """Yield once in the dark theme and once in the light one."""
    for _theme in ("textual-dark", "textual-light"):
        yield
        app.action_toggle_theme()
        await pilot.pause()
        await pilot.pause()


async def test_tree_labels_take_the_theme_colours_and_follow_a_switch():
    # The process labels are $text-muted: a colour with alpha, blended over the tree's
    # background (taken without it they came out white, unreadable on the light theme).
    app = sample_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await feed_sample(app, pilot)
        tree = app.screen.query_one(CgroupTree)
        tree.select_path(sd.MACHINES[0].cgroup + "/payload")
        await pilot.pause()
        tree.node_for(("cg", sd.MACHINES[0].cgroup + "/payload")).expand()
        await pilot.pause()

        async for _ in each_theme(app, pilot):
            want = tree.get_component_rich_style("cgroup-tree--process").color
            assert painted_colour(tree, "getty") == want, app.theme


async def test_journal_lines_take_the_theme_colours_and_follow_a_switch():
    # info lines are $text and debug lines $text-muted: taken without the background they
    # came out white, unreadable on the light theme.
    app = sample_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await feed_sample(app, pilot)
        pane = app.screen.query_one(JournalPane)
        log = pane.query_one("#journal-log")

        async for _ in each_theme(app, pilot):
            for word, component in (("Started systemd", "info"), ("debug: unit", "debug")):
                want = pane.get_component_rich_style(f"journal-pane--{component}").color
                assert painted_colour(log, word) == want, (app.theme, word)


async def test_cpu_table_figures_stay_in_view_when_the_terminal_narrows():
    app = sample_app()
    async with app.run_test(size=(300, 40)) as pilot:
        await feed_sample(app, pilot)
        table = app.screen.query_one(CpuTable)
        assert table.render_line(0).text.rstrip().endswith("Output/s")
        await pilot.resize_terminal(160, 40)
        await pilot.pause()
        await pilot.pause()
        # The paths are ellipsized to the new width, and their column shrinks with them.
        assert table.render_line(0).text.rstrip().endswith("Output/s"), table.render_line(0).text
        assert sum(c.get_render_width(table) for c in table.ordered_columns) <= table.size.width


async def test_a_row_repainted_for_one_changed_cell_re_marks_only_that_cell(monkeypatch):
    """Every cell of a painted row carries its place (row, column) for the mouse; a row repainted
    because one cell changed (a machine's sparkline, every second) marks that cell again and
    reuses the others' marked segments."""
    from nsdash.tui.widgets import fast_table

    app = sample_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await feed_sample(app, pilot)
        machines = app.screen.query_one(MachineList)
        marked: list[tuple[int, int]] = []
        with_place = fast_table.with_place
        monkeypatch.setattr(fast_table, "with_place",
                            lambda body, row, column: marked.append((row, column)) or with_place(body, row, column))
        machines.set_cells(sd.MACHINES[0].name, {"cpu": machines._styled_cell("cpu", "▁▂▃", "running")})
        await pilot.pause()
        await pilot.pause()
        row = machines.get_row_index(sd.MACHINES[0].name)
        assert marked == [(row, machines.column_keys.index("cpu"))]
        monkeypatch.undo()
        assert painted(machines) == uncached(machines)
        assert "▁▂▃" in "".join(text for text, _ in painted(machines)[machines.header_height + row])
