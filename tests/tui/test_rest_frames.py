"""The dashboard at rest (issue 16): what one refresh repaints, counted, never timed.

A process started or gone in an open cgroup (a guest's `sleep 1` every second) changes the
tree: Textual's Tree repaints its whole pane for that (every line through the styles, its
border, all written to the terminal again) and learns its new size only while painting, so
its scrollbars came in a second frame.  The tree repaints the lines that read otherwise, and
knows its size before the frame."""

from __future__ import annotations

from _paintkit import open_system_slice, painted_anew, painted_lines, with_pids
from tuikit import feed_sample, sample_app

from nsdash.monitor.tree import CgroupNode
from nsdash.tui import sample_data as sd
from nsdash.tui.messages import SnapshotReady
from nsdash.tui.widgets.cgroup_tree import CgroupTree


async def test_a_process_more_in_the_tree_repaints_the_lines_that_changed_not_the_pane(monkeypatch):
    app = sample_app()
    async with app.run_test(size=(140, 40)) as pilot:
        tree = await open_system_slice(app, pilot)
        dirty: list[tuple] = []
        set_dirty = CgroupTree._set_dirty
        monkeypatch.setattr(CgroupTree, "_set_dirty", lambda self, *regions: dirty.append(regions)
                            or set_dirty(self, *regions))
        shown_before = [line.node.data for line in tree._tree_lines]
        tree.update_tree(with_pids(sd.TREE, "/system.slice", (2,)), {**sd.COMMANDS, 2: "sleep 1"},
                         dict(sd.MACHINE_OF))
        lines = [line.node.data for line in tree._tree_lines]
        below = lines.index(("cg", "/system.slice"))
        assert lines[below + 1] == ("pid", 2) and below > 2 and len(lines) == len(shown_before) + 1
        assert dirty and all(dirty), dirty  # no call without a region: the whole pane is not repainted
        ys = {region.y for regions in dirty for region in regions}
        # The root's line (Tree marks the root at every change) and from the new process down;
        # not the lines above it, which read as before.
        assert 0 in ys and below + 1 in ys and max(ys) == min(len(lines), tree.size.height) - 1
        assert not ys & set(range(1, below)), sorted(ys)
        await pilot.pause()
        await pilot.pause()
        monkeypatch.undo()
        shown = painted_lines(tree)
        assert shown == painted_anew(tree)
        assert any("2 sleep 1" in line for line in shown)


async def test_the_trees_new_size_is_known_before_the_frame():
    """The scrollbars take the tree's new size as the snapshot is applied, so they are painted in
    that refresh's frame: before, the lines were built while painting, and the scrollbars asked
    for a frame of their own (two compositor passes a refresh)."""
    app = sample_app()
    async with app.run_test(size=(140, 40)) as pilot:
        tree = await open_system_slice(app, pilot)
        many = CgroupNode("/", (*sd.TREE.children, *(CgroupNode(f"/s{i}.scope", (), ()) for i in range(60))), ())
        tree.update_tree(many, dict(sd.COMMANDS), {})
        await pilot.pause()
        await pilot.pause()
        assert tree.show_vertical_scrollbar
        height = tree.virtual_size.height
        tree.update_tree(with_pids(many, "/system.slice", (2,)), {**sd.COMMANDS, 2: "sleep 1"}, {})
        # No frame since: the size and the thumb are the new ones already.
        assert tree.virtual_size.height == height + 1
        assert tree.vertical_scrollbar.window_virtual_size == height + 1


async def test_a_row_moved_back_to_a_place_it_held_marks_no_cell_anew(monkeypatch):
    """Each cell's segments carry its place (row, column) for the mouse; at rest cgtop's order
    moves rows every few refreshes (idle machines' %CPU trading places), and each place was
    merged into each style anew (Rich merges two metas through marshal: about 25 us a cell).
    A style marked with a place is made once."""
    from rich.style import Style

    from nsdash.tui.widgets.cpu_table import CpuTable

    app = sample_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await feed_sample(app, pilot)
        table = app.screen.query_one(CpuTable)
        for order in ("path", "cpu"):  # every row at both of its places once
            table.order = order
            await pilot.pause()
            await pilot.pause()
        made: list[dict] = []
        from_meta = Style.from_meta
        monkeypatch.setattr(Style, "from_meta", lambda meta: made.append(meta) or from_meta(meta))
        before = table.row_keys()
        # A figure changes in every row (each row's line is painted anew) and the rows move.
        table.update_rows(tuple(r._replace(memory=(r.memory or 0) + (100 << 20)) for r in sd.ROWS),
                          dict(sd.MACHINE_OF))
        table.order = "path"
        await pilot.pause()
        await pilot.pause()
        assert table.row_keys() != before  # rows did move (and were painted at their new places)
        assert [meta for meta in made if meta["row"] >= 0] == []  # (the header is DataTable's own)
        monkeypatch.undo()
        assert painted_lines(table) == painted_anew(table)


