"""The dashboard's widgets driven with the pilot over fixed data: keyed updates, keys, modals."""

from __future__ import annotations

from tuikit import confirm_by_name, feed_sample, sample_app, wait_for, wait_for_screen

from nsdash.errors import NsdashError
from nsdash.monitor.tree import CgroupNode
from nsdash.tui import sample_data as sd
from nsdash.tui.messages import JournalLine, JournalLines, SnapshotReady
from nsdash.tui.screens.confirm import ConfirmScreen
from nsdash.tui.screens.spawn import SpawnScreen
from nsdash.tui.widgets.cgroup_tree import CgroupTree
from nsdash.tui.widgets.cpu_table import CpuTable
from nsdash.tui.widgets.journal_pane import JournalPane
from nsdash.tui.widgets.machine_list import MachineList


def order(table: CpuTable) -> list[str]:
    return [str(table.coordinate_to_cell_key((i, 0)).row_key.value) for i in range(table.row_count)]


async def test_cgtop_keys_reorder_rows_in_place():
    app = sample_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await feed_sample(app, pilot)
        table = app.screen.query_one(CpuTable)
        table.focus()
        await pilot.pause()
        assert order(table)[:3] == ["/", "/system.slice", "/machine.slice"]  # %CPU, parents first
        await pilot.press("m")
        assert table.order == "memory"
        by_mem = order(table)
        assert by_mem.index("/system.slice") < by_mem.index("/machine.slice")
        await pilot.press("t")
        assert order(table)[:2] == ["/", "/system.slice"]
        await pilot.press("p")
        assert order(table) == sorted(order(table))
        await pilot.press("percent_sign")
        assert table.cpu_time
        assert set(order(table)) == {r.path for r in sd.ROWS}


async def test_table_cursor_stays_on_its_cgroup_across_refreshes():
    app = sample_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await feed_sample(app, pilot)
        table = app.screen.query_one(CpuTable)
        table.focus()
        table.select_path("/init.scope")
        await pilot.pause()
        # The next refresh makes /init.scope the busiest: it moves to the top, the cursor with it.
        rows = tuple(r._replace(cpu_percent=90.0) if r.path == "/init.scope" else r for r in sd.ROWS)
        app.post_message(SnapshotReady(sd.snapshot(9)._replace(rows=rows)))
        await pilot.pause()
        assert table.selected_path() == "/init.scope"
        assert order(table).index("/init.scope") < order(table).index("/system.slice")
        # A cgroup that disappears loses its row; the others keep theirs.
        app.post_message(SnapshotReady(sd.snapshot(10)._replace(rows=rows[:-1])))
        await pilot.pause()
        assert "/system.slice" not in order(table) and table.row_count == len(sd.ROWS) - 1


async def test_tree_keeps_open_branches_and_cursor_and_marks_unreadable():
    app = sample_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await feed_sample(app, pilot)
        tree = app.screen.query_one(CgroupTree)
        system = tree.node_for(("cg", "/system.slice"))
        assert system is not None and not system.is_expanded
        system.expand()
        await pilot.pause()
        secret = tree.node_for(("cg", "/system.slice/secret.service"))
        assert secret is not None and "(unreadable)" in str(secret.label)
        tree.focus()
        tree.move_cursor(secret)
        await pilot.pause()
        # A new cgroup appears above the cursor; the cursor and the open branch stay.
        new_root = CgroupNode("/", (CgroupNode("/aaa.slice", (), ()),) + sd.TREE.children, ())
        for step in (5, 6):  # the tree follows every other refresh
            app.post_message(SnapshotReady(sd.snapshot(step)._replace(tree=new_root)))
            await pilot.pause()
        await pilot.pause()
        assert tree.node_for(("cg", "/aaa.slice")) is not None
        assert tree.node_for(("cg", "/system.slice")).is_expanded
        assert tree.cursor_node is tree.node_for(("cg", "/system.slice/secret.service"))
        # Processes sit under their cgroups, with their command lines.
        tree.select_path(sd.MACHINES[0].cgroup + "/payload")
        await pilot.pause()
        tree.node_for(("cg", sd.MACHINES[0].cgroup + "/payload")).expand()
        await pilot.pause()
        getty = tree.node_for(("pid", 4250))
        assert getty is not None and "getty" in str(getty.label)


async def test_machine_list_updates_cells_by_name():
    app = sample_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await feed_sample(app, pilot)
        ml = app.screen.query_one(MachineList)
        assert ml.row_count == 2
        assert str(ml.get_row("demo-debian")[4]) == "3h 2m"
        machines = (sd.MACHINES[0]._replace(state="rebooting"), sd.MACHINES[1])
        app.post_message(SnapshotReady(sd.snapshot(5)._replace(machines=machines)))
        await pilot.pause()
        assert str(ml.get_row("demo-busybox")[1]) == "rebooting"
        assert ml.row_count == 2


