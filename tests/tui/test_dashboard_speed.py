"""The dashboard's start-up and at-rest mechanisms (issue 16), each shown to work, none timed:
the collector held until the first full frame; processes coming and going in the tree
repainting their pane without laying the screen out again."""

from __future__ import annotations

import gc

from _paintkit import open_system_slice, painted_anew, painted_lines, with_pids
from tuikit import feed_sample, sample_app

from nsdash.monitor.tree import CgroupNode
from nsdash.tui import gcpause
from nsdash.tui import sample_data as sd
from nsdash.tui.messages import SnapshotReady
from nsdash.tui.widgets.cgroup_tree import CgroupTree
from nsdash.tui.widgets.cpu_table import CpuTable


def test_gcpause_holds_until_released_and_only_what_it_held():
    assert gc.isenabled()
    try:
        gcpause.hold()
        assert not gc.isenabled() and gcpause.held()
        gcpause.release()
        assert gc.isenabled() and not gcpause.held()
        gcpause.release()  # twice: nothing more
        assert gc.isenabled()
        gc.disable()  # someone else's: hold() neither takes it over nor release() undoes it
        gcpause.hold()
        assert not gcpause.held()
        gcpause.release()
        assert not gc.isenabled()
    finally:
        gcpause.untended()
        gc.enable()
        gc.unfreeze()


def test_after_release_full_collections_run_only_when_tended_and_no_key_waits(monkeypatch):
    """A flood's journal lines fill the old generation (issue 15): Python's own rule ran a full
    collection over them every few seconds, 40-90 ms with the UI stopped, keys waiting.  After
    release none runs by itself; gcpause.tend runs one when Python would have, at most every
    FULL_EVERY seconds, and not while a key waits for its frame."""
    clock = [1000.0]
    monkeypatch.setattr(gcpause, "_clock", lambda: clock[0])
    thresholds = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # CPython's own, whatever an earlier test in the process left
    full: list[int] = []

    def seen(phase: str, info: dict) -> None:
        if phase == "stop" and info["generation"] == 2:
            full.append(info["collected"])

    gc.callbacks.append(seen)
    try:
        gcpause.hold()
        gcpause.release()
        full.clear()
        kept = [[i] for i in range(400_000)]  # containers that live on, as a flood's lines do
        assert full == []  # Python's rule would have collected the old generation by now
        assert gc.get_count()[2] >= gcpause.FULL_AFTER
        assert not gcpause.tend(busy=False)  # not FULL_EVERY since the last (release's)
        clock[0] += gcpause.FULL_EVERY
        assert not gcpause.tend(busy=True)  # a key waits for its frame
        assert gcpause.tend(busy=False) and len(full) == 1
        assert not gcpause.tend(busy=False)  # just ran
        assert len(kept) == 400_000
    finally:
        gc.callbacks.remove(seen)
        gcpause.untended()
        gc.enable()
        gc.unfreeze()
    assert gc.get_threshold()[2] < 1000  # Python's own again
    gc.set_threshold(*thresholds)


async def test_collection_resumes_after_the_first_snapshot_is_painted():
    app = sample_app()
    gcpause.hold()
    try:
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.pause()
            assert not gc.isenabled()  # the app is up, but no snapshot yet: still held
            app.post_message(SnapshotReady(sd.snapshot(0)))
            await pilot.pause()
            await pilot.pause()
            assert gc.isenabled() and not gcpause.held()
            assert gc.get_freeze_count() > 0  # the start-up heap is out of the collector's way
    finally:
        gcpause.release()
        gcpause.untended()
        gc.enable()
        gc.unfreeze()


