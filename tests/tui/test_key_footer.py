"""The key footer: it shows the focused widget's keys, follows the focus without rebuilding
itself (no child widgets, repainted only when its keys change), and its keys can be clicked."""

from __future__ import annotations

from rich.style import Style
from tuikit import feed_sample, machine_screen, sample_app, wait_for

from nsdash.tui.widgets.console_pane import ConsolePane
from nsdash.tui.widgets.key_footer import PALETTE_EDGE, FooterLine, KeyFooter, ShownKey, render_line

SIZE = (160, 48)
PLAIN = Style()


def _shown(footer: KeyFooter) -> str:
    return footer.render().plain


async def test_the_footer_shows_the_focused_widgets_keys_and_follows_the_focus_without_rebuilding():
    app = sample_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await machine_screen(app, pilot)
        footer = screen.query_one(KeyFooter)
        screen.query_one("#machine-journal #journal-log").focus()
        await wait_for(pilot, lambda: " p Priority " in _shown(footer), 5, "the journal pane's keys")
        text = _shown(footer)
        # what the screen's bindings say, in their order: the journal's first, the screen's, the app's
        active = [b for _n, b, _e, _t in screen.active_bindings.values() if b.show and b.key != "ctrl+p"]
        positions = [text.index(f" {app.get_key_display(b)} {b.description} ") for b in active[:8]]
        assert positions == sorted(positions), text
        assert text.rstrip().endswith(f"{PALETTE_EDGE}^p palette"), text
        assert len(text) == SIZE[0]

        widgets_before = len(list(screen.query("*")))
        updates = footer.updates
        screen.query_one(ConsolePane).focus()
        await wait_for(pilot, lambda: " p Priority " not in _shown(footer), 5, "the console pane's keys")
        assert footer.updates == updates + 1  # one repaint for one change of keys
        screen.query_one("#machine-journal #journal-log").focus()
        await wait_for(pilot, lambda: " p Priority " in _shown(footer), 5, "the journal pane's keys again")
        assert footer.updates == updates + 2
        # nothing was composed or mounted for the moves: the footer has no children at all
        assert not footer.children
        assert len(list(screen.query("*"))) == widgets_before
        assert screen.query_one(KeyFooter) is footer

        # bindings refreshed with the same keys (e.g. a refresh_bindings from a widget) repaint nothing
        screen.refresh_bindings()
        await pilot.pause()
        assert footer.updates == updates + 2


async def test_clicking_a_key_in_the_footer_presses_it():
    app = sample_app()
    async with app.run_test(size=SIZE) as pilot:
        await feed_sample(app, pilot)
        screen = app.screen
        footer = screen.query_one(KeyFooter)
        screen.query_one("#tree").focus()
        await wait_for(pilot, lambda: " f Maximise " in _shown(footer), 5, "the Maximise key")
        assert screen.maximized is None
        x = _shown(footer).index(" f Maximise ") + 1
        await pilot.click(KeyFooter, offset=(x, 0))
        await wait_for(pilot, lambda: screen.maximized is not None, 5, "a maximised panel")
        # the footer stays shown over the maximised panel
        await pilot.pause()
        assert footer.display and footer.region.height == 1 and " f Maximise " in _shown(footer)


def test_a_narrow_footer_cuts_the_keys_and_keeps_the_palette_at_the_right_edge():
    keys = tuple(ShownKey(k, k, d, True) for k, d in (("a", "Console"), ("f", "Maximise"), ("q", "Quit")))
    line = FooterLine(keys, ShownKey("ctrl+p", "^p", "palette", True))
    wide = render_line(line, 60, PLAIN, PLAIN, PLAIN).plain
    assert wide.startswith(" a Console  f Maximise  q Quit ")
    assert wide.endswith(f"{PALETTE_EDGE}^p palette ") and len(wide) == 60
    narrow = render_line(line, 26, PLAIN, PLAIN, PLAIN).plain
    assert narrow == f" a Console  f {PALETTE_EDGE}^p palette "
    assert render_line(line, 5, PLAIN, PLAIN, PLAIN).cell_len == 5
    no_palette = render_line(FooterLine(keys, None), 12, PLAIN, PLAIN, PLAIN).plain
    assert no_palette == " a Console  "


