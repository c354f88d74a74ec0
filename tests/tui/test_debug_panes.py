"""The dashboard's trace and profile panes over real BusyBox machines (root), and their keys."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tuikit import sample_app, wait_for, wait_for_screen

from nsdash.inside.debugging.perf import Profile, parse_script
from nsdash.inside.debugging.strace import Line
from nsdash.launcher.spec import ContainerSpec
from nsdash.machines import client
from nsdash.tui.app import NsdashApp
from nsdash.tui.screens.debugging import ProfileScreen, TraceScreen
from nsdash.tui.widgets.cgroup_tree import CgroupTree
from nsdash.tui.widgets.profile_pane import ProfilePane
from nsdash.tui.widgets.trace_pane import TracePane
from tests.conftest import teardown_machine
from tests.integration.test_debug import LOOP, SPIN, descriptors_past_fd_setsize, tracers_of

SIZE = (160, 48)


def _stop(name: str) -> None:
    teardown_machine(name)  # the suite's teardown: terminate, and clean up whatever that leaves


def _start(tree: Path, name: str, *command: str) -> str:
    client.spawn(ContainerSpec(directory=tree, machine=name, command=list(command)), detach=True, notice=None)
    return name


@pytest.fixture
def looping(busybox_tree, machine_name):
    yield _start(busybox_tree, machine_name, "/bin/sh", "-c", LOOP)
    _stop(machine_name)


@pytest.fixture
def spinning(busybox_tree, machine_name):
    (busybox_tree / "spin-tui").write_text(SPIN)
    (busybox_tree / "spin-tui").chmod(0o755)
    yield _start(busybox_tree, machine_name, "/spin-tui")
    _stop(machine_name)


async def _press(app, pilot, key: str, screen_type: type, pane_type: type):
    """Press KEY: the debugging screen it opens and that screen's pane."""
    await pilot.press(key)
    await wait_for_screen(pilot, screen_type, what=f"the {screen_type.__name__}")
    return app.screen, app.screen.query_one(pane_type)


async def _open(app, pilot, machine: str, key: str, screen_type: type, pane_type: type):
    """Select MACHINE in the dashboard's list and press KEY (_press)."""
    await wait_for(pilot, lambda: machine in app.machine_names(), what="the machine in the list")
    app.selected = machine
    return await _press(app, pilot, key, screen_type, pane_type)


async def _cursor_on(app, pilot, machine: str, host_pid: int) -> None:
    """The cgroup tree's cursor on process HOST_PID of MACHINE, its cgroup expanded."""
    from nsdash.inside.debugging.pids import MachineProcesses
    from nsdash.inside.target import resolve

    cgroup = MachineProcesses(resolve(machine)).cgroup
    tree = app.screen.query_one(CgroupTree)

    def shown() -> bool:
        tree.select_path(cgroup)
        node = tree.node_for(("cg", cgroup))
        if node is not None:
            node.expand()
        return tree.node_for(("pid", host_pid)) is not None

    await wait_for(pilot, shown, what=f"process {host_pid} in the tree")
    tree.focus()

    def on_it() -> bool:
        node = tree.node_for(("pid", host_pid))
        if tree.cursor_node is not node:
            tree.move_cursor(node)
            return False
        return True

    await wait_for(pilot, on_it, what="the cursor on the process")


@pytest.mark.integration
async def test_the_trace_pane_follows_a_real_machine_and_stops_cleanly(looping):
    app = NsdashApp(interval=0.5)
    async with app.run_test(size=SIZE) as pilot:
        screen, pane = await _open(app, pilot, looping, "T", TraceScreen, TracePane)
        await wait_for(pilot, lambda: any('"/etc/hostname"' in t for t in pane.visible_text()),
                       what=lambda: f"the loop's openat in the pane; state {pane.state}, {pane.visible_text()[-5:]}")
        assert pane.state.startswith("tracing all")
        # The machine's PIDs: its init is 1 (the host's number is the leader's, far from 1).
        assert any(re.match(r"^1 +\S", t) for t in pane.visible_text())

        await pilot.press("space")  # pause: lines are kept, not shown
        assert pane.paused and "paused" in str(pane.border_subtitle)
        frozen = len(pane.visible_text())
        await wait_for(pilot, lambda: pane._unshown > 0, what="lines arriving while paused")
        assert len(pane.visible_text()) == frozen
        await pilot.press("space")
        await wait_for(pilot, lambda: len(pane.visible_text()) > frozen, what="the kept lines shown on resume")

        pane.search = "hostname"  # what "/" + typing sets
        await pilot.pause()
        assert pane.visible_text() and all("hostname" in t.lower() for t in pane.visible_text())

        await pilot.press("escape")  # clears the filter first
        assert pane.search == ""
        await pilot.press("escape")  # then leaves: strace detaches
        await wait_for(pilot, lambda: not isinstance(app.screen, TraceScreen), what="back to the dashboard")
        await wait_for(pilot, screen.done.is_set, what="the strace worker to reap strace")
    assert not tracers_of(looping)


