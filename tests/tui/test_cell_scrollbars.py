"""Scrollbars repaint the cells whose look changed (nsdash/tui/widgets/cellbars.py; issue 16).

At rest the cgroup tree gains or loses a line at most walks (a process started or gone
anywhere), and Textual repainted its whole vertical bar each time.  Counted, never timed:
the bar's lines rendered again for one line more, and what the bar shows after a run of
changes against the bar painted whole."""

from __future__ import annotations

from textual._styles_cache import StylesCache
from textual.geometry import Region
from textual.scrollbar import ScrollBar
from tuikit import feed_sample, sample_app

from nsdash.monitor.tree import CgroupNode
from nsdash.tui import sample_data as sd
from nsdash.tui.widgets.cellbars import CellScrollBar
from nsdash.tui.widgets.cgroup_tree import CgroupTree


def _tree(n: int) -> CgroupNode:
    return CgroupNode("/", (*sd.TREE.children, *(CgroupNode(f"/s{i:03}.scope", (), ()) for i in range(n))), ())


async def _tree_with_bar(app, pilot, n: int = 60) -> tuple[CgroupTree, ScrollBar]:
    await feed_sample(app, pilot)
    tree = app.screen.query_one(CgroupTree)
    tree.update_tree(_tree(n), dict(sd.COMMANDS), {})
    await pilot.pause()
    await pilot.pause()
    assert tree.show_vertical_scrollbar
    return tree, tree.vertical_scrollbar


async def test_a_line_more_in_the_tree_repaints_a_few_cells_of_its_scrollbar(monkeypatch):
    app = sample_app()
    async with app.run_test(size=(160, 48)) as pilot:
        tree, bar = await _tree_with_bar(app, pilot)
        assert isinstance(bar, CellScrollBar)
        rendered: list[int] = []
        render_line = StylesCache.render_line
        monkeypatch.setattr(StylesCache, "render_line", lambda self, styles, y, *a: (
            rendered.append(y) if styles.node is bar else None) or render_line(self, styles, y, *a))
        tree.update_tree(_tree(61), dict(sd.COMMANDS), {})
        await pilot.pause()
        await pilot.pause()
        assert bar.window_virtual_size == tree.virtual_size.height
        # main: every line of the bar (here 20+) rendered again for the thumb's eighth of a cell
        assert 0 < len(rendered) <= 3 < bar.size.height, (rendered, bar.size)


async def test_a_bar_painted_cell_by_cell_reads_as_the_bar_painted_whole():
    app = sample_app()
    async with app.run_test(size=(160, 48)) as pilot:
        tree, bar = await _tree_with_bar(app, pilot)
        for n in (61, 62, 63, 40, 90, 89, 120, 121, 60, 59):
            tree.update_tree(_tree(n), dict(sd.COMMANDS), {})
            await pilot.pause()
            await pilot.pause()
        tree.scroll_to(y=17, animate=False)
        await pilot.pause()
        await pilot.pause()
        whole = Region(0, 0, *bar.size)
        painted = bar.render_lines(whole)
        ScrollBar.refresh(bar)  # Textual's: the whole bar
        # The same glyphs, colours and click meta (above the thumb scrolls up, below down).
        assert painted == bar.render_lines(whole)
        assert len({strip.text for strip in painted}) > 1  # a thumb is drawn
