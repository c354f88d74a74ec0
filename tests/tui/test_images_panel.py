"""The Images panel over real images, as root: list, clone, rename, remove (confirmed, and
refused while a machine runs on the image), boot and boot -x from the panel, and the
create form's live progress, failure and cancel through real debootstrap runs.

Every test has its own image directory (NSDASH_IMAGE_PATH) holding copies of the
cached BusyBox tree; the cached trees themselves are never touched.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest
from conftest import console_log
from tuikit import confirm_by_name, wait_for, wait_for_screen

from nsdash.errors import NsdashError
from nsdash.machines import client, images
from nsdash.machines.create import FINISHING as FINISHING_LINE
from nsdash.tui.app import NsdashApp
from nsdash.tui.screens.confirm import ConfirmScreen
from nsdash.tui.screens.image_forms import CreateScreen, NameScreen
from nsdash.tui.screens.images import ImagesScreen
from nsdash.tui.screens.spawn import SpawnScreen
from nsdash.tui.widgets.image_list import ImageList

pytestmark = pytest.mark.integration
SIZE = (150, 40)


@pytest.fixture
def image(image_dir, busybox_cache, machine_name) -> str:
    """A copy of the BusyBox tree as image MACHINE_NAME (the name carries the leak check's tag)."""
    subprocess.run(["cp", "-a", "--reflink=auto", str(busybox_cache), str(image_dir / machine_name)], check=True)
    return machine_name


@pytest.fixture
def no_timed_refresh(monkeypatch):
    """The panel lists the images when it opens and after each action only: what a test then
    sees after an action, the action's own reload showed."""
    from nsdash.tui.screens import images as panel

    monkeypatch.setattr(panel, "REFRESH", 3600.0)


def _stop(*names: str) -> None:
    for name in names:
        with contextlib.suppress(NsdashError, OSError):
            client.terminate(name, wait=True)


def _unlink_journal(tree: Path) -> None:
    """The boot's --link-journal=auto linked the host's /var/log/journal/ID to the new tree's
    journal and, as systemd-nspawn does, kept the link after the machine: the tree goes with the
    test, so does the link (the suite's leak check counts it)."""
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir("/var/log/journal"):
            if entry.is_symlink() and os.readlink(entry.path).startswith(f"{tree}/"):
                os.unlink(entry.path)


def _mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [x.split()[4] for x in f if x.split()[4].startswith(str(path))]


def _notes(app: NsdashApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def open_panel(app: NsdashApp, pilot, *expected: str) -> ImageList:
    await pilot.press("I")
    await wait_for_screen(pilot, ImagesScreen, 10, "the Images panel")
    table = app.screen.query_one(ImageList)
    await wait_for(pilot, lambda: all(n in table.images for n in expected), 30,
                   lambda: f"{expected} in the panel; shown {list(table.images)}")
    return table


async def select(app: NsdashApp, pilot, table: ImageList, name: str) -> None:
    table.focus()
    table.select(name)
    await wait_for(pilot, lambda: table.selected == name, 10, "the selection")


def cells(table: ImageList, name: str) -> dict[str, str]:
    from nsdash.tui.widgets.image_list import COLUMNS

    return {key: str(table.get_cell(name, key)) for key, *_ in COLUMNS}


# ---------------------------------------------------------------- list


async def test_the_panel_lists_each_image_with_type_read_only_size_and_time(image, image_dir, machine_name):
    ro = f"{machine_name}-ro"
    subprocess.run(["cp", "-a", "--reflink=auto", str(image_dir / image), str(image_dir / ro)], check=True)
    images.set_read_only(ro, True)
    (image_dir / "disk.raw").write_bytes(b"\0" * 8192)
    hostile = f"{machine_name}-h"  # a guest that names its OS with a terminal title and a Textual link
    subprocess.run(["cp", "-a", "--reflink=auto", str(image_dir / image), str(image_dir / hostile)], check=True)
    (image_dir / hostile / "usr/lib/os-release").write_text('PRETTY_NAME="\x1b]0;pwned\x07[@click=app.quit]"\n')
    try:
        app = NsdashApp(poll=False)
        async with app.run_test(size=SIZE) as pilot:
            table = await open_panel(app, pilot, image, ro, "disk", hostile)
            row = cells(table, image)
            du = int(subprocess.run(["du", "-sxB1", str(image_dir / image)], capture_output=True,
                                    text=True, check=True).stdout.split()[0])
            assert table.images[image].size == du and du > 1_000_000
            assert row["type"] == "directory" and row["ro"] == "no" and row["used"] == "-"
            assert row["size"].endswith("M") and "BusyBox" in row["os"]
            assert cells(table, ro)["ro"] == "yes"
            assert cells(table, "disk")["type"] == "raw"
            assert cells(table, hostile)["os"] == "\\x1b]0;pwned\\x07[@click=app.quit]"
            # the footer shows the panel's keys
            shown = {b.binding.key: b.binding.description for b in app.screen.active_bindings.values()
                     if b.binding.show}
            assert {k: shown.get(k) for k in "becmdn"} == {"b": "Boot", "e": "Boot -x", "c": "Clone",
                                                          "m": "Rename", "d": "Remove", "n": "Create"}
            # an image made behind the panel's back shows at the next refresh
            subprocess.run(["cp", "-a", "--reflink=auto", str(image_dir / image),
                            str(image_dir / f"{machine_name}-new")], check=True)
            await wait_for(pilot, lambda: f"{machine_name}-new" in table.images, 15, "the new image")
    finally:
        images.set_read_only(ro, False)


# ---------------------------------------------------------------- clone, rename, remove


async def test_clone_asks_a_name_refuses_a_bad_one_and_copies(image, image_dir, machine_name, no_timed_refresh):
    new = f"{machine_name}-copy"
    app = NsdashApp(poll=False)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_panel(app, pilot, image)
        await select(app, pilot, table, image)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, NameScreen) and app.screen.query("#name-input"), 10,
                       "the name form")
        form = app.screen
        form.query_one("#name-input").value = "bad/name"
        await pilot.press("enter")
        with pytest.raises(NsdashError) as rule:
            images.check_name("bad/name", "new image name")
        error = form.query_one("#name-error")
        await wait_for(pilot, lambda: error.has_class("-shown"), 5, "the name rule's line")
        assert str(error.render()) == rule.value.oneline()
        assert app.screen is form  # still asking
        form.query_one("#name-input").value = new
        await pilot.press("enter")
        await wait_for(pilot, lambda: new in table.images, 60,
                       lambda: f"the clone in the panel; notes {_notes(app)}")
        assert isinstance(app.screen, ImagesScreen)
    assert (image_dir / new / "bin/busybox").is_file() and (image_dir / image / "bin/busybox").is_file()
    assert sorted(os.listdir(image_dir)) == sorted([image, new])  # no hidden leftovers