async def test_journal_pauses_when_scrolled_up_and_filters():
    app = sample_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed_sample(app, pilot)
        pane = app.screen.query_one(JournalPane)
        many = tuple(JournalLine(int((sd.T0 + i) * 1e6), "demo-debian", 6, "ticker", None, f"tick {i}")
                     for i in range(200))
        app.post_message(JournalLines(("demo-debian",), many, reset=False))
        await pilot.pause()
        await pane.written()  # every slice written (a slice's scroll to the end may land after the next)
        await pilot.pause()
        log = pane.query_one("#journal-log")
        await wait_for(pilot, lambda: log.scroll_y >= log.max_scroll_y - 1 and log.max_scroll_y > 0, what="end")
        assert pane.following
        log.scroll_to(y=0, animate=False)  # a slice's scroll to the end may still be pending: it must not undo this
        assert not pane.following
        for _ in range(3):
            await pilot.pause()
        assert log.scroll_y == 0 and not pane.following
        app.post_message(JournalLines(("demo-debian",), (JournalLine(0, "demo-debian", 3, "x", None, "late"),),
                                      reset=False))
        await pilot.pause()
        assert log.scroll_y == 0  # paused: new lines do not pull the view down
        log.focus()
        await pilot.press("end")
        await wait_for(pilot, lambda: pane.following, what="follow again")
        await pilot.press("p", "p", "p")  # up to err
        assert pane.filter.max_priority == 3
        await pane.written()  # (its writer task writes the lines: the key's own frame comes first)
        assert [t.split(": ", 1)[-1] for t in pane.visible_text() if "--" not in t] == [
            "failed to reach the update server: connection refused", "late"]
        await pilot.press("escape")
        await pilot.press("slash")
        await pilot.press(*"tick 19", "enter")
        assert pane.filter.search == "tick 19"
        await pane.written()
        assert len(pane.visible_text()) == 11  # tick 19, tick 190..199


