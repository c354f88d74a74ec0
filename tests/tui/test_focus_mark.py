"""The focus mark (the `-focused` class on the panel holding the focus, widgets/edges.py):
a focus move restyles the panels whose mark changes and the widgets whose focus changes,
not everything under a panel (issue 15: Tab within 100 ms while a machine floods)."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

from textual.css.stylesheet import Stylesheet
from textual.widget import Widget
from textual.widgets import Input
from tuikit import machine_screen, sample_app, wait_for

from nsdash.tui.widgets.console_pane import ConsolePane
from nsdash.tui.widgets.edges import FOCUSED
from nsdash.tui.widgets.follow_log import FollowLog
from nsdash.tui.widgets.journal_pane import JournalPane

SIZE = (160, 48)


@contextlib.contextmanager
def counting_restyles(monkeypatch) -> Iterator[Counter[Widget]]:
    """How often each widget is restyled (Stylesheet.apply) within the block."""
    restyled: Counter[Widget] = Counter()
    real = Stylesheet.apply

    def counted(self, node, **kw):
        if isinstance(node, Widget):
            restyled[node] += 1
        return real(self, node, **kw)

    monkeypatch.setattr(Stylesheet, "apply", counted)
    try:
        yield restyled
    finally:
        monkeypatch.setattr(Stylesheet, "apply", real)


async def test_a_focus_move_restyles_the_two_panels_and_the_two_focus_widgets_only(monkeypatch):
    """Tab (journal's log -> console) and ctrl+] (back): a `.panel:focus-within` rule made
    Textual restyle every widget under the journal pane on each move (the log twice, its
    hidden query Input, their scrollbars); the class restyles the two panels, and the
    widgets gaining and losing the focus restyle themselves once each."""
    app = sample_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await machine_screen(app, pilot)
        journal = screen.query_one(JournalPane)
        console = screen.query_one(ConsolePane)
        log = screen.query_one(FollowLog)
        screen.set_focus(log)
        await journal.written()
        await wait_for(pilot, lambda: journal.has_class(FOCUSED), 5, "the journal's mark")
        await pilot.pause()
        moves = (("tab", console), ("ctrl+right_square_bracket", journal)) * 2
        with counting_restyles(monkeypatch) as restyled:
            for key, panel in moves:
                await pilot.press(key)
                await wait_for(pilot, lambda p=panel: p.has_class(FOCUSED), 5, key)
                await pilot.pause()
                others = [p for p in (journal, console) if p is not panel]
                assert not any(p.has_class(FOCUSED) for p in others)  # the mark left the other panel
        # (the query box is mounted when first asked for: none here, to be restyled or not)
        assert list(journal.query(Input)) == []
        assert restyled[log] == len(moves), restyled  # its own :focus, once per move (was twice)
        assert restyled[journal] == len(moves) and restyled[console] == len(moves)  # the mark (console: with its :focus)
        # the journal's mark is its top edge in the accent colour, the console's not
        assert journal.styles.border_top[1] != console.styles.border_top[1]


async def test_a_tab_on_the_dashboard_restyles_each_table_once_per_focus_it_gains_or_loses(monkeypatch):
    """A table panel is itself the widget the focus reaches or leaves: its Focus/Blur event
    restyles it (with every one of its component classes), and the mark's class goes
    with that restyle, not a second one (main restyled each table twice per move)."""
    from tuikit import feed_sample

    from nsdash.tui.widgets.cgroup_tree import CgroupTree
    from nsdash.tui.widgets.cpu_table import CpuTable
    from nsdash.tui.widgets.machine_list import MachineList

    app = sample_app()
    async with app.run_test(size=SIZE) as pilot:
        await feed_sample(app, pilot)
        screen = app.screen
        tables = [screen.query_one(kind) for kind in (MachineList, CpuTable, CgroupTree)]
        screen.set_focus(tables[0])
        await wait_for(pilot, lambda: tables[0].has_class(FOCUSED), 5, "the machine list's mark")
        await pilot.pause()
        with counting_restyles(monkeypatch) as restyled:
            for table in tables[1:]:  # machines -> cpu -> tree
                await pilot.press("tab")
                await wait_for(pilot, lambda t=table: t.has_class(FOCUSED) and t.has_focus, 5, "tab")
                await pilot.pause()
        assert [restyled[t] for t in tables] == [1, 2, 1], restyled  # left; reached and left; reached
        assert [t.has_class(FOCUSED) for t in tables] == [False, False, True]



async def test_the_dashboard_styles_the_machine_list_once_for_its_first_focus(monkeypatch):
    """The machine list, where the focus starts, wears the mark from its compose: Textual's
    auto-focus restyles it for its :focus and nothing restyles it again for the mark before
    the first frame (issue 16: main styled it three times, each with its component classes)."""
    from nsdash.tui.widgets.machine_list import MachineList

    with counting_restyles(monkeypatch) as restyled:
        app = sample_app()
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            machines = app.screen.query_one(MachineList)
            assert machines.has_focus and machines.has_class(FOCUSED)
            assert restyled[machines] == 2, restyled  # mounted, then focused
            others = [w for w in app.screen.query(".panel") if w is not machines]
            assert others and not any(w.has_class(FOCUSED) for w in others)