async def test_rename_moves_the_image(image, image_dir, machine_name, no_timed_refresh):
    new = f"{machine_name}-moved"
    app = NsdashApp(poll=False)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_panel(app, pilot, image)
        await select(app, pilot, table, image)
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(app.screen, NameScreen) and app.screen.query("#name-input"), 10,
                       "the name form")
        app.screen.query_one("#name-input").value = new
        await pilot.press("enter")
        await wait_for(pilot, lambda: new in table.images and image not in table.images, 30,
                       lambda: f"the renamed image; notes {_notes(app)}")
    assert os.listdir(image_dir) == [new]


async def test_remove_needs_the_image_name_typed(image, image_dir, no_timed_refresh):
    app = NsdashApp(poll=False)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_panel(app, pilot, image)
        await select(app, pilot, table, image)
        await pilot.press("d")
        await wait_for_screen(pilot, ConfirmScreen, 10, "the confirmation")
        # a single key, or a wrong name, removes nothing
        await pilot.press("y", "enter")
        assert isinstance(app.screen, ConfirmScreen) and (image_dir / image).is_dir()
        await pilot.press("escape")
        await wait_for_screen(pilot, ImagesScreen, 5, "the panel again")
        assert (image_dir / image).is_dir()
        await pilot.press("d")
        await wait_for_screen(pilot, ConfirmScreen, 10, "the confirmation")
        await confirm_by_name(app, pilot, image)
        await wait_for(pilot, lambda: image not in table.images, 30,
                       lambda: f"the image gone from the panel; notes {_notes(app)}")
    assert os.listdir(image_dir) == []


# ---------------------------------------------------------------- boot