async def test_a_process_replaced_in_the_tree_repaints_without_a_layout():
    app = sample_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await feed_sample(app, pilot)
        layouts = []
        app.screen.screen_layout_refresh_signal.subscribe(app.screen, lambda screen: layouts.append(screen))
        tree = app.screen.query_one(CgroupTree)
        spared = tree.layouts_spared
        # /init.scope's process 1 gives way to process 2 with a command line as long: same lines, same width.
        commands = {**sd.COMMANDS, 2: sd.COMMANDS[1]}
        tree.node_for(("cg", "/init.scope")).expand()
        await pilot.pause()
        layouts.clear()
        swapped = with_pids(sd.TREE, "/init.scope", (2,))
        tree.update_tree(swapped, commands, dict(sd.MACHINE_OF))
        await pilot.pause()
        await pilot.pause()
        assert tree.node_for(("pid", 2)) is not None and tree.node_for(("pid", 1)) is None
        assert tree.layouts_spared > spared and layouts == []


async def test_a_process_more_in_the_tree_repaints_its_pane_without_a_layout():
    """One process more is one line more: a new virtual size, which Textual lays the whole screen
    out for (a process started anywhere on the host did that at rest).  The pane's box comes
    from the stylesheet: its scrollbar takes the new size and the screen is not laid out."""
    app = sample_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await feed_sample(app, pilot)
        tree = app.screen.query_one(CgroupTree)
        many = CgroupNode("/", (CgroupNode("/init.scope", (), (1,)),
                                *(CgroupNode(f"/s{i}.scope", (), ()) for i in range(60))), ())
        tree.update_tree(many, dict(sd.COMMANDS), {})
        tree.node_for(("cg", "/init.scope")).expand()
        await pilot.pause()
        await pilot.pause()
        assert tree.show_vertical_scrollbar  # a scrollbar already: it stays, only its thumb changes
        layouts = []
        app.screen.screen_layout_refresh_signal.subscribe(app.screen, lambda screen: layouts.append(screen))
        lines = tree.virtual_size.height
        tree.update_tree(with_pids(many, "/init.scope", (1, 2)), {**sd.COMMANDS, 2: "sleep 1"}, {})
        await pilot.pause()
        await pilot.pause()
        assert tree.node_for(("pid", 2)) is not None
        assert tree.virtual_size.height == lines + 1
        assert tree.vertical_scrollbar.window_virtual_size == lines + 1
        assert layouts == []


async def test_a_cgroup_more_in_the_cpu_table_repaints_its_pane_without_a_layout():
    """A CPU-table row added or removed (cgroups churning) is a new virtual size; the pane's box
    comes from the stylesheet, so its scrollbar takes the new size and the screen is not laid out."""
    app = sample_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await feed_sample(app, pilot)
        table = app.screen.query_one(CpuTable)
        assert table.show_vertical_scrollbar  # in 80x24 the sample's rows overflow the pane already
        layouts = []
        app.screen.screen_layout_refresh_signal.subscribe(app.screen, lambda screen: layouts.append(screen))
        height = table.virtual_size.height
        extra = sd.ROWS[-1]._replace(path="/extra.slice")
        table.update_rows((*sd.ROWS, extra), dict(sd.MACHINE_OF))
        await pilot.pause()
        await pilot.pause()
        assert table.row_count == len(sd.ROWS) + 1
        assert table.virtual_size.height == height + 1
        assert table.vertical_scrollbar.window_virtual_size == height + 1
        table.update_rows(sd.ROWS, dict(sd.MACHINE_OF))
        await pilot.pause()
        await pilot.pause()
        assert table.row_count == len(sd.ROWS) and table.virtual_size.height == height
        assert layouts == []


async def test_a_scrollbar_appearing_is_still_laid_out():
    """Where the scrollbars do change, the screen is laid out as before: the tree outgrowing
    its pane gains a scrollbar."""
    app = sample_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await feed_sample(app, pilot)
        tree = app.screen.query_one(CgroupTree)
        small = CgroupNode("/", (CgroupNode("/init.scope", (), (1,)),), ())
        tree.update_tree(small, dict(sd.COMMANDS), {})
        await pilot.pause()
        await pilot.pause()
        assert not tree.show_vertical_scrollbar
        layouts = []
        app.screen.screen_layout_refresh_signal.subscribe(app.screen, lambda screen: layouts.append(screen))
        many = CgroupNode("/", tuple(CgroupNode(f"/s{i}.scope", (), ()) for i in range(60)), ())
        tree.update_tree(many, {}, {})
        await pilot.pause()
        await pilot.pause()
        assert layouts and tree.show_vertical_scrollbar


