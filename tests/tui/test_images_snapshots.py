"""Snapshots of the Images panel and the create form over fixed data (nsdash.tui.sample_data)."""

from __future__ import annotations

from pathlib import Path

from test_tui_snapshots import _steady_cursors
from tuikit import sample_app, wait_for

from nsdash.tui import sample_data as sd
from nsdash.tui.actions import LauncherActions
from nsdash.tui.messages import ImageRow
from nsdash.tui.screens.image_forms import CreateScreen
from nsdash.tui.screens.images import ImagesScreen
from nsdash.tui.widgets.image_list import ImageList


class _FixedImages(LauncherActions):
    """The panel over sample_data.IMAGES, never the host's images."""

    def image_rows(self) -> tuple[ImageRow, ...]:
        return sd.IMAGES

    def images(self) -> dict[str, Path]:
        return {}


async def _panel(pilot) -> None:
    app = pilot.app
    await pilot.press("I")
    await wait_for(pilot, lambda: isinstance(app.screen, ImagesScreen) and app.screen.loaded, 10, "the panel")
    table = app.screen.query_one(ImageList)
    table.select("golden")
    await wait_for(pilot, lambda: table.selected == "golden", 5, "the selection")
    _steady_cursors(app)
    await pilot.pause()


def test_images_panel(snap_compare):
    app = sample_app(actions=_FixedImages())
    assert snap_compare(app, terminal_size=(130, 20), run_before=_panel)


async def _create_progress(pilot) -> None:
    app = pilot.app
    await _panel(pilot)
    app.push_screen(CreateScreen(app.actions))
    await wait_for(pilot, lambda: isinstance(app.screen, CreateScreen) and app.screen.query("#create-name"), 5,
                   "the create form")
    form = app.screen
    form.query_one("#create-name").value = "bookworm"
    for line in sd.CREATE_STEPS:
        form.post_message(CreateScreen.Step(line))
    await wait_for(pilot, lambda: form.query_one("#create-progress").progress == 6, 5, "the steps")
    _steady_cursors(app)
    await pilot.pause()


def test_create_form_progress(snap_compare):
    app = sample_app(actions=_FixedImages())
    assert snap_compare(app, terminal_size=(100, 36), run_before=_create_progress)
