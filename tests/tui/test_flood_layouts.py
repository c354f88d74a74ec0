"""p on a flooded journal lays nothing out (issue 15: p within 100 ms while a machine floods)."""

from __future__ import annotations

from tuikit import machine_screen, sample_app, ticks

from nsdash.tui.widgets.follow_log import FollowLog
from nsdash.tui.widgets.journal_pane import KEEP, PRIORITY_STEPS, JournalPane

SIZE = (160, 48)


async def test_p_between_a_full_log_and_an_empty_one_lays_out_nothing():
    """p cycles the journal's priority filter: from thousands of kept lines to none and back.
    The log's vertical scrollbar is always there (RichLog: overflow-y scroll); FollowLog laid
    the whole screen out each time the lines went from more than the box to fewer or back,
    as if that showed or hid it."""
    app = sample_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await machine_screen(app, pilot)
        pane = screen.query_one(JournalPane)
        log = screen.query_one(FollowLog)
        pane.show(("demo-debian",), ticks(KEEP, priority=5), reset=False)
        await pane.written()
        await pilot.pause()
        layouts: list[object] = []
        screen.screen_layout_refresh_signal.subscribe(screen, layouts.append)
        emptied = filled = 0
        for _ in range(2 * len(PRIORITY_STEPS)):
            before = len(log.lines)
            pane.action_cycle_priority()
            await pane.written()
            await pilot.pause()
            emptied += before > 0 and not log.lines
            filled += not before and len(log.lines) > 0
        assert emptied >= 2 and filled >= 2  # the log went from lines to none and back, twice
        assert layouts == [], len(layouts)
        assert log.show_vertical_scrollbar