@pytest.mark.integration
async def test_the_trace_pane_shows_lines_in_a_dashboard_holding_many_descriptors(looping):
    # On a busy host the dashboard holds a counter file per cgroup: strace's pipes were numbered past
    # select()'s FD_SETSIZE, its worker died on them and the pane said "tracing" over nothing.
    app = NsdashApp(interval=0.5)
    with descriptors_past_fd_setsize():
        async with app.run_test(size=SIZE) as pilot:
            screen, pane = await _open(app, pilot, looping, "T", TraceScreen, TracePane)
            await wait_for(pilot, lambda: any('"/etc/hostname"' in t for t in pane.visible_text()),
                           what=lambda: f"the loop's openat in the pane; state {pane.state}")
            await pilot.press("escape")
            await wait_for(pilot, screen.done.is_set, what="the strace worker to reap strace")
    assert not tracers_of(looping)


@pytest.mark.integration
async def test_a_trace_worker_that_fails_says_so_and_still_detaches(looping, monkeypatch):
    from nsdash.inside.debugging.strace import StraceRun

    def broken(self, timeout=None):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(StraceRun, "poll", broken)  # what no test can make strace do on demand
    app = NsdashApp(interval=0.5)
    async with app.run_test(size=SIZE) as pilot:
        screen, pane = await _open(app, pilot, looping, "T", TraceScreen, TracePane)
        await wait_for(pilot, lambda: pane.state.startswith("failed: OSError"), what=lambda: f"failed; {pane.state}")
        assert "Input/output error" in str(pane.border_subtitle)
        await wait_for(pilot, lambda: any("strace stopped" in str(n.message) for n in app._notifications),
                       what="the notification")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, TraceScreen), what="back to the dashboard")
        await wait_for(pilot, screen.done.is_set, what="the worker to end")
    assert not tracers_of(looping)  # leaving `with run` on the error detached strace


@pytest.mark.integration
async def test_trace_from_the_cgroup_tree_follows_the_process_under_the_cursor(looping):
    from nsdash.inside.target import resolve

    leader = resolve(looping).leader
    app = NsdashApp(interval=0.5)
    async with app.run_test(size=SIZE) as pilot:
        await _cursor_on(app, pilot, looping, leader)
        screen, pane = await _press(app, pilot, "T", TraceScreen, TracePane)
        await wait_for(pilot, lambda: pane.state.startswith("tracing PID 1 (sh, host PID"),
                       what=lambda: f"the trace of PID 1; state {pane.state}")
        await pilot.press("escape")
        await wait_for(pilot, screen.done.is_set, what="the strace worker to reap strace")
    assert not tracers_of(looping)


@pytest.mark.integration
async def test_the_profile_pane_lists_the_busy_loop_and_writes_a_flame_graph(spinning, tmp_path):
    app = NsdashApp(interval=0.5)
    async with app.run_test(size=SIZE) as pilot:
        screen, pane = await _open(app, pilot, spinning, "P", ProfileScreen, ProfilePane)
        screen.flame_dir = str(tmp_path)
        await wait_for(pilot, lambda: any(n.startswith("spin-tui") for n in pane.rows("processes")), timeout=60,
                       what=lambda: f"the loop in the process list; {pane.rows('processes')}")
        assert "spin-tui (1)" in pane.rows("processes")
        windows = pane.windows
        await wait_for(pilot, lambda: pane.windows > windows, timeout=60, what="a second window (refreshed)")
        await pilot.press("w")
        await wait_for(pilot, lambda: pane.flame is not None, timeout=30, what="the flame graph written")
        assert "spin-tui" in Path(pane.flame).read_text()
        await pilot.press("escape")
        await wait_for(pilot, screen.done.is_set, timeout=30, what="perf to end")
    assert not tracers_of(spinning)


