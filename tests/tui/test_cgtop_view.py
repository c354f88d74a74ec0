"""cgtop's view stays still at rest (issue 16): the selected machine's row moving in the ranking
takes the cursor with it, but scrolls the table only while the user is in the table.

An idle machine's %CPU goes 0.0, 0.1, 0.0: with twenty of them, the selected one's row trades
places every refresh or two, and chasing it scrolled the whole table (every line and the
scrollbar repainted and written) about once a second.  systemd-cgtop never scrolls by itself."""

from __future__ import annotations

from tuikit import feed_sample, sample_app

from nsdash.tui import sample_data as sd
from nsdash.tui.widgets.cpu_table import CpuTable


def _rows(first: str):
    """30 scopes, FIRST ranked top, the rest below by falling %CPU."""
    rows = [sd.ROWS[-1]._replace(path=f"/s{i:02}.scope", cpu_percent=float(40 - i)) for i in range(30)]
    return [r._replace(cpu_percent=99.0) if r.path == first else r for r in rows]


async def _table_with_cursor_on(app, pilot, path: str) -> CpuTable:
    await feed_sample(app, pilot)
    table = app.screen.query_one(CpuTable)
    table.update_rows(_rows(path), {})
    await pilot.pause()
    table.select_path(path)  # as the app does when a machine is selected in the machine list
    await pilot.pause()
    await pilot.pause()
    assert table.cursor_row == 0 and table.scroll_y == 0
    return table


async def test_a_selected_row_that_moves_down_the_ranking_does_not_scroll_the_table():
    app = sample_app()
    async with app.run_test(size=(160, 48)) as pilot:
        table = await _table_with_cursor_on(app, pilot, "/s05.scope")
        assert not table.has_focus
        table.update_rows(_rows("/s29.scope"), {})  # /s05 falls to 6th; then to the bottom
        table.update_rows([r._replace(cpu_percent=0.0) if r.path == "/s05.scope" else r
                           for r in _rows("/s29.scope")], {})
        await pilot.pause()
        await pilot.pause()
        assert table.selected_path() == "/s05.scope" and table.cursor_row == table.row_count - 1
        assert table.scroll_y == 0  # main: scrolled to the bottom, every line repainted


async def test_while_the_user_is_in_the_table_the_view_follows_the_cursor():
    app = sample_app()
    async with app.run_test(size=(160, 48)) as pilot:
        table = await _table_with_cursor_on(app, pilot, "/s05.scope")
        table.focus()
        await pilot.pause()
        table.update_rows([r._replace(cpu_percent=0.0) if r.path == "/s05.scope" else r
                           for r in _rows("/s29.scope")], {})
        await pilot.pause()
        await pilot.pause()
        assert table.cursor_row == table.row_count - 1 and table.scroll_y > 0
        shown = range(int(table.scroll_y), int(table.scroll_y) + table.size.height - table.header_height)
        assert table.cursor_row in shown


async def test_a_machine_picked_in_the_list_is_scrolled_to():
    app = sample_app()
    async with app.run_test(size=(160, 48)) as pilot:
        table = await _table_with_cursor_on(app, pilot, "/s05.scope")
        table.update_rows([r._replace(cpu_percent=0.0) if r.path == "/s05.scope" else r
                           for r in _rows("/s29.scope")], {})
        await pilot.pause()
        table.select_path("/s10.scope")  # below the fold too, but asked for: shown
        await pilot.pause()
        await pilot.pause()
        shown = range(int(table.scroll_y), int(table.scroll_y) + table.size.height - table.header_height)
        assert table.selected_path() == "/s10.scope" and table.cursor_row in shown and table.scroll_y > 0