async def test_boot_from_the_panel_then_remove_is_refused_while_it_runs(image, image_dir):
    app = NsdashApp(poll=False)
    try:
        async with app.run_test(size=SIZE) as pilot:
            table = await open_panel(app, pilot, image)
            await select(app, pilot, table, image)
            await pilot.press("b")
            await wait_for(pilot, lambda: cells(table, image)["used"] == image, 90,
                           lambda: f"the machine on the image; notes {_notes(app)}")
            await pilot.press("d")
            await wait_for_screen(pilot, ConfirmScreen, 10, "the confirmation")
            await confirm_by_name(app, pilot, image)
            want = f"image '{image}' is in use by running machine '{image}'"
            await wait_for(pilot, lambda: any(want in n for n in _notes(app)), 30,
                           lambda: f"the backend's refusal; notes {_notes(app)}")
            assert (image_dir / image / "bin/busybox").is_file()
            client.poweroff(image, wait=True)
            await wait_for(pilot, lambda: cells(table, image)["used"] == "-", 30, "the image free again")
    finally:
        _stop(image)


async def test_boot_ephemeral_runs_a_copy_and_leaves_the_image_unchanged(image, image_dir):
    from conftest import manifest_changes, tree_manifest

    before = tree_manifest(image_dir / image)
    app = NsdashApp(poll=False)
    started: list[str] = []
    try:
        async with app.run_test(size=SIZE) as pilot:
            table = await open_panel(app, pilot, image)
            await select(app, pilot, table, image)
            await pilot.press("e")

            def running() -> list[str]:
                started[:] = [m for m in table.images[image].used_by if m.startswith(f"{image}-")]
                return started

            await wait_for(pilot, running, 90, lambda: f"an ephemeral machine on the image; notes {_notes(app)}")
            machine = started[0]
            assert len(machine) == len(image) + 17  # the image's name and -x's random suffix
            client.terminate(machine, wait=True)
            await wait_for(pilot, lambda: table.images[image].used_by == (), 30, "the image free again")
    finally:
        _stop(*started)
    assert manifest_changes(before, tree_manifest(image_dir / image)) == []


async def test_spawn_from_the_panel_opens_the_form_with_the_image_chosen(image):
    app = NsdashApp(poll=False)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_panel(app, pilot, image)
        await select(app, pilot, table, image)
        await pilot.press("s")
        await wait_for_screen(pilot, SpawnScreen, 10, "the spawn form")
        form = app.screen
        assert form.query_one("#spawn-image").value == image
        assert form.form().tree == image
        assert form.query_one("#spawn-name").placeholder == image


# ---------------------------------------------------------------- create


async def _open_create(app: NsdashApp, pilot, name: str, release: str = "", packages: str = "",
                       go: bool = True) -> CreateScreen:
    await pilot.press("n")
    await wait_for(pilot, lambda: isinstance(app.screen, CreateScreen) and app.screen.query("#create-name"), 10,
                   "the create form")
    form = app.screen
    assert isinstance(form, CreateScreen)
    form.query_one("#create-name").value = name
    form.query_one("#create-release").value = release
    form.query_one("#create-packages").value = packages
    if go:
        await submit(form, pilot)
    return form


async def submit(form: CreateScreen, pilot) -> None:
    """Enter in a field, as a user submits (two clicks on the button within its 0.2 s press
    effect count as one)."""
    form.query_one("#create-name").focus()
    await pilot.press("enter")


def _log(form: CreateScreen) -> str:
    return "\n".join(str(line.text) for line in form.query_one("#create-log").lines)


async def test_create_shows_debootstraps_steps_live_and_a_failure_leaves_nothing(image_dir, machine_name):
    app = NsdashApp(poll=False)
    async with app.run_test(size=SIZE) as pilot:
        await open_panel(app, pilot)
        form = await _open_create(app, pilot, machine_name, packages="nsdash-no-such-package")
        await wait_for(pilot, lambda: "I: Retrieving" in _log(form), 120, "debootstrap's first steps")
        assert form.running and form.query_one("#create-progress").progress >= 1
        error = form.query_one("#create-error")
        await wait_for(pilot, lambda: not form.running, 300, "the end of the run")
        assert str(error.render()).startswith("debootstrap failed: E: Couldn't find")
        assert "I: Removing the unfinished tree..." in _log(form)
        assert isinstance(app.screen, CreateScreen)  # the problem is shown; the user closes it
    assert os.listdir(image_dir) == []
    assert _mounts_under(image_dir) == []