# ---------------------------------------------------------------- without machines

async def test_the_trace_pane_filters_from_what_it_kept():
    app = sample_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = TracePane(title="t")
        await app.screen.mount(pane)
        pane.show([Line("trace", '1     openat(AT_FDCWD</>, "/etc/hostname", O_RDONLY) = 3</etc/hostname>'),
                   Line("message", "strace: Process 1 attached"),
                   Line("trace", "1     read(3</etc/hostname>, \"[bold]x\", 9) = 1")])
        await pilot.pause()
        assert len(pane.visible_text()) == 3
        assert '"[bold]x"' in pane.visible_text()[2]  # shown as written, never as markup
        pane.search = "OPENAT"
        await pilot.pause()
        assert pane.visible_text() == ['1     openat(AT_FDCWD</>, "/etc/hostname", O_RDONLY) = 3</etc/hostname>']


async def test_the_profile_pane_keeps_rows_by_name_and_shows_guest_names_as_text():
    text = "a  5/5\n\t1 [b]hot[/b] (/bin/x)\n\na  5/5\n\t1 [b]hot[/b] (/bin/x)\n\nc  6/6\n\t2 cold (/bin/x)\n"
    app = sample_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = ProfilePane()
        await app.screen.mount(pane)
        pane.show(Profile("cpu-clock", 2.0, tuple(parse_script(text)), {5: 1}))
        await pilot.pause()
        assert pane.rows("functions") == ["[b]hot[/b]", "cold"]
        assert pane.rows("processes") == ["a (1)", "c"]
        assert pane.cumulative().samples and len(pane.cumulative().samples) == 3


async def test_the_footer_and_palette_name_trace_and_profile():
    app = sample_app()
    async with app.run_test(size=SIZE) as pilot:
        keys = {b.key: b.description for b in app.BINDINGS if hasattr(b, "key")}
        assert keys.get("T") == "Trace" and keys.get("P") == "Profile" and keys.get("D") == "gdb"
        from tuikit import feed_sample

        await feed_sample(app, pilot)
        from nsdash.tui.app import MachineCommands

        provider = MachineCommands(app.screen)
        names = [text for text, _, _ in provider._commands()]
        assert any(n.startswith("Trace (strace): ") for n in names)
        assert any(n.startswith("Profile (perf): ") for n in names)


@pytest.fixture
def sleeping(busybox_tree, machine_name):
    yield _start(busybox_tree, machine_name, "/bin/sleep", "1000")
    _stop(machine_name)


@pytest.mark.integration
async def test_gdb_runs_in_a_console_pane_and_detaches_when_left(sleeping):
    from nsdash.inside.target import resolve
    from nsdash.tui.screens.debugging import GdbScreen
    from nsdash.tui.widgets.console_pane import ConsolePane

    leader = resolve(sleeping).leader
    app = NsdashApp(interval=0.5)
    async with app.run_test(size=SIZE) as pilot:
        await _cursor_on(app, pilot, sleeping, leader)
        _, pane = await _press(app, pilot, "D", GdbScreen, ConsolePane)

        def text() -> str:
            return "\n".join(pane.screen_text())

        await wait_for(pilot, lambda: "(gdb)" in text(), timeout=60, what=lambda: f"gdb's prompt; {text()}")
        for key in "info inferiors":
            await pilot.press("space" if key == " " else key)
        await pilot.press("enter")
        await wait_for(pilot, lambda: f"process {leader}" in text(), timeout=30,
                       what=lambda: f"gdb's answer; {text()}")
        traced = Path(f"/proc/{leader}/status").read_text()
        assert re.search(r"^TracerPid:\s+[1-9]", traced, re.M)  # gdb holds it now
        await pilot.press("ctrl+right_square_bracket")  # leave: gdb detaches and quits
        await wait_for(pilot, lambda: not isinstance(app.screen, GdbScreen), what="back to the dashboard")
    status = Path(f"/proc/{leader}/status").read_text()
    assert re.search(r"^TracerPid:\s+0$", status, re.M)
    assert re.search(r"^State:\s+S", status, re.M)  # sleeping again, not left stopped
    assert not tracers_of(sleeping)


