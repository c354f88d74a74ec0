"""The dashboard over real machines, as root: every panel, the form, the console, the journal, the keys."""

from __future__ import annotations

import contextlib
import subprocess

import pytest
from tuikit import confirm_by_name, wait_for, wait_for_screen

from nsdash.errors import NsdashError
from nsdash.launcher.spec import ContainerSpec
from nsdash.machines import client
from nsdash.machines import state as st
from nsdash.tui.app import NsdashApp
from nsdash.tui.screens.confirm import ConfirmScreen
from nsdash.tui.screens.machine import MachineScreen
from nsdash.tui.screens.spawn import SpawnScreen
from nsdash.tui.widgets.cgroup_tree import CgroupTree
from nsdash.tui.widgets.console_pane import ConsolePane
from nsdash.tui.widgets.cpu_table import CpuTable, display_order
from nsdash.tui.widgets.journal_pane import JournalPane
from nsdash.tui.widgets.machine_list import MachineList

pytestmark = pytest.mark.integration
SIZE = (160, 48)


def _stop(name: str) -> None:
    with contextlib.suppress(NsdashError, OSError):
        client.terminate(name, wait=True)


@pytest.fixture
def busybox_machine(busybox_tree, machine_name):
    """A BusyBox machine of the test's own (for tests that stop or reboot it)."""
    client.spawn(ContainerSpec(directory=busybox_tree, machine=machine_name, boot=True), detach=True, notice=None)
    yield machine_name
    _stop(machine_name)


def info_of(app: NsdashApp, name: str):
    return next((m for m in app.snapshot.machines if m.name == name), None)


def journal_text(app: NsdashApp) -> str:
    return "\n".join(t for pane in app.screen.query(JournalPane) for t in pane.visible_text())


async def select(app: NsdashApp, pilot, name: str) -> None:
    ml = app.screen.query_one(MachineList)
    await wait_for(pilot, lambda: name in ml._rows,
                   what=lambda: f"{name} in the machine list; seen {[m.name for m in app.snapshot.machines]}, "
                                f"notes {[n.message for n in app._notifications]}")
    ml.focus()
    ml.select(name)
    await wait_for(pilot, lambda: app.selected == name, what="selection")


async def test_a_machine_appears_in_every_panel_and_sort_keys_work(busybox_machine):
    name = busybox_machine
    app = NsdashApp(interval=0.5)
    async with app.run_test(size=SIZE) as pilot:
        await select(app, pilot, name)
        info = info_of(app, name)
        assert info.state == "running" and info.os.startswith("busybox") and info.cgroup
        table = app.screen.query_one(CpuTable)
        await wait_for(pilot, lambda: info.cgroup in table._rows, what="machine cgroup in the CPU table")
        assert table.machine_of.get(info.cgroup) == name
        tree = app.screen.query_one(CgroupTree)
        await wait_for(pilot, lambda: tree.node_for(("cg", info.cgroup)) is not None, what="cgroup in the tree")
        assert f"[{name}]" in str(tree.node_for(("cg", info.cgroup)).label)
        await wait_for(pilot, lambda: "boot 1" in journal_text(app), what="the console log's boot separator")
        # systemd-cgtop's keys reorder the real rows exactly as the monitor orders them.
        table.focus()
        for key, order in (("m", "memory"), ("t", "tasks"), ("p", "path"), ("c", "cpu")):
            await pilot.press(key)
            assert table.order == order
            shown = [str(table.coordinate_to_cell_key((i, 0)).row_key.value) for i in range(table.row_count)]
            assert shown == display_order(table._last, order)
    assert st.supervisor_alive(st.machine_dir(name)), "quitting the dashboard must leave the machine running"


async def test_spawn_through_the_form(busybox_tree, machine_name):
    app = NsdashApp(interval=0.5)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("s")
            await wait_for_screen(pilot, SpawnScreen, what="the form")
            app.screen.query_one("#spawn-tree").value = str(busybox_tree)
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: getattr(info_of(app, machine_name), "state", None) == "running", timeout=60,
                           what=lambda: f"the spawned machine; notes {[n.message for n in app._notifications]}")
            ml = app.screen.query_one(MachineList)
            await wait_for(pilot, lambda: machine_name in ml._rows, what="its row")
            assert info_of(app, machine_name).boot_mode
    finally:
        _stop(machine_name)


async def test_console_shows_the_login_prompt_and_runs_a_typed_command(busybox_machine):
    name = busybox_machine
    app = NsdashApp(interval=0.5)
    async with app.run_test(size=SIZE) as pilot:
        await select(app, pilot, name)
        await pilot.press("a")
        await wait_for_screen(pilot, MachineScreen, what="machine view")
        pane = app.screen.query_one(ConsolePane)
        await wait_for(pilot, lambda: pane.connection is not None and pane.has_focus, what="console attached")
        await pilot.press("enter")
        await wait_for(pilot, lambda: any("login:" in line for line in pane.screen_text()), what="login prompt")
        await pilot.press(*"root", "enter")
        await wait_for(pilot, lambda: any(line.rstrip().endswith("#") for line in pane.screen_text()),
                       what="a root shell prompt")
        await pilot.press(*"echo nsdash-$((6*7))", "enter")
        await wait_for(pilot, lambda: any(line.strip() == "nsdash-42" for line in pane.screen_text()),
                       what="the command's output")
        await pilot.press("ctrl+right_square_bracket")
        assert not pane.has_focus
        await pilot.press("escape")
        assert not isinstance(app.screen, MachineScreen)
    assert st.supervisor_alive(st.machine_dir(name)), "detaching must leave the machine running"


async def test_journal_pane_follows_a_line_written_in_the_machine(busybox_machine):
    name = busybox_machine
    app = NsdashApp(interval=0.5)
    async with app.run_test(size=SIZE) as pilot:
        await select(app, pilot, name)
        await wait_for(pilot, lambda: "boot 1" in journal_text(app), what="the journal pane")
        leader = info_of(app, name).leader
        marker = f"nsdash-marker-{name}"
        subprocess.run(["nsenter", "-t", str(leader), "-m", "-p", "--", "/bin/sh", "-c",
                        f"echo {marker} > /dev/console"], check=True, timeout=10)
        await wait_for(pilot, lambda: marker in journal_text(app), what="the new line")


async def test_reboot_and_poweroff_through_the_keys(busybox_machine):
    name = busybox_machine
    app = NsdashApp(interval=0.5)
    async with app.run_test(size=SIZE) as pilot:
        await select(app, pilot, name)
        await pilot.press("r")
        assert isinstance(app.screen, ConfirmScreen)
        await confirm_by_name(app, pilot, name)
        await wait_for(pilot, lambda: (info_of(app, name) or info_of(app, "?")) and info_of(app, name).boot >= 2,
                       timeout=60, what="the second boot")
        await wait_for(pilot, lambda: "reboot" in journal_text(app), what="the reboot separator in the journal")
        app.screen.query_one(MachineList).focus()
        await pilot.press("o")
        await confirm_by_name(app, pilot, name)
        await wait_for(pilot, lambda: info_of(app, name) is None, timeout=60, what="the machine gone")
        ml = app.screen.query_one(MachineList)
        await wait_for(pilot, lambda: name not in ml._rows, what="its row gone")
    assert not st.machine_dir(name).exists()
