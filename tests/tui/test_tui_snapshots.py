"""Snapshot tests of each panel and screen over fixed data, in 80x24 and 140x40, dark and light."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_terminal_model import SYSTEMD_BOOT
from tuikit import feed_sample, sample_app, wait_for

from nsdash.tui import sample_data as sd
from nsdash.tui.actions import LauncherActions
from nsdash.tui.console.terminal import TerminalModel
from nsdash.tui.messages import JournalLines
from nsdash.tui.screens.machine import MachineScreen
from nsdash.tui.screens.spawn import SpawnScreen
from nsdash.tui.widgets.console_pane import ConsolePane


def _prepare(extra=None, theme: str = "textual-dark"):
    async def run_before(pilot) -> None:
        pilot.app.theme = theme
        await feed_sample(pilot.app, pilot)
        if extra is not None:
            await extra(pilot)
        _steady_cursors(pilot.app)
        await pilot.pause()
    return run_before


def _steady_cursors(app) -> None:
    """Stop every cursor blinking, left visible (Textual shows a focused widget's cursor
    for good when its blink is turned off).

    A focused Input's cursor toggles every 0.5 s after it gained focus, so without
    this the picture depended on how long the steps before the screenshot took:
    on a slower or busier machine the cursor cell lost its background.
    """
    for widget in app.screen.query("*"):
        if hasattr(widget, "cursor_blink"):
            widget.cursor_blink = False


class _NoImages(LauncherActions):
    """The spawn form lists /var/lib/machines: a snapshot must not depend on the host's."""

    def images(self) -> dict[str, Path]:
        return {}


@pytest.mark.parametrize("size", [(80, 24), (140, 40)])
def test_overview(snap_compare, size):
    assert snap_compare(sample_app(), terminal_size=size, run_before=_prepare())


def test_overview_light(snap_compare):
    assert snap_compare(sample_app(), terminal_size=(140, 40), run_before=_prepare(theme="textual-light"))


async def _maximise_tree(pilot) -> None:
    pilot.app.screen.query_one("#tree").focus()
    await pilot.press("f")


def test_tree_maximised(snap_compare):
    assert snap_compare(sample_app(), terminal_size=(100, 30), run_before=_prepare(_maximise_tree))


async def _machine_view(pilot) -> None:
    app = pilot.app
    app.push_screen(MachineScreen("demo-debian"))
    await pilot.pause()
    app._apply()
    app.post_message(JournalLines(("demo-debian",), sd.JOURNAL, reset=True))
    pane = app.screen.query_one(ConsolePane)
    model = TerminalModel(pane.size.width, pane.size.height)
    model.feed(SYSTEMD_BOOT)
    pane.model = model
    pane.connection = None
    pane.attached = "demo-debian"
    pane._lines = [pane._strip(model.line_runs(y)) for y in range(model.lines)]
    pane.refresh()


def test_machine_view_with_console(snap_compare):
    assert snap_compare(sample_app(), terminal_size=(140, 40), run_before=_prepare(_machine_view))


async def _spawn_form(pilot) -> None:
    await pilot.press("s")
    # The form opens once a worker thread has listed the images: wait for it, not a fixed time.
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, SpawnScreen), 10, "the spawn form")
    pilot.app.screen.query_one("#spawn-tree").value = "relative"
    await pilot.press("ctrl+s")
    await wait_for(pilot, lambda: pilot.app.screen.query_one("#spawn-error").has_class("-shown"), 10,
                   "the form's error")


def test_spawn_form_with_error(snap_compare):
    app = sample_app(actions=_NoImages())
    assert snap_compare(app, terminal_size=(100, 34), run_before=_prepare(_spawn_form))