async def test_create_refuses_a_bad_name_and_an_unknown_release_in_one_line(image_dir, machine_name):
    app = NsdashApp(poll=False)
    async with app.run_test(size=SIZE) as pilot:
        await open_panel(app, pilot)
        form = await _open_create(app, pilot, "bad_name")
        error = form.query_one("#create-error")
        await wait_for(pilot, lambda: error.has_class("-shown"), 5, "the name rule's line")
        assert "invalid" in str(error.render()) and not form.running
        form.query_one("#create-name").value = machine_name
        form.query_one("#create-release").value = "nosuch"
        await submit(form, pilot)
        await wait_for(pilot, lambda: "does not know" in str(error.render()), 30,
                       lambda: f"the release's line; shown {str(error.render())!r}, running {form.running}")
        assert not form.running and len(str(error.render()).splitlines()) == 1
    assert os.listdir(image_dir) == []


async def test_create_of_a_mkosi_distribution_says_in_one_line_what_it_lacks(image_dir, machine_name):
    """Fedora is mkosi's to make; this host has neither mkosi nor dnf nor a Fedora mirror."""
    app = NsdashApp(poll=False)
    async with app.run_test(size=SIZE) as pilot:
        await open_panel(app, pilot)
        form = await _open_create(app, pilot, machine_name, go=False)
        form.query_one("#create-distribution").value = "fedora"
        await pilot.pause()
        assert form.query_one("#create-release").placeholder == "39"
        error = form.query_one("#create-error")
        await submit(form, pilot)
        await wait_for(pilot, lambda: "through mkosi): missing" in str(error.render()), 60,
                       lambda: f"mkosi's line; shown {str(error.render())!r}")
        assert not form.running and len(str(error.render()).splitlines()) == 1
    assert os.listdir(image_dir) == []


async def test_create_cancelled_mid_run_removes_the_unfinished_tree(image_dir, machine_name):
    app = NsdashApp(poll=False)
    async with app.run_test(size=SIZE) as pilot:
        await open_panel(app, pilot)
        form = await _open_create(app, pilot, machine_name)
        # cancel once packages are being fetched into the hidden tree
        await wait_for(pilot, lambda: form.query_one("#create-progress").progress >= 3, 300,
                       lambda: f"the download phase; log tail {_log(form)[-300:]}")
        assert any(n.startswith(".#") for n in os.listdir(image_dir))
        await pilot.press("escape")
        await wait_for(pilot, lambda: not form.running, 60, "the cancel to finish")
        assert "cancelled" in str(form.query_one("#create-error").render())
        assert isinstance(app.screen, CreateScreen)
        await pilot.press("escape")  # now it closes
        await wait_for_screen(pilot, ImagesScreen, 5, "the panel again")
    assert os.listdir(image_dir) == []
    assert _mounts_under(image_dir) == []
    left = subprocess.run(["pgrep", "-f", f"debootstrap.*{machine_name}"], capture_output=True, text=True)
    assert left.stdout == ""


async def test_create_through_the_form_then_boot_the_new_image_from_the_panel(image_dir, machine_name):
    """The whole path a user takes: a real debootstrap (about 70 s here at rest), the image in
    the list, booted from the panel to its login prompt, powered off."""
    app = NsdashApp(poll=False)
    try:
        async with app.run_test(size=SIZE) as pilot:
            table = await open_panel(app, pilot)
            form = await _open_create(app, pilot, machine_name)
            await wait_for(pilot, lambda: not form.running and form.created is not None, 900,
                           lambda: f"the tree; error {form.query_one('#create-error').render()!s}")
            bar = form.query_one("#create-progress")
            assert bar.progress == bar.total
            log = _log(form)
            assert "I: Base system installed successfully." in log and FINISHING_LINE in log
            await pilot.press("escape")  # closes the finished form
            await wait_for(pilot, lambda: machine_name in table.images, 30, "the new image in the panel")
            assert table.images[machine_name].os == "Debian GNU/Linux 12 (bookworm)"
            await select(app, pilot, table, machine_name)
            await pilot.press("b")
            await wait_for(pilot, lambda: f"{machine_name} login:" in console_log(machine_name), 120,
                           lambda: f"the login prompt; notes {_notes(app)}")
            await wait_for(pilot, lambda: table.images[machine_name].used_by == (machine_name,), 30,
                           "the machine in the Running column")
            client.poweroff(machine_name, wait=True)
    finally:
        _stop(machine_name)
        _unlink_journal(image_dir / machine_name)
    assert os.listdir(image_dir) == [machine_name]
    assert (image_dir / machine_name / "etc/shadow").read_text().startswith("root::")
