"""Snapshot tests of each panel and screen over fixed data, in 80x24 and 140x40, dark and light."""

from __future__ import annotations

import pytest
from test_terminal_model import SYSTEMD_BOOT
from tuikit import feed_sample, sample_app

from nsdash.tui import sample_data as sd
from nsdash.tui.console.terminal import TerminalModel
from nsdash.tui.messages import JournalLines
from nsdash.tui.screens.machine import MachineScreen
from nsdash.tui.widgets.console_pane import ConsolePane


def _prepare(extra=None, theme: str = "textual-dark"):
    async def run_before(pilot) -> None:
        pilot.app.theme = theme
        await feed_sample(pilot.app, pilot)
        if extra is not None:
            await extra(pilot)
        await pilot.pause()
    return run_before


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
    await pilot.pause(0.3)
    pilot.app.screen.query_one("#spawn-tree").value = "relative"
    await pilot.press("ctrl+s")


def test_spawn_form_with_error(snap_compare):
    assert snap_compare(sample_app(), terminal_size=(100, 34), run_before=_prepare(_spawn_form))
