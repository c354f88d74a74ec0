"""A following log stays at its very end when a horizontal scrollbar comes after it scrolled
there: the bar takes a line of the box, so the end moves one line down.  CI caught the 80x24
overview's journal one line short of its end (its pane scrolls once its slices are written,
sometimes before the layout that shows the bar)."""

from __future__ import annotations

from textual.app import App, ComposeResult

from nsdash.tui.widgets.follow_log import FollowLog


class _One(App[None]):
    def compose(self) -> ComposeResult:
        yield FollowLog(id="log", auto_scroll=True)


async def test_a_following_log_is_at_its_end_after_a_scrollbar_takes_a_line():
    app = _One()
    async with app.run_test(size=(40, 12)) as pilot:
        log = app.query_one(FollowLog)
        for i in range(30):
            log.write(f"line {i}")
        await pilot.pause()
        await pilot.pause()
        assert log.scroll_y == log.max_scroll_y > 0 and not log.show_horizontal_scrollbar
        log.write("x" * 200, scroll_end=False)  # wider than the box
        log.scroll_end(animate=False, immediate=True, x_axis=False)  # before the layout that shows the bar
        for _ in range(6):
            await pilot.pause()
        assert log.show_horizontal_scrollbar and log.auto_scroll
        assert log.scroll_y == log.max_scroll_y, (log.scroll_y, log.max_scroll_y)