def test_a_disabled_key_is_dim_and_every_key_carries_what_a_click_presses():
    line = FooterLine((ShownKey("x", "x", "Terminate", False), ShownKey("a", "a", "Console", True)), None)
    text = render_line(line, 40, PLAIN, PLAIN, PLAIN)
    spans = {text.plain[s.start:s.end]: s.style for s in text.spans}
    assert isinstance(spans[" x "], Style) and spans[" x "].dim
    assert isinstance(spans[" a "], Style) and not spans[" a "].dim
    assert spans[" a "].meta == {"footer_key": "a"} and spans["Terminate "].meta == {"footer_key": "x"}


async def test_a_focus_move_repaints_the_panels_it_changes_not_the_whole_screen(monkeypatch):
    """Textual's Screen.focused repaints the whole screen on each move; PanelScreen's does not
    (the widgets and panels whose look changes repaint themselves)."""
    from textual._compositor import Compositor

    app = sample_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await machine_screen(app, pilot)
        journal = screen.query_one("#machine-journal")
        console = screen.query_one(ConsolePane)
        screen.query_one("#machine-journal #journal-log").focus()
        await wait_for(pilot, lambda: journal.has_pseudo_class("focus-within"), 5, "the journal's focus")
        await pilot.pause()
        full = partial_renders = 0
        kind = type(screen._compositor)  # the screen's own: nsdash.tui.rows.RowsCompositor on the pinned Textual
        assert issubclass(kind, Compositor)
        real_full, real_partial = kind.render_full_update, kind.render_partial_update

        def counted_full(self, *a, **kw):
            nonlocal full
            full += 1
            return real_full(self, *a, **kw)

        def counted_partial(self, *a, **kw):
            nonlocal partial_renders
            partial_renders += 1
            return real_partial(self, *a, **kw)

        monkeypatch.setattr(kind, "render_full_update", counted_full)
        monkeypatch.setattr(kind, "render_partial_update", counted_partial)
        for key, pane in (("tab", console), ("ctrl+right_square_bracket", journal)) * 2:
            await pilot.press(key)
            await wait_for(pilot, lambda pane=pane: pane.has_pseudo_class("focus") or pane.has_pseudo_class("focus-within"), 5, key)
            await pilot.pause()
        assert partial_renders > 0  # the moves were drawn ...
        assert full == 0  # ... and never by drawing the whole screen again
        # the borders follow the focus: the journal panel's is the accent colour again, the console's not
        assert journal.styles.border_top[1] != console.styles.border_top[1]


async def test_the_footer_paints_its_row_as_textual_would_without_its_visual(monkeypatch):
    """render_line paints render()'s Text straight under the widget's style (issue 16: Textual's
    visual pipeline was most of the footer's cost in the first frame); cell for cell and style
    for style what Widget's own render_line paints."""
    from textual.widget import Widget

    app = sample_app()
    async with app.run_test(size=SIZE) as pilot:
        await feed_sample(app, pilot)
        footer = app.screen.query_one(KeyFooter)
        visuals = []
        real = Widget._render_content
        monkeypatch.setattr(Widget, "_render_content", lambda self: (visuals.append(self), real(self))[1])
        footer._dirty_regions.add(footer.region)  # a repaint asked: the row painted afresh
        ours = footer.render_line(0)
        assert [w for w in visuals if w is footer] == []  # not through the visual
        footer._dirty_regions.add(footer.region)  # Textual's own way, rendered afresh
        theirs = Widget.render_line(footer, 0)
        assert footer in visuals
        assert ours.cell_length == theirs.cell_length == SIZE[0]
        assert ours.text == theirs.text and "q Quit" in ours.text
        # Textual's visual also marks each cell's offset (meta 'offset': for text selection, which
        # the footer does not allow: ALLOW_SELECT); the colours, attributes and the key a click
        # presses are the same.
        def plain(style):
            return Style(color=style.color, bgcolor=style.bgcolor, bold=style.bold, dim=style.dim,
                         italic=style.italic, underline=style.underline, reverse=style.reverse)

        assert [(s.text, plain(s.style), s.style.meta.get("footer_key")) for s in ours.simplify()] == \
            [(s.text, plain(s.style), s.style.meta.get("footer_key")) for s in theirs.simplify()]
        assert not footer.ALLOW_SELECT
