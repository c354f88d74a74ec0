"""The units screen driven with the pilot against a real Debian machine booted by nsdash (root)."""

from __future__ import annotations

import pytest
from tuikit import wait_for, wait_for_screen

from nsdash.inside import units
from nsdash.inside.view import MachineUnits
from nsdash.tui.app import NsdashApp
from nsdash.tui.screens.confirm import ConfirmScreen
from nsdash.tui.screens.units import UnitsScreen, visible
from tests.integration.test_inside_systemctl import FAILING_UNIT, TEST_UNIT, boot, install_units, power_off

root = pytest.mark.integration  # boots a machine: root only, leak-checked


@pytest.fixture
def machine(debian_cache, machine_name):
    target = boot(debian_cache, machine_name, "-x")
    try:
        install_units(target, **{"nsdash-test.service": TEST_UNIT, "nsdash-fail.service": FAILING_UNIT})
        with pytest.raises(units.JobFailed):
            units.run(target, lambda sd: sd.job("start", "nsdash-fail"))
        yield target
    finally:
        power_off(machine_name)


def table_units(screen: UnitsScreen) -> list[str]:
    table = screen.query_one("#units-table")
    return [str(k.value) for k in table.rows]


async def select(pilot, screen: UnitsScreen, unit: str) -> None:
    """Put the cursor on UNIT and wait until the screen agrees (a refresh may land in between)."""
    def on_it() -> bool:
        if screen.selected_unit != unit:
            screen.query_one("#units-table").move_cursor(row=table_units(screen).index(unit))
            return False
        return True

    await wait_for(pilot, on_it, what=f"the cursor on {unit}")


@root
async def test_units_screen_lists_filters_acts_and_shows_status_and_journal(machine):
    app = NsdashApp(poll=False)
    async with app.run_test(size=(160, 45)) as pilot:
        screen = UnitsScreen(machine.name)
        await app.push_screen(screen)
        await wait_for(pilot, lambda: "dbus.service" in table_units(screen), what="the unit list")
        # The failed unit is listed (active view) and marked.
        assert "nsdash-fail.service" in table_units(screen)
        assert screen.glyph_of("nsdash-fail.service") == "×"
        cell = screen.query_one("#units-table").get_cell("nsdash-fail.service", "unit")
        assert cell.plain.startswith("● ") and "red" in str(cell.style)
        assert "1 failed" in str(screen.query_one("#units-info").render())

        # f: failed only.
        await pilot.press("f")
        assert table_units(screen) == ["nsdash-fail.service"]
        await pilot.press("f")

        # Filter by typing; the inactive test unit only appears with a (all).
        await pilot.press("slash")
        for ch in "nsdash":
            await pilot.press(ch)
        await pilot.press("enter")
        assert table_units(screen) == ["nsdash-fail.service"]
        await pilot.press("a")
        await wait_for(pilot, lambda: "nsdash-test.service" in table_units(screen),
                       what="the not-loaded test unit with all")

        # Start it (no question asked), see it active and its process in the status pane.
        await select(pilot, screen, "nsdash-test.service")
        await pilot.press("s")
        await wait_for(pilot, lambda: screen.snapshot is not None and any(
            u.name == "nsdash-test.service" and u.active_state == "active" for u in screen.snapshot.units),
            what="nsdash-test.service to become active")
        detail = screen.query_one("#unit-detail")
        await wait_for(pilot, lambda: "/bin/sleep infinity" in str(detail.render()), what="its process")
        text = str(detail.render())
        assert text.startswith("● nsdash-test.service - nsdash test service")
        assert "CGroup: /system.slice/nsdash-test.service" in text

        # The unit's journal.
        await pilot.press("j")
        await wait_for(pilot, lambda: "Started nsdash-test.service" in str(detail.render()), what="its journal")
        await pilot.press("j")

        # Stop asks first; Escape keeps it running, Tab then Enter (the Stop button) stops it.
        await pilot.press("x")
        await wait_for_screen(pilot, ConfirmScreen, what="the confirmation")
        await pilot.press("y", "enter")  # no letter confirms; Enter on the focused Cancel cancels
        assert units.run(machine, lambda sd: sd.active_state("nsdash-test")) == "active"
        await pilot.press("x")
        await wait_for_screen(pilot, ConfirmScreen, what="the confirmation")
        await pilot.press("tab", "enter")
        await wait_for(pilot, lambda: units.run(machine, lambda sd: sd.active_state("nsdash-test")) == "inactive",
                       what="the unit to stop")

        # A failing start is reported, not raised.
        await select(pilot, screen, "nsdash-fail.service")
        await pilot.press("s")
        await wait_for(pilot, lambda: any("nsdash journal -M" in n.message for n in app._notifications),
                       what=lambda: f"the failure notification; have {[n.message for n in app._notifications]}")


