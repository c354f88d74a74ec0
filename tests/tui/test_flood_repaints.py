"""Under a flood every repaint costs the UI thread: what a batch of lines or a focus move
must not repaint (issue 15: keys within 100 ms while a machine floods).

Not timed: these count the lines Textual asks each widget to paint (its render_line
calls), in the machine screen at the bench's terminal size.
"""

from __future__ import annotations

from collections import Counter

from textual.scrollbar import ScrollBar
from tuikit import machine_screen, sample_app, ticks, wait_for

from nsdash.tui.widgets.console_pane import ConsolePane
from nsdash.tui.widgets.follow_log import FollowLog
from nsdash.tui.widgets.journal_pane import KEEP, UNSEEN, WRITE_SLICE, JournalPane

SIZE = (160, 48)
# Lines of the two panes (content, not their edges) and the log's scrollbar a focus move may
# paint: the console's cursor line, and one spare (a full border painted 46 + 41 + 39).
FOCUS_MOVE_LINES = 3


def count_painted_lines(monkeypatch, *classes: type) -> Counter[str]:
    """Lines painted from now on, by widget class (each render_line call is one line)."""
    painted: Counter[str] = Counter()
    for cls in classes:
        real = cls.render_line

        def counted(self, y, real=real, name=cls.__name__):
            painted[name] += 1
            return real(self, y)

        monkeypatch.setattr(cls, "render_line", counted)
    return painted



async def test_a_batch_of_lines_paints_the_log_and_not_the_panes_border(monkeypatch):
    """Textual repaints every line of a widget whose border title is set, even to the same
    text; the journal pane set its titles with each batch (several a second under a flood)."""
    app = sample_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await machine_screen(app, pilot)
        pane = screen.query_one(JournalPane)
        await pane.written()
        await pilot.pause()
        painted = count_painted_lines(monkeypatch, JournalPane, FollowLog)
        pane.show(("demo-debian",), ticks(30, priority=5), reset=False)
        await pane.written()
        await pilot.pause()
        assert painted["FollowLog"] > 0  # the new lines were painted ...
        assert painted["JournalPane"] == 0  # ... and the pane's own lines (border and all) were not
        edges = pane.edge_repaints
        pane.action_cycle_priority()  # a new filter is a new subtitle: that repaints the pane's edges ...
        await pane.written()
        await pilot.pause()
        assert "≤notice" in str(pane.border_subtitle) and pane.edge_repaints == edges + 1
        assert painted["JournalPane"] <= 2  # ... its top and bottom lines alone (main: 39, every line of the pane)


async def _journal_focused(app, pilot) -> tuple[JournalPane, ConsolePane]:
    """The machine screen with the focus on the journal's log, its lines written: its journal
    and console panes."""
    screen = await machine_screen(app, pilot)
    journal = screen.query_one(JournalPane)
    screen.set_focus(screen.query_one(FollowLog))
    await journal.written()
    await wait_for(pilot, lambda: journal.has_pseudo_class("focus-within"), 5, "the journal's focus")
    await pilot.pause()
    return journal, screen.query_one(ConsolePane)


async def _move_focus(pilot, key: str, to) -> None:
    """Press KEY and wait until the focus is in pane TO, and for the frame after."""
    await pilot.press(key)
    await wait_for(pilot, lambda: to.has_pseudo_class("focus") or to.has_pseudo_class("focus-within"), 5, key)
    await pilot.pause()


async def test_moving_the_focus_between_console_and_journal_paints_no_line_of_the_log(monkeypatch):
    """Tab (to the console) and ctrl+] (back) change the panes' borders and the footer: the
    journal's log does not change and is not painted again (RichLog's focus tint, a title
    colour that repainted the pane's children, Widget.focus() and Textual's own focus
    handler each painted all of it)."""
    app = sample_app()
    async with app.run_test(size=SIZE) as pilot:
        journal, console = await _journal_focused(app, pilot)
        painted = count_painted_lines(monkeypatch, FollowLog, ConsolePane)
        edges = console.edge_repaints
        for key, focused in (("tab", console), ("ctrl+right_square_bracket", journal)) * 2:
            await _move_focus(pilot, key, focused)
        # its border changed colour: the moves were painted, its top and bottom edges (border
        # lines: no render_line of its own; the bottom edge was a content line before)
        assert console.edge_repaints >= edges + 4 and painted["ConsolePane"] == 0
        assert painted["FollowLog"] == 0  # ... and the log's lines never