def test_the_machine_list_is_read_whole_only_when_a_state_file_or_a_supervisor_changes(tmp_path, monkeypatch):
    import fcntl
    import os

    from nsdash.machines import state as st
    from nsdash.monitor import host
    from nsdash.tui.poller import HostReaders

    monkeypatch.setenv("NSDASH_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(host, "MACHINES_REREAD", 3600.0)  # only a change reads the list again
    db = tmp_path / "machines" / "db"
    db.mkdir(parents=True)
    fields = dict(name="db", root="/", leader=None, cgroup="/custom/db", supervisor=1,
                  started="2026-01-01T00:00:00Z", since="2026-01-01T00:00:00Z")
    st.write_state(db, st.MachineState(**fields))
    readers = HostReaders(with_machined=False)
    lock = -1
    try:
        assert [(m.name, m.state) for m in readers.snapshot().machines] == [("db", "orphan")]
        readers.snapshot()
        readers.snapshot()
        assert readers.machine_reads == 1  # nothing changed: the list as read
        lock = os.open(db / st.LOCK_FILE, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC)
        fcntl.flock(lock, fcntl.LOCK_EX)  # a supervisor holds the entry
        assert [m.state for m in readers.snapshot().machines] == ["running"]
        assert readers.machine_reads == 2
        st.write_state(db, st.MachineState(**{**fields, "state": "degraded"}))
        assert [m.state for m in readers.snapshot().machines] == ["degraded"]
        _entry(tmp_path, "web", fields)
        assert [m.name for m in readers.snapshot().machines] == ["db", "web"]
        assert readers.machine_reads == 4
        readers.snapshot()
        assert readers.machine_reads == 4
    finally:
        readers.close()
        if lock >= 0:
            os.close(lock)


def _entry(tmp_path, name: str, fields: dict):
    """A machine's entry as a supervisor makes it (state file only; no lock held)."""
    from nsdash.machines import state as st

    directory = tmp_path / "machines" / name
    directory.mkdir()
    st.write_state(directory, st.MachineState(**{**fields, "name": name}))
    return directory


def test_the_entries_are_looked_at_only_when_the_kernel_says_one_changed(tmp_path, monkeypatch):
    """At rest no entry is stat'ed or its lock tried (StateWatch: one read of an inotify
    descriptor); a supervisor killed, a state file replaced, an entry made or removed still
    shows at the very next refresh."""
    import signal
    import subprocess
    import sys

    from nsdash.machines import registry
    from nsdash.machines import state as st
    from nsdash.monitor import host
    from nsdash.tui.poller import HostReaders

    monkeypatch.setenv("NSDASH_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(host, "MACHINES_REREAD", 3600.0)
    db = tmp_path / "machines" / "db"
    db.mkdir(parents=True)
    fields = dict(name="db", root="/", leader=None, cgroup="/custom/db", supervisor=1,
                  started="2026-01-01T00:00:00Z", since="2026-01-01T00:00:00Z")
    st.write_state(db, st.MachineState(**fields))
    # A supervisor as the real one holds its entry: the lock opened for writing, flocked.
    holder = subprocess.Popen(
        [sys.executable, "-S", "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print(flush=True); sys.stdin.read()", str(db / st.LOCK_FILE)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    readers = HostReaders(with_machined=False)
    try:
        assert holder.stdout is not None and holder.stdout.readline()
        assert [m.state for m in readers.snapshot().machines] == ["running"]
        looks = readers.state_looks
        for _ in range(5):
            assert [m.state for m in readers.snapshot().machines] == ["running"]
        assert readers.state_looks == looks  # at rest: no look
        st.read_state(db)  # a reader (a client, `nsdash list`) raises nothing
        assert st.supervisor_alive(db)
        readers.snapshot()
        assert readers.state_looks == looks
        holder.send_signal(signal.SIGKILL)  # dies without a word: only its lock's close says so
        holder.wait()
        assert [m.state for m in readers.snapshot().machines] == ["orphan"]
        assert readers.state_looks == looks + 1
        st.write_state(db, st.MachineState(**{**fields, "cgroup": "/custom/db2"}))
        assert [m.cgroup for m in readers.snapshot().machines] == ["/custom/db2"]
        web = _entry(tmp_path, "web", fields)
        assert [m.name for m in readers.snapshot().machines] == ["db", "web"]
        (web / st.STATE_FILE).unlink()
        web.rmdir()
        assert [m.name for m in readers.snapshot().machines] == ["db"]
        reads = readers.machine_reads
        readers.snapshot()
        assert readers.machine_reads == reads
        # The list read again for time alone (machined's machines, addresses): the entries as read.
        monkeypatch.setattr(host, "MACHINES_REREAD", 0.0)
        entries = []
        read_entry = registry.read_entry
        monkeypatch.setattr(registry, "read_entry", lambda name: entries.append(name) or read_entry(name))
        for _ in range(3):
            assert [m.cgroup for m in readers.snapshot().machines] == ["/custom/db2"]
        assert readers.machine_reads == reads + 3 and entries == []
        st.write_state(db, st.MachineState(**{**fields, "cgroup": "/custom/db3"}))
        assert [m.cgroup for m in readers.snapshot().machines] == ["/custom/db3"]
        assert entries == ["db"]
    finally:
        readers.close()
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_an_entry_made_as_the_entries_are_listed_is_watched(tmp_path, monkeypatch):
    """An entry made just after the look listed the entries (a machine started then): the
    next refresh shows it, and its later changes show at the refresh after each (its own
    watch); listed before the machines directory was watched, it was in neither the listing
    nor the queue, and its state stayed as first read while the watch stayed quiet."""
    from nsdash.machines import state as st
    from nsdash.monitor import host
    from nsdash.tui.poller import HostReaders

    monkeypatch.setenv("NSDASH_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(host, "MACHINES_REREAD", 3600.0)
    (tmp_path / "machines").mkdir()
    fields = dict(name="late", root="/", leader=None, cgroup="/custom/late", supervisor=None,
                  started="2026-01-01T00:00:00Z", since="2026-01-01T00:00:00Z")
    entry_names = st.entry_names

    def listing_then_a_start() -> list[str]:
        names = entry_names()
        if not (tmp_path / "machines" / "late").exists():
            _entry(tmp_path, "late", fields)
        return names

    monkeypatch.setattr(st, "entry_names", listing_then_a_start)
    readers = HostReaders(with_machined=False)
    try:
        readers.snapshot()  # listed none; "late" made right after
        assert [m.cgroup for m in readers.snapshot().machines] == ["/custom/late"]
        st.write_state(tmp_path / "machines" / "late", st.MachineState(**{**fields, "cgroup": "/custom/late2"}))
        assert [m.cgroup for m in readers.snapshot().machines] == ["/custom/late2"]
    finally:
        readers.close()


async def test_the_dashboard_is_styled_once_on_the_way_to_its_first_frame(monkeypatch):
    """No class changes between compose and the first frame: the screen is born with its
    breakpoint class and the journal pane born following.  Each such change restyled the
    subtree again (Textual's update_node_styles).  Nor does the start's ScreenResume restyle
    the screen and everything on it, styled as they were mounted; the focused panel still
    wears its focus mark (Textual's auto-focus gave it the focus: restyled for the mark)."""
    from textual.dom import DOMNode

    from nsdash.tui.screens.dashboard import DashboardScreen
    from nsdash.tui.widgets.journal_pane import JournalPane
    from nsdash.tui.widgets.machine_list import MachineList

    restyled: list[str] = []
    original = DOMNode.update_node_styles

    def spy(self, animate: bool = True) -> None:
        if isinstance(self, DashboardScreen | JournalPane):
            restyled.append(type(self).__name__)
        original(self, animate)

    monkeypatch.setattr(DOMNode, "update_node_styles", spy)
    app = sample_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await feed_sample(app, pilot, steps=1)
        screen = app.screen
        assert isinstance(screen, DashboardScreen) and screen.has_class("-wide")
        assert app.screen_stack == [screen]  # the default screen itself: none under it to lay out
        assert screen.query_one(JournalPane).has_class("-following")
        machines, cpu = screen.query_one(MachineList), screen.query_one(CpuTable)
        assert app.screen.focused is machines and machines.has_class("-focused")
        assert machines.styles.border_top != cpu.styles.border_top  # the mark is on screen
        assert machines.styles.border_left == cpu.styles.border_left
    assert restyled == [], restyled


async def test_the_journal_query_box_is_mounted_when_first_asked_for():
    """The first frame composes no Input (the journal pane's query box: its styles parsed and
    applied, its widget mounted, all for a box hidden until u or / is pressed); the first ask
    mounts it, focused, and later asks reuse it."""
    from textual.widgets import Input

    from nsdash.tui.widgets.follow_log import FollowLog
    from nsdash.tui.widgets.journal_pane import JournalPane

    app = sample_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await feed_sample(app, pilot, steps=1)
        assert list(app.screen.query(Input)) == []
        pane = app.screen.query_one(JournalPane)
        app.screen.set_focus(pane.query_one(FollowLog))
        await pilot.pause()
        await pilot.press("slash")
        await pilot.pause()
        box = pane.query_one("#journal-query", Input)
        assert app.screen.focused is box and not box.has_class("-hidden")
        await pilot.press("x", "enter")
        await pilot.pause()
        assert pane.filter.search == "x" and box.has_class("-hidden")
        app.screen.set_focus(pane.query_one(FollowLog))
        await pilot.press("u")
        await pilot.pause()
        assert list(pane.query(Input)) == [box] and app.screen.focused is box
        assert box.placeholder.startswith("unit")


async def test_a_narrow_terminal_gives_a_narrow_screen_from_the_start():
    from nsdash.tui.screens.panels import breakpoint_class

    app = sample_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.screen.has_class("-narrow") and not app.screen.has_class("-wide")
    assert breakpoint_class(109, app.HORIZONTAL_BREAKPOINTS) == "-narrow"
    assert breakpoint_class(110, app.HORIZONTAL_BREAKPOINTS) == "-wide"
    assert breakpoint_class(5, [(10, "-x")]) is None


async def test_an_idle_second_repaints_nothing(monkeypatch):
    """At rest (the same figures again, a new tree object every other refresh, the same status)
    a refresh asks no widget to repaint and the compositor renders nothing.  Until the machine
    list's CPU sparklines are full (SPARK_WIDTH bars of SPARK_STEP samples) they move on: that
    repaints their rows, and only those."""

    from textual._compositor import Compositor
    from textual.widget import Widget

    from nsdash.tui.widgets.machine_list import SPARK_STEP, SPARK_WIDTH

    asked: list[str] = []
    renders: list[int] = []
    refresh, render_update = Widget.refresh, Compositor.render_update

    def spy_refresh(self, *regions, **kw):
        asked.append(type(self).__name__)
        return refresh(self, *regions, **kw)

    def spy_render(self, *a, **kw):
        update = render_update(self, *a, **kw)
        if update is not None:
            renders.append(1)
        return update

    app = sample_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await feed_sample(app, pilot)
        base = app.snapshot

        async def refresh_once(i: int) -> None:
            # Every other refresh the poller walks the tree again: an equal tree, a new object.
            tree = with_pids(base.tree, "/", base.tree.pids) if i % 2 else base.tree
            app.post_message(SnapshotReady(base._replace(timestamp=base.timestamp + i, tree=tree)))
            await pilot.pause()
            await pilot.pause()

        full = SPARK_WIDTH * SPARK_STEP
        monkeypatch.setattr(Widget, "refresh", spy_refresh)
        for i in range(1, SPARK_STEP + 1):  # (a new bar within SPARK_STEP refreshes)
            await refresh_once(i)
        assert set(asked) == {"MachineList"}, asked  # the sparklines move on
        for i in range(SPARK_STEP + 1, full + 2):
            await refresh_once(i)
        monkeypatch.setattr(Compositor, "render_update", spy_render)
        asked.clear()
        for i in range(full + 2, full + 6):
            await refresh_once(i)
        assert asked == [] and renders == []


async def test_a_snapshot_that_came_before_the_panels_is_in_the_first_frame(monkeypatch):
    """The poller's first snapshot often reaches the app before the dashboard's panels are
    composed (its apply then finds no panel).  The dashboard shows it as it mounts, so the
    first frame painted is a full one, not the empty panels painted again and again until
    Textual's ScreenResume."""
    from textual._compositor import Compositor

    from nsdash.tui.widgets.machine_list import MachineList

    rows_at_render: list[int] = []
    render_update = Compositor.render_update

    def spy(self, *a, **kw):
        rows_at_render.append(app.screen.query_one(MachineList).row_count)
        return render_update(self, *a, **kw)

    monkeypatch.setattr(Compositor, "render_update", spy)
    app = sample_app()
    app.snapshot = sd.snapshot(1)  # taken in before the screen exists (on_snapshot_ready: NoMatches)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()
        # Rows shown from the screen's on_mount still tell the app which machine is selected.
        assert app.selected == sd.MACHINES[0].name
    assert rows_at_render and rows_at_render[0] == len(sd.MACHINES), rows_at_render


async def test_no_timer_runs_at_rest(monkeypatch):
    """Between two refreshes nothing on the UI thread wakes by itself: no cursor blinks, no
    animation or clock ticks (each a wake-up of the loop and a look at the screen)."""
    import asyncio

    from textual.timer import Timer

    ticks: list[str | None] = []
    tick = Timer._tick

    async def spy(self, *, next_timer, count):
        ticks.append(self.name)
        return await tick(self, next_timer=next_timer, count=count)

    app = sample_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await feed_sample(app, pilot)
        await pilot.pause()
        monkeypatch.setattr(Timer, "_tick", spy)
        await asyncio.sleep(1.2)  # longer than a blink (0.5 s): no refresh comes in this test
        assert ticks == [], ticks


def test_a_machine_on_the_host_network_is_looked_up_once_a_boot(monkeypatch):
    """The poller asks whether a machine has a network of its own once per boot (leader),
    not at every refresh; a new leader (a reboot) is asked again."""
    import os

    from nsdash.monitor import net
    from nsdash.system import namespaces
    from nsdash.tui.messages import MachineInfo
    from nsdash.tui.poller import HostReaders

    asked: list[int] = []
    read: list[int] = []
    shares, counters = namespaces.shares_host_namespace, net.link_counters
    monkeypatch.setattr(namespaces, "shares_host_namespace", lambda pid, ns, *a: asked.append(pid) or shares(pid, ns, *a))
    monkeypatch.setattr(net, "link_counters", lambda pid, *a: read.append(pid) or counters(pid, *a))
    readers = HostReaders(with_machined=False)
    try:
        me = MachineInfo("here", "running", leader=os.getpid())  # this process: the host's network
        for _ in range(3):
            assert readers._with_links((me,)) == (me,)
        assert asked == [os.getpid()] and read == []
        rebooted = MachineInfo("here", "running", leader=os.getppid())
        readers._with_links((rebooted,))
        assert asked == [os.getpid(), os.getppid()]
    finally:
        readers.close()


async def test_a_new_order_repaints_only_the_rows_that_moved(monkeypatch):
    """cgtop's order changes at most refreshes of a busy host, mostly a row or two trading
    places; DataTable.sort() repainted every row of the table each time (FastTable.put_in_order)."""
    from test_fast_table_cache import painted, uncached

    app = sample_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await feed_sample(app, pilot)
        table = app.screen.query_one(CpuTable)
        before = table.row_keys()
        asked: list[int] = []
        render_line = CpuTable.render_line
        monkeypatch.setattr(CpuTable, "render_line", lambda self, y: asked.append(y) or render_line(self, y))
        # The BusyBox machine overtakes the Debian one: the two trade places, each with its children.
        busier = tuple(r._replace(cpu_percent=20.0) if r.path == sd._BB else r for r in sd.ROWS)
        table.update_rows(busier, dict(sd.MACHINE_OF))
        await pilot.pause()
        await pilot.pause()
        after = table.row_keys()
        moved = {i for i, (was, now) in enumerate(zip(before, after, strict=True)) if was != now}
        assert moved and len(moved) < len(after) - 2, (before, after)
        header = table.header_height
        assert asked and {y - header for y in asked} == moved  # those lines, no header, no other row
        monkeypatch.undo()
        assert painted(table) == uncached(table)  # and they show the rows in their new places


async def test_a_process_more_in_the_tree_paints_anew_only_the_lines_that_changed(monkeypatch):
    """Tree forgets every painted line when a node comes or goes; the lines that read as before
    (the cgroups above the one that gained a process, here) are taken from CgroupTree's own
    keeping, and what the pane shows is what a tree painting every line anew shows."""
    from textual.widgets import Tree

    app = sample_app()
    async with app.run_test(size=(140, 40)) as pilot:
        tree = await open_system_slice(app, pilot)
        drawn: list[int] = []
        render_line = Tree.render_line
        monkeypatch.setattr(Tree, "render_line", lambda self, y: drawn.append(y) or render_line(self, y))
        new = with_pids(sd.TREE, "/system.slice", (2,))
        tree.update_tree(new, {**sd.COMMANDS, 2: "sleep 1"}, dict(sd.MACHINE_OF))
        await pilot.pause()
        await pilot.pause()
        lines = [line.node.data for line in tree._tree_lines]
        below = lines.index(("cg", "/system.slice"))
        assert lines[below + 1] == ("pid", 2) and below > 2
        # Painted anew: the root's line (Tree marks the root at every change), the cgroup that
        # gained a process and what is below it; not the lines between.
        assert 0 in drawn and below in drawn and below + 1 in drawn
        assert not set(drawn) & set(range(1, below)), drawn
        monkeypatch.undo()
        shown = painted_lines(tree)
        assert shown == painted_anew(tree)
        assert any("2 sleep 1" in line for line in shown)


async def test_rows_are_ranked_again_only_when_what_ranks_them_changed():
    """cgtop's order (here %CPU to 0.1, as shown) is computed anew only when a row comes or goes
    or a ranked cell changes: not at a refresh where only other figures moved."""
    app = sample_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await feed_sample(app, pilot)
        table = app.screen.query_one(CpuTable)
        assert table.order == "cpu"
        ranked = table.orderings
        table.update_rows(sd.ROWS, dict(sd.MACHINE_OF))  # the same figures
        more_memory = tuple(r._replace(memory=(r.memory or 0) + 4096) for r in sd.ROWS)
        table.update_rows(more_memory, dict(sd.MACHINE_OF))  # memory moved, %CPU did not
        hardly = tuple(r._replace(cpu_percent=r.cpu_percent + 0.01) if r.cpu_percent else r for r in more_memory)
        table.update_rows(hardly, dict(sd.MACHINE_OF))  # %CPU moved less than is shown
        assert table.orderings == ranked
        busier = tuple(r._replace(cpu_percent=20.0) if r.path == sd._BB else r for r in hardly)
        table.update_rows(busier, dict(sd.MACHINE_OF))
        assert table.orderings == ranked + 1
        assert table.row_keys().index(sd._BB) < table.row_keys().index(sd._DEB)  # and ranked it anew
        table.update_rows(busier[:-1], dict(sd.MACHINE_OF))  # a row gone
        assert table.orderings == ranked + 2
        table.action_order("memory")  # ranked on bytes, shown rounded: every refresh
        await pilot.pause()
        ranked = table.orderings
        table.update_rows(busier[:-1], dict(sd.MACHINE_OF))
        assert table.orderings == ranked + 1