@pytest.mark.integration
async def test_a_new_syscall_expression_restarts_strace_with_it(looping):
    app = NsdashApp(interval=0.5)
    async with app.run_test(size=SIZE) as pilot:
        screen, pane = await _open(app, pilot, looping, "T", TraceScreen, TracePane)
        await wait_for(pilot, lambda: any("openat(" in t for t in pane.visible_text()), what="openat lines")
        await pilot.press("e")
        for key in "trace=wait4":
            await pilot.press({"=": "equals_sign"}.get(key, key))
        await pilot.press("enter")
        await wait_for(pilot, lambda: "-- strace -e trace=wait4 --" in pane.visible_text(),
                       what="the restart marker")

        def after_marker() -> list[str]:
            text = pane.visible_text()
            return text[text.index("-- strace -e trace=wait4 --") + 1:]

        await wait_for(pilot, lambda: any("wait4(" in t for t in after_marker()), what="wait4 lines after it")
        first_session = screen._sessions[0]
        await wait_for(pilot, first_session.done.is_set, what="the first strace reaped")
        calls = {t.split()[1].split("(")[0] for t in after_marker()
                 if t[:1].isdigit() and "(" in t.split()[1] and "--- " not in t and "+++" not in t}
        assert calls <= {"wait4", "<..."}, calls  # only what was asked (the added clone() lines hidden)
        assert "-e trace=wait4" in str(pane.border_subtitle)
        await pilot.press("escape")
        await wait_for(pilot, screen.done.is_set, what="every strace reaped")
    assert not tracers_of(looping)


# ---------------------------------------------------------------- the PTY session gdb runs in

def _read_until(session, needle: bytes, timeout: float = 10.0) -> bytes:
    import time

    got = b""
    deadline = time.monotonic() + timeout
    while needle not in got:
        assert time.monotonic() < deadline, got
        chunk = session.read(0.1)
        assert chunk is not None, got
        got += chunk[0]
    return got


def test_a_pty_session_is_a_terminal_both_ways_and_reaps_its_program():
    from nsdash.tui.console.pty_session import PtySession

    s = PtySession(["/bin/sh", "-c", 'stty size; read x; echo "got:$x"; tty -s && echo tty'], 30, 100)
    assert b"30 100" in _read_until(s, b"30 100")  # the pane's size, as the program sees it
    s.send(b"abc\r")
    out = _read_until(s, b"tty\r\n")
    assert b"got:abc" in out
    while s.read(0.5) is not None:  # EOF once it has gone
        pass
    s.close()
    assert s.process.returncode == 0 and s.master == -1


def test_a_pty_session_reads_a_master_numbered_past_select_s_limit():
    from nsdash.tui.console.pty_session import PtySession

    with descriptors_past_fd_setsize():
        s = PtySession(["/bin/sh", "-c", "echo hello-there"], 24, 80)
        assert s.master >= 1024
        assert b"hello-there" in _read_until(s, b"hello-there")
        s.close()
    assert s.process.returncode == 0


def test_a_pty_session_ends_a_program_that_ignores_its_farewell():
    from nsdash.tui.console.pty_session import PtySession

    s = PtySession(["/bin/sleep", "100"], 24, 80, farewell=b"quit\r")
    s.close(grace=0.3)
    assert s.process.returncode == -15  # SIGTERM after the grace: nothing left running


class _NoHosts:
    """Stands for app.hosts (-H) where only its presence matters: check_action reads nothing else."""

    def stop(self) -> None:
        pass


async def test_the_palette_offers_only_what_check_action_allows_over_remote_hosts():
    from tuikit import feed_sample

    from nsdash.tui.app import MachineCommands

    app = sample_app()
    async with app.run_test(size=SIZE) as pilot:
        await feed_sample(app, pilot)
        provider = MachineCommands(app.screen)
        local = [text for text, _, _ in provider._commands()]
        app.hosts = _NoHosts()
        try:
            remote = [text for text, _, _ in provider._commands()]
        finally:
            app.hosts = None
        off = app.LOCAL_ONLY
        assert any(n.startswith("Profile (perf): ") for n in local)
        kinds = {"trace": "Trace (strace): ", "profile": "Profile (perf): "}
        for action, prefix in kinds.items():
            shown = any(n.startswith(prefix) for n in remote)
            assert shown == (action not in off), (action, remote)
        # everything else stays: the same commands less the ones check_action turns off
        assert [n for n in local if not any(n.startswith(kinds[a]) for a in off if a in kinds)] == remote