async def test_a_figure_that_comes_back_is_not_laid_out_again(monkeypatch):
    """An idle machine's %CPU goes 0.1, 0.2, 0.1: a cell that reads as one did before (text,
    style, width) takes the segments made then; Rich lays out only what was never shown."""
    from nsdash.tui.widgets import fast_table
    from nsdash.tui.widgets.cpu_table import CpuTable

    app = sample_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await feed_sample(app, pilot)
        table = app.screen.query_one(CpuTable)
        first = sd.ROWS[0]
        shown = [r._replace(cpu_percent=c) if r is first else r for c in (0.1, 0.2) for r in sd.ROWS]
        for rows in (shown[:len(sd.ROWS)], shown[len(sd.ROWS):]):  # both figures shown once
            table.update_rows(rows, dict(sd.MACHINE_OF))
            await pilot.pause()
            await pilot.pause()
        made: list[str] = []
        cell_segments = fast_table.cell_segments
        monkeypatch.setattr(fast_table, "cell_segments", lambda text, *a: made.append(text.plain)
                            or cell_segments(text, *a))
        for rows in (shown[:len(sd.ROWS)], shown[len(sd.ROWS):], shown[:len(sd.ROWS)]):
            table.update_rows(rows, dict(sd.MACHINE_OF))
            await pilot.pause()
            await pilot.pause()
        assert made == []
        table.update_rows([r._replace(cpu_percent=42.4) if r is first else r for r in sd.ROWS], dict(sd.MACHINE_OF))
        await pilot.pause()
        await pilot.pause()
        assert made == ["42.4"]  # a figure never shown is laid out (once)
        assert "42.4" in "".join(painted_lines(table))


def test_the_cpu_charts_bars_hold_the_same_samples_from_refresh_to_refresh():
    """MetricHistory.cpu_means groups the samples by their numbers: a refresh adds to the newest
    bar (or starts one); the bars before it keep their samples, so they read as before."""
    from nsdash.tui.history import WINDOW, MetricHistory

    history = MetricHistory()
    cpu = [1.0, 2.0, 3.0, 10.0, 20.0, 30.0, 5.0, 7.0]
    for i, value in enumerate(cpu):
        snap = sd.snapshot(0)
        bb = next(m for m in snap.machines if m.name == "demo-busybox")
        history.update(_with_cpu(snap, bb.cgroup, value))
        means = history.cpu_means("demo-busybox", 3)
        if i == 6:
            assert means == [2.0, 20.0, 5.0]
    assert means == [2.0, 20.0, 6.0]  # the 8th sample joined the newest bar, the others held
    for _ in range(WINDOW):  # past the window: the oldest bar kept may be partial, never shifted
        history.update(_with_cpu(sd.snapshot(0), bb.cgroup, 4.0))
    assert history.cpu_means("demo-busybox", 3)[-19:] == [4.0] * 19


def _with_cpu(snap, cgroup: str, value: float):

    return snap._replace(rows=tuple(r._replace(cpu_percent=value) if r.path == cgroup else r for r in snap.rows))


async def test_an_idle_machines_row_changes_once_a_bar_not_every_refresh(monkeypatch):
    """The machine list's CPU column (a minute): its bars stand for SPARK_STEP samples each, so a
    machine whose CPU trades 0.1 for 0.4 every second (an idle guest's ticker) repaints its row
    at most twice a bar (the shift, the newest bar's mean crossing a step), where the last 20
    samples shifted along every refresh."""

    from nsdash.tui.widgets.machine_list import SPARK_STEP, SPARK_WIDTH, MachineList

    app = sample_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await feed_sample(app, pilot)
        table = app.screen.query_one(MachineList)
        bb = next(m for m in app.snapshot.machines if m.name == "demo-busybox")
        base = app.snapshot
        changed: list[int] = []
        set_cells = MachineList.set_cells

        async def refresh_once(i: int) -> None:
            app.post_message(SnapshotReady(_with_cpu(base, bb.cgroup, (0.1, 0.4)[i % 2])._replace(
                                                   timestamp=base.timestamp + i)))
            await pilot.pause()

        refreshes = SPARK_WIDTH * SPARK_STEP
        for i in range(refreshes):  # the chart full
            await refresh_once(i)
        monkeypatch.setattr(MachineList, "set_cells", lambda self, key, cells: (
            changed.append(1) if key == "demo-busybox" else None) or set_cells(self, key, cells))
        for i in range(refreshes, refreshes + 12):
            await refresh_once(i)
        # 12 refreshes: 4 bars, each repainted at most twice (the last 20 samples: all 12).
        assert 0 < len(changed) <= 8, changed
        assert table.get_cell("demo-busybox", "cpu").plain.strip()


async def test_a_new_order_all_over_the_table_repaints_its_moved_lines_not_the_table(monkeypatch):
    """cgtop's order may move most rows at once (a sort key; at rest, idle machines' %CPU trading
    places): only the lines that show another row are repainted, not the header, the border and
    the rows that stayed."""
    from nsdash.tui.widgets.cpu_table import CpuTable

    app = sample_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await feed_sample(app, pilot)
        table = app.screen.query_one(CpuTable)
        rows = [sd.ROWS[-1]._replace(path=f"/s{i:02}.scope", cpu_percent=float(i)) for i in range(1, 31)]
        table.update_rows(rows, {})
        await pilot.pause()
        await pilot.pause()
        before = table.row_keys()
        dirty: list[tuple] = []
        set_dirty = CpuTable._set_dirty
        monkeypatch.setattr(CpuTable, "_set_dirty", lambda self, *regions: dirty.append(regions)
                            or set_dirty(self, *regions))
        # Every row's %CPU changes and the ranking turns over: each line shows another row.
        table.update_rows([r._replace(cpu_percent=31.0 - r.cpu_percent) for r in rows], {})
        after = table.row_keys()
        moved = {i for i, (was, now) in enumerate(zip(before, after, strict=True)) if was != now}
        shown = range(int(table.scroll_y), int(table.scroll_y) + table.size.height - table.header_height)
        assert moved >= set(shown) & set(range(len(after))), (before, after)
        assert dirty and all(dirty), dirty  # every repaint names its lines
        header = table.header_height
        assert {region.y - header for regions in dirty for region in regions if region.y >= header} <= moved
        await pilot.pause()
        await pilot.pause()
        monkeypatch.undo()
        assert painted_lines(table) == painted_anew(table)