async def test_a_round_of_slices_paints_the_log_once_after_its_last_slice():
    """A flood's round (UNSEEN lines, UNSEEN // WRITE_SLICE writes) and p's rewrite of every
    kept line (KEEP // WRITE_SLICE writes) each ask for one paint of the log, after the last
    write: a frame between two slices would repaint every line of the followed log."""
    app = sample_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await machine_screen(app, pilot)
        pane = screen.query_one(JournalPane)
        log = screen.query_one(FollowLog)
        await pane.written()
        await pilot.pause()
        repaints_at_write: list[int] = []
        real_write = log.write

        def write(content, *a, **kw):
            repaints_at_write.append(log.repaints)
            return real_write(content, *a, **kw)

        log.write = write

        for start in (lambda: pane.show(("demo-debian",), ticks(UNSEEN, priority=5), reset=False),
                      lambda: pane.show(("demo-debian",), ticks(KEEP, priority=5), reset=False),
                      pane.action_cycle_priority):
            repaints_at_write.clear()
            before = log.repaints
            start()
            await pane.written()
            assert len(repaints_at_write) >= UNSEEN // WRITE_SLICE  # written in slices ...
            assert set(repaints_at_write) == {before}  # ... with no paint asked between them ...
            assert log.repaints > before  # ... and the log painted after the last
            await pilot.pause()  # and the layout that paint may ask for (a scrollbar shown) is done
        assert pane.visible_text()[-1].endswith(f"flood: tick {KEEP - 1}") and log.scroll_y == log.max_scroll_y


async def test_a_focus_move_paints_only_the_edges_of_the_two_panes(monkeypatch):
    """Tab and ctrl+] repaint the top and bottom edges of the pane the focus leaves and of the
    one it reaches (the focus mark, nsdash.tcss), the console's cursor line and nothing else
    of either pane: not their content lines, not the log, not its scrollbar (a full border
    repainted the console's 46 lines and the journal pane's 41 on every move)."""

    app = sample_app()
    async with app.run_test(size=SIZE) as pilot:
        journal, console = await _journal_focused(app, pilot)
        painted = count_painted_lines(monkeypatch, FollowLog, ConsolePane, JournalPane, ScrollBar)
        moves = (("tab", console), ("ctrl+right_square_bracket", journal)) * 2
        for key, focused in moves:
            await _move_focus(pilot, key, focused)
        assert console.edge_repaints >= len(moves) and journal.edge_repaints >= len(moves)  # marks moved ...
        assert painted["FollowLog"] == 0
        per_move = painted["ConsolePane"] + painted["JournalPane"] + painted["ScrollBar"]
        assert per_move <= FOCUS_MOVE_LINES * len(moves), dict(painted)  # ... and almost nothing else


async def test_a_focus_restyle_that_changes_more_than_the_edges_repaints_every_line(monkeypatch):
    """FocusEdges repaints the edges alone only when nothing else changed: a focus style that
    also changes the background (not nsdash's) repaints the pane's every line."""
    from textual.app import App
    from textual.containers import Vertical
    from textual.widgets import Static

    from nsdash.tui.screens.panels import PanelScreen
    from nsdash.tui.widgets.edges import FocusEdges

    class Pane(FocusEdges, Vertical):  # as the journal pane: the focus is on a child
        pass

    class Screen(PanelScreen):
        def compose(self):
            for name in ("one", "two"):
                with Pane(id=name, classes="panel"):
                    yield Static(name, id=f"{name}-text").set_styles("height: 1;")

    class Tinted(App):
        CSS = """.panel { border: round grey; height: 6; }
                 .panel:focus-within { border-top: round red; border-bottom: round red; }
                 #two:focus-within { background: darkblue; }"""

        def on_mount(self) -> None:
            self.push_screen(Screen())

    app = Tinted()
    async with app.run_test(size=(40, 14)) as pilot:
        one, two = app.screen.query_one("#one", Pane), app.screen.query_one("#two", Pane)
        for pane in (one, two):
            pane.query_one(Static).can_focus = True
        one.query_one(Static).focus()
        await pilot.pause()
        painted: Counter[str] = Counter()
        real = Pane.render_line

        def counted(self, y):
            painted[self.id] += 1
            return real(self, y)

        monkeypatch.setattr(Pane, "render_line", counted)
        app.screen.set_focus(two.query_one(Static))  # one: edges only; two: edges and background
        await pilot.pause()
        assert one.edge_repaints > 0 and two.edge_repaints == 0
        assert painted["two"] == 4  # two's every content line (6 less the edges) ...
        assert painted["one"] < 4, dict(painted)  # ... and not one's (a line beside its blurred child may be)