@root
async def test_jump_to_a_unit_by_name(machine):
    """What the cgroup tree's 'jump to unit' uses: open the screen with the unit selected."""
    pid = units.run(machine, lambda sd: sd.status("dbus")).main_pid
    unit = MachineUnits(machine.name).unit_of_pid(pid)
    assert unit == "dbus.service"
    app = NsdashApp(poll=False)
    async with app.run_test(size=(160, 45)) as pilot:
        screen = UnitsScreen(machine.name, select=unit)
        await app.push_screen(screen)
        await wait_for(pilot, lambda: screen.selected_unit == "dbus.service", what="the jump")
        detail = screen.query_one("#unit-detail")
        await wait_for(pilot, lambda: "dbus-daemon" in str(detail.render()), what="its status")


@root
async def test_u_on_a_process_in_the_cgroup_tree_jumps_to_its_unit(machine):
    """The real dashboard, real poller: cursor on dbus-daemon's process in the tree, 'u' opens dbus.service."""
    import os

    from nsdash.inside.procs import parse_nspid
    from nsdash.launcher import names
    from nsdash.system import cgroupfs
    from nsdash.tui.widgets.cgroup_tree import CgroupTree

    # The host PID of the machine's dbus-daemon: the process in its cgroup whose innermost PID is MainPID.
    pid = units.run(machine, lambda sd: sd.status("dbus")).main_pid
    candidates = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/status") as f:
                status = f.read()
            cg = cgroupfs.own_cgroup(int(entry)).get("", "")
        except OSError:
            continue
        if names.scope_name(machine.name) in cg and cg.endswith("/dbus.service") and parse_nspid(status) == pid:
            candidates.append(int(entry))
    (host_pid,) = candidates
    cgroup = cgroupfs.own_cgroup(host_pid)[""]
    app = NsdashApp()
    async with app.run_test(size=(160, 45)) as pilot:
        tree = app.screen.query_one(CgroupTree)
        def shown() -> bool:
            tree.select_path(cgroup)  # opens the branches down to the unit's cgroup
            node = tree.node_for(("cg", cgroup))
            if node is not None:
                node.expand()  # its processes appear at the next refresh
            return tree.node_for(("pid", host_pid)) is not None

        await wait_for(pilot, shown, what=f"{cgroup} and its process {host_pid} in the tree")
        tree.focus()

        def on_process() -> bool:
            node = tree.node_for(("pid", host_pid))
            if tree.cursor_node is not node:
                tree.move_cursor(node)  # lands once the new lines are laid out
                return False
            return True

        await wait_for(pilot, on_process, what="the cursor on the process")
        assert tree.process_at_cursor() == (machine.name, host_pid)
        await pilot.press("u")
        await wait_for_screen(pilot, UnitsScreen, what="the units screen")
        screen = app.screen
        await wait_for(pilot, lambda: screen.selected_unit == "dbus.service", what="dbus.service selected")


def test_visible_rows_logic():
    rows = (units.UnitInfo("a.service", "Alpha", "loaded", "active", "running", "", None, None),
            units.UnitInfo("b.service", "Beta", "loaded", "inactive", "dead", "", None, None),
            units.UnitInfo("c.service", "Gamma", "loaded", "failed", "failed", "", None, None))
    assert [u.name for u in visible(rows, "", False, False)] == ["a.service", "c.service"]
    assert [u.name for u in visible(rows, "", True, False)] == ["a.service", "b.service", "c.service"]
    assert [u.name for u in visible(rows, "", False, True)] == ["c.service"]
    assert [u.name for u in visible(rows, "beta", True, False)] == ["b.service"]