class RecordingActions:
    """Stands in for the launcher in UI-flow tests only; the real path is tested as root."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple] = []
        self.fail = fail

    def _do(self, *call):
        self.calls.append(call)
        if self.fail:
            raise NsdashError("machine 'demo-busybox' did not stop within 30 s", "force it with terminate")

    def poweroff(self, name):
        self._do("poweroff", name)

    def reboot(self, name):
        self._do("reboot", name)

    def terminate(self, name):
        self._do("terminate", name)

    def spawn(self, spec):
        self._do("spawn", spec)

    def images(self):
        return {}


async def test_destructive_actions_confirm_and_errors_notify():
    actions = RecordingActions(fail=True)
    app = sample_app(actions=actions)
    async with app.run_test(size=(120, 40)) as pilot:
        await feed_sample(app, pilot)
        await pilot.press("o")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y", "n", "enter")  # no letter confirms, and Enter without the name does nothing
        assert isinstance(app.screen, ConfirmScreen) and actions.calls == []
        await pilot.press("escape")
        assert not isinstance(app.screen, ConfirmScreen) and actions.calls == []
        await pilot.press("r")
        await confirm_by_name(app, pilot, "demo-busybox")
        await wait_for(pilot, lambda: any("failed" in (n.title or "") for n in app._notifications), what="error")
        assert actions.calls == [("reboot", "demo-busybox")]
        note = next(n for n in app._notifications if "failed" in (n.title or ""))
        assert "did not stop" in note.message and note.severity == "error"
        assert app.is_running


async def test_spawn_form_validates_before_submitting(tmp_path):
    tree = tmp_path / "tree"  # the form builds its spec as `nsdash spawn` does: the tree must exist
    tree.mkdir()
    actions = RecordingActions()
    app = sample_app(actions=actions)
    async with app.run_test(size=(120, 40)) as pilot:
        await feed_sample(app, pilot)
        await pilot.press("s")
        await wait_for_screen(pilot, SpawnScreen, what="form")
        form = app.screen
        form.query_one("#spawn-tree").value = str(tree)
        form.query_one("#spawn-name").value = "demo-busybox"
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, SpawnScreen)
        assert "already running" in str(form.query_one("#spawn-error").render())
        form.query_one("#spawn-name").value = "web"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: actions.calls, what="spawn call")
        spec = actions.calls[0][1]
        assert spec.machine == "web" and spec.directory == tree and spec.boot


async def test_spawn_form_shows_what_the_nspawn_file_sets_and_nsdash_does_not_apply(tmp_path):
    tree = tmp_path / "warnbox"
    tree.mkdir()
    (tmp_path / "warnbox.nspawn").write_text("[Exec]\nFancy=1\nHostname=fromfile\n")
    actions = RecordingActions()
    app = sample_app(actions=actions)
    async with app.run_test(size=(120, 40)) as pilot:
        await feed_sample(app, pilot)
        await pilot.press("s")
        await wait_for_screen(pilot, SpawnScreen, what="form")
        app.screen.query_one("#spawn-tree").value = str(tree)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: actions.calls, what="spawn call")
        assert actions.calls[0][1].hostname == "fromfile"
        assert any("Fancy=" in str(n.message) for n in app._notifications)


async def test_units_key_opens_the_selected_machines_units():
    from nsdash.tui.screens.units import UnitsScreen

    app = sample_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed_sample(app, pilot)
        await pilot.press("u")
        assert isinstance(app.screen, UnitsScreen)
        assert app.screen.machine == app.selected
        # The sample machine has no bus: the screen says so and the app keeps running.
        await wait_for(pilot, lambda: len(app._notifications) > 0, what="a notification")
        assert app.is_running


def shown(table, row: int) -> str:
    """The text the table paints for data row ROW (after the header), as the screen gets it."""
    return table.render_line(table.header_height + row).text


async def test_table_paints_changed_and_moved_rows_from_the_new_data():
    """Rows are cached per row and per cell: a changed figure and a re-sort must still show the new data."""
    app = sample_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await feed_sample(app, pilot)
        table = app.screen.query_one(CpuTable)
        before = [shown(table, i) for i in range(table.row_count)]
        assert not any("/init.scope" in line and "90.0" in line for line in before)
        rows = tuple(r._replace(cpu_percent=90.0) if r.path == "/init.scope" else r for r in sd.ROWS)
        app.post_message(SnapshotReady(sd.snapshot(9)._replace(rows=rows)))
        await pilot.pause()
        lines = [shown(table, i) for i in range(table.row_count)]
        at = order(table).index("/init.scope")
        assert "/init.scope" in lines[at] and "90.0" in lines[at]
        for i, path in enumerate(order(table)):  # every row painted where it now stands
            assert lines[i].lstrip().startswith(str(table.get_cell(path, "path"))), (i, path, lines[i])
        # A figure that changes without moving its row (memory, sorted by %CPU) is painted too.
        still = order(table)[-1]
        rows = tuple(r._replace(memory=7 << 30) if r.path == still else r for r in rows)
        app.post_message(SnapshotReady(sd.snapshot(10)._replace(rows=rows)))
        await pilot.pause()
        assert order(table)[-1] == still and "7.0G" in shown(table, table.row_count - 1)


async def test_clicking_a_table_row_puts_the_cursor_on_it():
    app = sample_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await feed_sample(app, pilot)
        table = app.screen.query_one(CpuTable)
        top = table.content_region.y - table.region.y + table.header_height  # border, then the header
        await pilot.click(CpuTable, offset=(4, top + 2))
        await pilot.pause()
        assert table.cursor_row == 2 and table.selected_path() == order(table)[2]


async def test_the_poller_walks_the_tree_every_refresh_only_while_the_tree_has_focus():
    from nsdash.tui.poller import TREE_EVERY, Poller

    class Readers:
        tree_every = TREE_EVERY

        def snapshot(self):
            return sd.snapshot(0)

        def open_journal(self, machines):
            raise NsdashError("no journal here")

        def close(self):
            pass

    app = sample_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await feed_sample(app, pilot)
        readers = Readers()
        app.poller = Poller(readers, app.post_message)  # never started: only its settings are used
        try:
            app.screen.query_one(CgroupTree).focus()
            await pilot.pause()
            assert readers.tree_every == 1
            app.screen.query_one(CpuTable).focus()
            await pilot.pause()
            assert readers.tree_every == TREE_EVERY
        finally:
            app.poller.stop()
            app.poller = None


async def test_panels_resize_with_the_keys_and_stack_again_when_narrow():
    app = sample_app()
    async with app.run_test(size=(160, 50)) as pilot:
        await feed_sample(app, pilot)
        screen = app.screen
        machines, cpu = screen.query_one(MachineList), screen.query_one(CpuTable)
        top, bottom = screen.query_one("#top-row"), screen.query_one("#bottom-row")
        assert abs(machines.region.width - cpu.region.width) <= 1  # 1fr each
        cpu.focus()
        await pilot.press("greater_than_sign", "greater_than_sign")
        await pilot.pause()
        assert cpu.region.width > 1.8 * machines.region.width  # 2fr against 1fr
        before = top.region.height
        await pilot.press("right_square_bracket")
        await pilot.pause()
        assert top.region.height > before and top.region.height + bottom.region.height <= 50
        for _ in range(40):  # never below half a share, never vanishing
            await pilot.press("less_than_sign")
        await pilot.pause()
        assert 0 < cpu.region.width < machines.region.width
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert cpu.region.width == machines.region.width == 80  # stacked: the whole width each
        await pilot.resize_terminal(160, 50)
        await pilot.pause()
        assert 0 < cpu.region.width < machines.region.width  # the chosen sizes are back


def test_a_panel_share_stays_within_its_bounds():
    from nsdash.tui.screens.panels import LARGEST, SMALLEST, resized

    assert resized(1.0, 0.5) == 1.5 and resized(1.0, -0.5) == 0.5
    assert resized(SMALLEST, -0.5) == SMALLEST and resized(LARGEST, 0.5) == LARGEST


async def test_what_arrives_after_the_screens_are_gone_is_dropped():
    """A snapshot, journal batch or console end still queued while the app quits has no screen
    to go to (seen as ScreenStackError ending a real test under load): dropped, never raised."""
    from nsdash.tui.widgets.console_pane import ConsolePane

    app = sample_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed_sample(app, pilot, steps=1)
    assert not app.screen_stack
    app.on_snapshot_ready(SnapshotReady(sd.snapshot(1)))
    app.on_journal_lines(JournalLines(("demo-debian",), sd.JOURNAL, reset=False))
    app.on_console_pane_ended(ConsolePane.Ended("demo-debian", "the console ended"))
    assert app.snapshot.machines  # the snapshot itself was taken; only showing it was skipped


async def test_tables_take_rows_before_their_own_mount_ran():
    """The dashboard shows the snapshot it has as its screen mounts, which can be before a
    table's on_mount added its columns (seen in CI: 'More values provided than there are
    columns.'): the first update adds them."""
    from textual.app import App

    from nsdash.tui.widgets.image_list import ImageList

    app: App = App()  # a bare app: nothing of the dashboard's updates these tables meanwhile
    async with app.run_test(size=(120, 40)) as pilot:
        machines, cpu, images = MachineList(), CpuTable(), ImageList()
        waits = [app.screen.mount(table) for table in (machines, cpu, images)]  # in the DOM, not yet mounted
        assert not machines.columns and not cpu.columns and not images.columns
        machines.update_machines(sd.snapshot(0).machines, lambda name: [])
        cpu.update_rows(sd.snapshot(0).rows, {})
        images.update_images(sd.IMAGES)
        for wait in waits:
            await wait
        await pilot.pause()
        assert machines.row_count == len(sd.snapshot(0).machines) and cpu.row_count == len(sd.snapshot(0).rows)
        assert len(machines.columns) == 6 and images.row_count == len(sd.IMAGES)


async def test_the_confirmation_names_its_machine_and_takes_only_that_name():
    """The question and its hint name the machine acted on; another machine's name, typed key by
    key, or the keys a terminal's answers (DA, DSR, OSC 52) would send, confirm nothing."""
    from textual.widgets import Button, Input, Static

    actions = RecordingActions()
    app = sample_app(actions=actions)
    async with app.run_test(size=(120, 40)) as pilot:
        await feed_sample(app, pilot)
        assert app.selected == "demo-busybox"
        await pilot.press("o")
        # composed and mounted before its widgets are queried (a pushed screen is on the stack first)
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.screen.is_mounted,
                       what="the confirmation")
        screen = app.screen
        assert str(screen.query_one("#confirm-question", Static).render()) == "Power off machine 'demo-busybox'?"
        assert "Type demo-busybox and press Enter" in str(screen.query_one("#confirm-hint", Static).render())
        typed = screen.query_one("#confirm-typed", Input)
        yes = screen.query_one("#confirm-yes", Button)
        for stray in ("demo-debian", "[>0;95;0c", "[12;40R", "]52;c;ZGVtby1idXN5Ym94", "demo-busybo", "demo-busybox2"):
            typed.value = ""
            await pilot.press(*("minus" if c == "-" else c for c in stray), "enter")
            await pilot.pause()
            assert typed.value == stray and yes.disabled, (stray, typed.value)
            assert app.screen is screen and actions.calls == [], stray
        typed.value = ""
        await pilot.press(*("minus" if c == "-" else c for c in "demo-busybox"))
        await pilot.pause()
        assert not yes.disabled
        await pilot.press("enter")
        await wait_for(pilot, lambda: actions.calls == [("poweroff", "demo-busybox")], what="the poweroff")
        assert not isinstance(app.screen, ConfirmScreen)
