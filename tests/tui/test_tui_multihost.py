"""The dashboard over three real far hosts (issue 20), as root.

Each far host is an nsdash machine booted from the "sshd" tree with private
networking (nsdash.demo.farhost, as tests/integration/test_remote.py), both
from one set of keys, reached over real ssh through one ssh_config (aliases
far1, far2 and far3, NSDASH_SSH_COMMAND) with HOME in the test's directory.  Each
runs a nested BusyBox machine of the same name, "bb", so only the host tells
them apart.  Three far hosts for the module (FARM; each costs a Debian boot, a few
seconds); most tests use two of them (HOSTS).  A fourth alias, "down", is a stopped
host: far1's address on a port where no sshd listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sysconfig
import threading
import time
from pathlib import Path

import pytest
from conftest import NSDASH, REPO, TAG, cached_tree, run_nsdash, teardown_machine
from conftest import wait_for as wait_until
from textual.widgets import DataTable, Input, Static
from tuikit import confirm_by_name, wait_for, wait_for_screen

from nsdash.demo import farhost
from nsdash.errors import NsdashError
from nsdash.launcher import network
from nsdash.remote.stream import Stream
from nsdash.remote.target import Target
from nsdash.tui import remote_journal
from nsdash.tui.app import NsdashApp
from nsdash.tui.remote import UNREACHABLE
from nsdash.tui.screens.confirm import ConfirmScreen
from nsdash.tui.screens.images import ImagesScreen
from nsdash.tui.screens.limits import LimitsScreen
from nsdash.tui.screens.machine import MachineScreen
from nsdash.tui.screens.spawn import SpawnScreen
from nsdash.tui.screens.units import UnitsScreen
from nsdash.tui.widgets.cgroup_tree import CgroupTree
from nsdash.tui.widgets.console_pane import ConsolePane
from nsdash.tui.widgets.cpu_table import CpuTable
from nsdash.tui.widgets.image_list import ImageList
from nsdash.tui.widgets.journal_pane import JournalPane, line_text
from nsdash.tui.widgets.machine_list import MachineList

pytestmark = [pytest.mark.integration, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]
SIZE = (160, 40)
FARM = ("far1", "far2", "far3")  # booted for the module
HOSTS = FARM[:2]  # what most tests use
STOPPED = "down"


class Farm:
    """The far hosts: remote(host, *argv) runs `nsdash -H HOST ARGV` here."""

    def __init__(self, files: farhost.FarFiles, config: str, machines: dict[str, str]) -> None:
        self.files, self.machines = files, machines  # alias -> the far host's machine name here
        self.env = {**os.environ, "HOME": str(files.home), "NSDASH_SSH_COMMAND": f"ssh -F {config}"}
        self.env.pop("NSDASH_HOST", None)

    def remote(self, host: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*NSDASH, "-H", host, *argv], capture_output=True, text=True, timeout=timeout,
                              cwd=REPO, env=self.env, stdin=subprocess.DEVNULL)

    def ssh(self, host: str, command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ssh", "-F", self.env["NSDASH_SSH_COMMAND"].split()[-1], host, command],
                              capture_output=True, text=True, timeout=60, env=self.env, stdin=subprocess.DEVNULL)

    def names(self, host: str) -> list[str]:
        r = self.remote(host, "list", "--no-legend")
        assert r.returncode == 0, r.stderr
        return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multihost")
    tmp.chmod(0o755)
    files = farhost.prepare(tmp)
    machines = {alias: f"{TAG}-{alias}" for alias in FARM}
    try:
        configs = []
        for alias, name in machines.items():
            r = run_nsdash("spawn", "--detach", "-M", name, "-n", "-xbD", str(cached_tree("sshd")),
                           *farhost.spawn_options(files, REPO, sysconfig.get_paths()["purelib"]),
                           f"--bind-ro={cached_tree('busybox')}:/opt/busybox", *_far_strace(), timeout=120)
            assert r.returncode == 0, r.stderr
            lease = network.lease_of(name)
            assert lease is not None
            configs.append(farhost.ssh_config(files, str(lease.guest.ip), name=f"ssh_{alias}", alias=alias))
            if alias == FARM[0]:  # the stopped host: refused at once, inside the test's network
                configs.append(farhost.ssh_config(files, str(lease.guest.ip), name="ssh_down", alias=STOPPED,
                                                  port=1))
        config = tmp / "ssh_config_both"
        config.write_text("".join(path.read_text() for path in configs))
        farm = Farm(files, str(config), machines)
        for alias in FARM:
            wait_until(lambda alias=alias: farm.remote(alias, "list", timeout=30).returncode == 0, timeout=90,
                       step=0.5, what=f"sshd and nsdash on {alias}")
            r = farm.remote(alias, "spawn", "--detach", "-M", "bb", "-xbD", "/opt/busybox")
            assert r.returncode == 0, r.stderr
        yield farm
    finally:
        for name in machines.values():
            teardown_machine(name)


def _far_strace() -> list[str]:
    """Binds that give a far host this host's strace (the same Debian release), for `trace` over -H:
    the sshd tree has none.  The libraries it needs beyond the tree's, each under its soname."""
    strace = shutil.which("strace")
    if strace is None:
        return []
    libs = Path("/usr/lib/x86_64-linux-gnu")
    binds = [f"--bind-ro={os.path.realpath(strace)}:/usr/bin/strace"]
    for soname in ("libunwind-ptrace.so.0", "libunwind-x86_64.so.8", "libunwind.so.8"):
        if (libs / soname).exists():
            binds.append(f"--bind-ro={os.path.realpath(libs / soname)}:{libs / soname}")
    return binds


@pytest.fixture
def farm_env(farm, monkeypatch) -> None:
    """The farm's environment (its ssh command and configuration) in this process, for the
    dashboard's own ssh sessions; undone after the test."""
    for key, value in farm.env.items():
        monkeypatch.setenv(key, value)


def _row(app: NsdashApp, key: str):
    return next((m for m in app.snapshot.machines if m.name == key), None)


def _state(app: NsdashApp, key: str) -> str | None:
    m = _row(app, key)
    return m.state if m else None


def _cells(app: NsdashApp, key: str) -> tuple:
    return app.screen.query_one(MachineList)._rows.get(key, ())


def test_without_a_terminal_the_remote_dashboard_says_so_in_one_line(farm):
    r = subprocess.run([*NSDASH, "-H", "far1", "-H", "far2"], capture_output=True, text=True, timeout=30,
                       cwd=REPO, env=farm.env, stdin=subprocess.DEVNULL)
    assert r.returncode != 0 and r.stderr.startswith("nsdash: the dashboard needs a terminal")
    assert r.stderr.count("\n") == 1, r.stderr


def _tmux(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=30)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_the_real_command_in_a_terminal_shows_three_hosts_and_quits_leaving_no_ssh(farm):
    session = f"nsdash-{TAG}-multihost"
    keep = ("NSDASH_STATE_DIR", "HOME", "NSDASH_SSH_COMMAND", "PATH")
    env = [a for k in keep if k in farm.env for a in ("-e", f"{k}={farm.env[k]}")]
    config = farm.env["NSDASH_SSH_COMMAND"].split()[-1]

    def ssh_running() -> bool:  # (the tmux server's own command line names the config too: not it)
        return subprocess.run(["pgrep", "-f", f"^ssh -F {config} -T"], capture_output=True).returncode == 0

    r = _tmux("new-session", "-d", "-s", session, "-x", "150", "-y", "50", "-e", "TERM=xterm-256color", *env,
              "-c", str(REPO), " ".join([*NSDASH, *(a for h in FARM for a in ("-H", h))]))
    assert r.returncode == 0, r.stderr
    try:
        _tmux("set-option", "-t", session, "remain-on-exit", "on")

        def rows() -> list[str]:
            screen = _tmux("capture-pane", "-p", "-t", session).stdout
            return [line for line in screen.splitlines() if " bb" in line and any(h in line for h in FARM)]

        wait_until(lambda: "3 machines on 3 hosts" in _tmux("capture-pane", "-p", "-t", session).stdout,
                   timeout=60, step=0.2, what="the three hosts' machines")
        # (a detached tmux session may draw at its default 80x24, as here: the machine list, maximised,
        # has room for the three rows)
        _tmux("send-keys", "-t", session, "f")
        wait_until(lambda: {h for line in rows() for h in FARM if h in line} == set(FARM), timeout=30, step=0.2,
                   what="a bb row of each host on the screen")
        assert ssh_running()  # one session per host
        _tmux("send-keys", "-t", session, "q")
        wait_until(lambda: _tmux("display-message", "-p", "-t", session, "#{pane_dead}").stdout.strip() == "1",
                   timeout=20, step=0.1, what="nsdash to quit")
        # its ssh sessions end with it
        wait_until(lambda: not ssh_running(), timeout=10, step=0.1, what="no ssh of the dashboard's left")
        for host in FARM:  # and the far sessions wind down (the far side hangs its verbs up)
            wait_until(lambda host=host: _far_sessions(farm, host) == 0, timeout=20, step=0.2,
                       what=f"no nsdash session left on {host}")
    finally:
        _tmux("kill-session", "-t", session)


@pytest.mark.usefixtures("farm_env")
async def test_three_hosts_each_with_a_machine_in_table_tree_and_cpu_rows_and_a_stopped_host_unreachable(farm):
    app = NsdashApp(interval=0.5, hosts=[Target(h) for h in (*FARM, STOPPED)])
    async with app.run_test(size=SIZE) as pilot:
        def bb_cgroups(host: str) -> list[str]:  # the cgroups the far side maps to HOST's bb
            return [path for path, m in app.snapshot.machine_of.items() if m == f"{host}/bb"]

        await wait_for(pilot, lambda: all(bb_cgroups(h) for h in FARM) and STOPPED in app.snapshot.unreachable,
                       timeout=60, what=lambda: f"every bb cgroup, {STOPPED} down ({app.snapshot.errors})")
        tree, table = app.screen.query_one(CgroupTree), app.screen.query_one(CpuTable)

        def label(path: str) -> str:
            node = tree.node_for(("cg", path))
            return node.label.plain if node is not None else ""

        for host in FARM:
            scope = min(bb_cgroups(host), key=len)  # the machine's own cgroup, under the host's node
            assert scope.startswith(f"/{host}/machine.slice/"), scope
            await wait_for(pilot, lambda scope=scope: label(scope) != "" and scope in table._rows, timeout=30,
                           what=f"{host}'s bb in the tree and the CPU table")
            assert label(f"/{host}") == host and label(scope).endswith(f"[{host}/bb]")
            assert table._rows[scope][:2] == (host, scope.removeprefix(f"/{host}"))  # the Host column
            await wait_for(pilot, lambda scope=scope: table._rows[scope][3] != "-", timeout=30,
                           what=f"{host}'s bb's %CPU")
            assert any(v is not None for v in app.history.cpu(f"{host}/bb"))  # the machine list's CPU
            assert _state(app, f"{host}/bb") == "running" and _cells(app, f"{host}/bb")  # its table row
        # the stopped host: a node and a row that say so, though it never had machines
        assert label(f"/{STOPPED}") == f"{STOPPED}  ({UNREACHABLE})"
        assert table._rows[f"/{STOPPED}"][:2] == (STOPPED, UNREACHABLE)
        assert "Connection refused" in next(e for e in app.snapshot.errors if e.startswith(STOPPED))
        # one far process per host for the whole session, pushing its lines
        assert app.hosts is not None
        watch = app.hosts.watches[HOSTS[0]]
        lines = watch.lines
        await wait_for(pilot, lambda: watch.lines >= lines + 3, timeout=30, what="three more lines")
        assert watch.connects == 1 and not watch.legacy
        # the session and its one verb, the watch (a fork of it); and, while the journal pane follows
        # a machine there, the journal's own connection (its session and `journal -f`)
        journal = any(m.startswith(f"{HOSTS[0]}/") for m in app.following or ())
        assert _far_sessions(farm, HOSTS[0]) == 2 + 2 * journal, app.following
    # the dashboard quit: nothing of it stays on the far hosts
    for host in FARM:
        wait_until(lambda host=host: _far_sessions(farm, host) == 0, timeout=20, step=0.2,
                   what=f"no nsdash session left on {host}")


def _far_sessions(farm: Farm, host: str) -> int:
    """Processes of `nsdash _remote` sessions on HOST (each verb is a fork of its session's)."""
    r = farm.ssh(host, f"pgrep -c -f '{farhost.SESSION_PATTERN}' || true")
    return int(r.stdout.strip() or 0)


@pytest.mark.usefixtures("farm_env")
async def test_two_hosts_in_one_table_poweroff_reaches_the_right_one_and_a_dead_host_does_not_stall(
        farm):
    app = NsdashApp(interval=0.5, hosts=[Target(h) for h in HOSTS])
    async with app.run_test(size=SIZE) as pilot:
        # both hosts' "bb", told apart by the Host column
        await wait_for(pilot, lambda: _state(app, "far1/bb") == "running" and _state(app, "far2/bb") == "running",
                       timeout=60, what=lambda: f"both bb machines ({app.snapshot.machines}, {app.snapshot.errors})")
        assert _cells(app, "far1/bb")[:3] == ("far1", "bb", "running")
        assert _cells(app, "far2/bb")[:3] == ("far2", "bb", "running")
        assert "on 2 hosts" in app.status_text()

        # poweroff from the dashboard: far1's bb stops, far2's runs on
        ml = app.screen.query_one(MachineList)
        ml.select("far1/bb")
        await wait_for(pilot, lambda: app.selected == "far1/bb", what="the selection")
        await pilot.press("o")
        await confirm_by_name(app, pilot, "far1/bb")
        await wait_for(pilot, lambda: _row(app, "far1/bb") is None, timeout=60, what="far1's bb gone")
        assert "bb" not in farm.names("far1")
        assert "bb" in farm.names("far2") and _state(app, "far2/bb") == "running"

        # far2's sshd dies (the listener and our session with it): far2 shows unreachable, far1 goes on
        farm.ssh("far2", "pkill -x sshd")  # (its own session dies too: its exit status means nothing)
        await wait_for(pilot, lambda: "far2" in app.snapshot.unreachable, timeout=60, what="far2 unreachable")
        assert _state(app, "far2/bb") == UNREACHABLE  # its last machines stay, marked
        assert "unreachable: far2" in app.status_text()
        table = app.screen.query_one(CpuTable)
        await wait_for(pilot, lambda: table._rows.get("/far2", ())[:2] == ("far2", UNREACHABLE),
                       what="far2's row in the CPU table unreachable")
        assert not any(key.startswith("/far2/") for key in table._rows)  # its cgroups are not known now
        assert table._rows["/far1"][:2] == ("far1", "/")  # far1 goes on
        r = farm.remote("far1", "spawn", "--detach", "-M", "bb2", "-xbD", "/opt/busybox")
        assert r.returncode == 0, r.stderr
        await wait_for(pilot, lambda: _state(app, "far1/bb2") == "running", timeout=60,
                       what="far1's new machine while far2 is down")
        assert "far2" in app.snapshot.unreachable

        # sshd back on far2 (started in it from this host): it reconnects by itself, with backoff
        r = run_nsdash("shell", farm.machines["far2"], "/bin/systemctl", "start", "ssh.service", timeout=60)
        assert r.returncode == 0, r.stderr
        await wait_for(pilot, lambda: "far2" not in app.snapshot.unreachable and _state(app, "far2/bb") == "running",
                       timeout=90, what="far2 back")
        assert app.hosts is not None and app.hosts.watches["far2"].connects >= 2
        await wait_for(pilot, lambda: table._rows.get("/far2", ())[:2] == ("far2", "/")
                       and any(m == "far2/bb" for m in app.snapshot.machine_of.values()),
                       timeout=30, what="far2's cgroups back")


# ---------------------------------------------------------------- journals, machine view and units over -H


async def _far(farm: Farm, host: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`nsdash -H HOST ARGV` in a thread: the app runs on meanwhile."""
    return await asyncio.to_thread(farm.remote, host, *argv, timeout=timeout)


async def _console(farm: Farm, host: str, machine: str, text: str) -> None:
    """A line on MACHINE's console (its console log is its journal: a BusyBox machine keeps none)."""
    r = await _far(farm, host, "shell", machine, "/bin/sh", "-c", f"printf '{text}\\n' > /dev/console")
    assert r.returncode == 0, r.stderr


def _last(pane: JournalPane, n: int = 8) -> list[str]:
    return [line_text(x, True) for x in pane.lines][-n:]


def _seen(pane: JournalPane, keys: tuple[str, ...], word: str) -> int:
    """How many of the machines' lines hold WORD (a console line may follow a getty's prompt)."""
    return sum(word in m for m in _messages(pane, keys))


def _messages(pane: JournalPane, keys: tuple[str, ...]) -> list[str]:
    return [line.message for line in pane.lines if line.machine in keys and not line.event]


@pytest.mark.usefixtures("farm_env")
async def test_journals_of_two_hosts_merge_in_one_pane_and_a_host_that_drops_is_one_line(farm, monkeypatch):
    keys = ("far1/jr", "far2/jr")
    for alias in HOSTS:  # a machine of this test's own on each host (the test above stops some)
        r = farm.remote(alias, "spawn", "--detach", "-M", "jr", "-xbD", "/opt/busybox")
        assert r.returncode == 0, r.stderr
    # far2's journal is slow ON PURPOSE: its stream opens only once far1's lines, newer than far2's
    # history, are in the pane (under load its ssh took longer than HISTORY_WAIT, and its older
    # history went after far1's lines, 30 s out of order).
    far2_go = threading.Event()
    real_stream = remote_journal.Stream

    def stream(target: Target, argv: list[str], **kw) -> Stream:
        if target.host == "far2":
            far2_go.wait(timeout=120)
        return real_stream(target, argv, **kw)

    monkeypatch.setattr(remote_journal, "Stream", stream)
    app = NsdashApp(interval=0.5, hosts=[Target(h) for h in HOSTS])
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: all(_state(app, k) == "running" for k in keys), timeout=60,
                           what=lambda: f"both jr machines ({app.snapshot.machines}, {app.snapshot.errors})")
            await pilot.press("J")  # every machine's journal, merged
            pane = app.screen.query_one(JournalPane)
            await wait_for(pilot, lambda: any(line.machine == "far1/jr" and line.event for line in pane.lines),
                           timeout=60, what=lambda: f"far1's boot separator ({_last(pane, 6)})")
            await _console(farm, "far1", "jr", "jr-early")
            await wait_for(pilot, lambda: _seen(pane, keys, "jr-early"), timeout=30,
                           what=lambda: f"jr-early in the pane ({_last(pane)})")
            assert not any(line.machine == "far2/jr" for line in pane.lines)
            far2_go.set()  # far2's history comes now, older than jr-early: put in place by time
            await wait_for(pilot, lambda: any(line.machine == "far2/jr" and line.event for line in pane.lines),
                           timeout=60, what=lambda: f"far2's boot separator ({_last(pane, 6)})")
            order = [line.machine if "jr-early" not in line.message else "jr-early" for line in pane.lines]
            assert order.index("far2/jr") < order.index("jr-early"), _last(pane, 12)
            stamps = [line.realtime for line in pane.lines]
            assert stamps == sorted(stamps), _last(pane, 12)
            # lines from both hosts as they are written, each tagged HOST/MACHINE, the far text escaped
            for host, text in (("far1", "jr-one"), ("far2", r"jr-two \033[31mred"), ("far1", "jr-three")):
                await _console(farm, host, "jr", text)
                word = text.split()[0]
                await wait_for(pilot, lambda word=word: _seen(pane, keys, word),
                               timeout=30, what=lambda word=word: f"{word} in the pane ({_last(pane)})")
            markers = ("jr-one", "jr-two", "jr-three")
            assert [w for m in _messages(pane, keys) for w in markers if w in m] == list(markers)
            stamps = [line.realtime for line in pane.lines]
            assert stamps == sorted(stamps)  # the history merged by time, then lines as they come
            await pane.written()
            shown = pane.visible_text()
            assert any("far1/jr" in s and "jr-one" in s for s in shown)
            assert any("far2/jr" in s and "jr-two" in s for s in shown)
            assert not any("\x1b" in s for s in shown)

            # far2's sshd dies, our stream with it: one line says so, far1 goes on
            farm.ssh("far2", "pkill -x sshd")

            def far2_notes() -> list[str]:
                return [line.event for line in pane.lines if line.event and line.event.startswith("far2: ")]

            await wait_for(pilot, lambda: far2_notes(), timeout=60, what="a line about far2")
            await _console(farm, "far1", "jr", "jr-four")
            await wait_for(pilot, lambda: _seen(pane, keys, "jr-four"), timeout=30, what="far1 going on")
            assert len(far2_notes()) == 1, far2_notes()
            assert "trying again" in far2_notes()[0] and "\n" not in far2_notes()[0]

            # sshd back: the stream comes back by itself (backoff), and what was shown is not shown twice
            r = await asyncio.to_thread(run_nsdash, "shell", farm.machines["far2"], "/bin/systemctl", "start",
                                        "ssh.service", timeout=60)
            assert r.returncode == 0, r.stderr
            await wait_for(pilot, lambda: "far2: journal connected again" in far2_notes(), timeout=90,
                           what=lambda: f"far2's journal back ({far2_notes()})")
            await _console(farm, "far2", "jr", "jr-five")
            await wait_for(pilot, lambda: _seen(pane, keys, "jr-five"), timeout=30, what="far2 again")
            assert _seen(pane, keys, "jr-two") == 1
            assert len(far2_notes()) == 2
    finally:
        far2_go.set()
        for alias in HOSTS:
            farm.remote(alias, "terminate", "jr")


@pytest.mark.usefixtures("farm_env")
async def test_the_machine_view_and_units_screen_of_a_far_machine(farm):
    # a systemd machine on far1 (its own tree booted ephemerally), with a limit to see from here
    r = farm.remote("far1", "spawn", "--detach", "-M", "inner", "--property=TasksMax=77", "-xbD", "/", timeout=120)
    assert r.returncode == 0, r.stderr
    try:
        wait_until(lambda: farm.remote("far1", "systemctl", "-M", "inner", "is-active", "multi-user.target")
                   .stdout.strip() == "active", timeout=90, step=0.5, what="the inner systemd's multi-user.target")
        app = NsdashApp(interval=0.5, hosts=[Target(h) for h in HOSTS])
        async with app.run_test(size=SIZE) as pilot:
            # (degraded: its ssh.service fails, see below)
            await wait_for(pilot, lambda: _state(app, "far1/inner") in ("running", "degraded"), timeout=60,
                           what=lambda: f"far1/inner ({app.snapshot.machines}, {app.snapshot.errors})")
            ml = app.screen.query_one(MachineList)
            ml.select("far1/inner")
            await wait_for(pilot, lambda: app.selected == "far1/inner", what="the selection")

            # the machine view: its line with the limit the far side reports, its journal
            await pilot.press("v")
            await wait_for_screen(pilot, MachineScreen, what="the machine view")
            view = app.screen
            assert isinstance(view, MachineScreen)
            await wait_for(pilot, lambda: "tasks ≤ 77" in view._info_text, timeout=30,
                           what=lambda: f"the limit ({view._info_text!r})")
            assert view._info_text.startswith(f"far1/inner  ·  {_state(app, 'far1/inner')}  ·  debian 12")
            leader = json.loads(farm.remote("far1", "status", "-o", "json", "inner").stdout)["leader"]
            assert f"leader {leader} on far1" in view._info_text  # its PID there, named as such
            journal = view.query_one("#machine-journal", JournalPane)
            await wait_for(pilot, lambda: any(line.machine == "far1/inner" and "systemd" in (line.identifier or "")
                                              for line in journal.lines), timeout=30, what="inner's journal")
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, MachineScreen), what="back")

            # the units screen: the far machine's units, a unit's status, a job that works, one that fails
            app.open_units("far1/inner", unit="systemd-journald.service")
            await wait_for_screen(pilot, UnitsScreen, what="the units screen")
            units = app.screen
            assert isinstance(units, UnitsScreen)
            await wait_for(pilot, lambda: units.snapshot is not None, timeout=30, what="the units")
            assert units.snapshot is not None and units.machine == "far1/inner"
            assert units.glyph_of("systemd-journald.service") == "●"
            detail = units.query_one("#unit-detail", Static)
            await wait_for(pilot, lambda: "Active: active" in str(detail.render()), timeout=30,
                           what=lambda: f"journald's status ({str(detail.render())[:300]!r})")
            assert "systemd-journald.service" in str(detail.render())
            await pilot.press("j")  # the unit's journal lines, from the far side's journal -u
            await wait_for(pilot, lambda: "systemd-journald" in str(detail.render())
                           and "Active:" not in str(detail.render()), timeout=30,
                           what=lambda: f"journald's lines ({str(detail.render())[:300]!r})")
            await pilot.press("j")
            table = units.query_one("#units-table", DataTable)

            async def act(unit: str) -> None:
                units.show_all = True
                units.refresh_units()
                await wait_for(pilot, lambda: unit in [str(k.value) for k in table.rows], timeout=30,
                               what=f"{unit} in the table")
                table.move_cursor(row=table.get_row_index(unit))
                await wait_for(pilot, lambda: units.selected_unit == unit, what=f"{unit} selected")
                await pilot.press("s")

            def said(text: str) -> bool:
                return any(text in str(n.message) for n in app._notifications)

            await act("systemd-tmpfiles-clean.service")
            await wait_for(pilot, lambda: said("start systemd-tmpfiles-clean.service: done"), timeout=60,
                           what=lambda: f"the job done ({[str(n.message) for n in app._notifications]})")
            # inner shares far1's network, where far1's own sshd holds port 22: its ssh.service fails
            await act("ssh.service")
            await wait_for(pilot, lambda: any("far1" in str(n.message) and "ssh.service" in str(n.message)
                                              and n.severity == "error" for n in app._notifications), timeout=60,
                           what=lambda: f"the failed job ({[str(n.message) for n in app._notifications]})")
            ssh_before = len(_children_ssh())
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, UnitsScreen), what="back")
            # the screen's own ssh connection ended with it (the hosts' list sessions stay)
            await wait_for(pilot, lambda: len(_children_ssh()) < ssh_before, 10,
                           lambda: f"the units' ssh gone (of {ssh_before} still: {_described(_children_ssh())})")
    finally:
        farm.remote("far1", "terminate", "inner")


def _described(pids: list[str]) -> list[str]:
    """Each ssh's command line and state, for a failure to say which connections are left."""
    out = []
    for pid in pids:
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            out.append(f"{pid} [{state}] {argv.strip()}")
    return out


def _children_ssh() -> list[str]:
    """This process's ssh children (its threads' too): the hosts' and the screens' connections."""
    me = os.getpid()
    out = []
    for task in os.listdir(f"/proc/{me}/task"):
        with contextlib.suppress(OSError):
            for pid in Path(f"/proc/{me}/task/{task}/children").read_text().split():
                with contextlib.suppress(OSError):
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "ssh":
                        out.append(pid)
    return out




# ---------------------------------------------------------------- consoles, images and spawn over -H
# Each test makes (and removes) machines of its own, so it runs alone (-k) or after the others.


def _far_machine(farm: Farm, host: str, name: str) -> None:
    r = farm.remote(host, "spawn", "--detach", "-M", name, "-xbD", "/opt/busybox")
    assert r.returncode == 0, r.stderr


def _far_gone(farm: Farm, host: str, *names: str) -> None:
    for name in names:
        farm.remote(host, "terminate", name)  # (gone already: its failure means nothing)


async def _open_console(app: NsdashApp, pilot, key: str) -> ConsolePane:
    """Select KEY, press a: the machine view with its console pane attached and focused."""
    await wait_for(pilot, lambda: _state(app, key) == "running", timeout=60,
                   what=lambda: f"{key} running ({app.snapshot.machines}, {app.snapshot.errors})")
    app.screen.query_one(MachineList).select(key)
    await wait_for(pilot, lambda: app.selected == key, what="the selection")
    await pilot.press("a")
    await wait_for_screen(pilot, MachineScreen, what="the machine view")
    pane = app.screen.query_one(ConsolePane)
    await wait_for(pilot, lambda: pane.connection is not None and pane.has_focus, what="the console attached")
    return pane


def _shows(pane: ConsolePane, text: str) -> bool:
    return any(text in line for line in pane.screen_text())


async def _log_in(pilot, pane: ConsolePane) -> None:
    await wait_for(pilot, lambda: pane.connection is not None and pane.connection._session is not None,
                   timeout=30, what="the far login's stream")
    await pilot.press("enter")
    await wait_for(pilot, lambda: _shows(pane, "login:"), timeout=30,
                   what=lambda: f"the far login prompt ({pane.screen_text()})")
    await pilot.press(*"root", "enter")
    await wait_for(pilot, lambda: any(line.rstrip().endswith("#") for line in pane.screen_text()), timeout=30,
                   what="a root shell prompt on the far machine")


@pytest.mark.usefixtures("farm_env")
async def test_a_far_machine_console_in_the_pane_takes_keys_and_sizes_and_ctrl_bracket_leaves(farm):
    _far_machine(farm, "far1", "con")
    app = NsdashApp(interval=0.5, hosts=[Target("far1")])
    try:
        async with app.run_test(size=SIZE) as pilot:
            pane = await _open_console(app, pilot, "far1/con")
            assert "far1/con" in str(pane.border_title)
            await _log_in(pilot, pane)
            await pilot.press(*"echo far-$((6*7))", "enter")
            await wait_for(pilot, lambda: any(line.strip() == "far-42" for line in pane.screen_text()),
                           what="the command's output from the far machine")
            # the far PTY follows the pane's size (winch over the channel)
            before = (pane.model.lines, pane.model.columns)
            await pilot.resize_terminal(SIZE[0] - 20, SIZE[1] - 6)
            await wait_for(pilot, lambda: (pane.model.lines, pane.model.columns) != before, what="the model resized")
            await pilot.press(*"stty size", "enter")
            size = f"{pane.model.lines} {pane.model.columns}"
            await wait_for(pilot, lambda: any(line.strip() == size for line in pane.screen_text()),
                           what=lambda: f"'{size}' from stty on the far machine ({pane.screen_text()})")
            # the guest's control sequences go into the terminal model, never further
            await pilot.press(*r"printf '\033]0;pwned\007title-%s\n' kept", "enter")
            # (its output line is the text alone: the title sequence went into the model, not on screen)
            await wait_for(pilot, lambda: any(line.strip() == "title-kept" for line in pane.screen_text()),
                           what=lambda: f"the printf's text alone ({pane.screen_text()})")
            ssh = pane.connection._session.stream.conn.proc  # the console's own ssh
            await pilot.press("ctrl+right_square_bracket")
            assert not pane.has_focus
            # limits on the far machine's host: read with its status, set with its set-property
            view = app.screen
            assert isinstance(view, MachineScreen)
            await pilot.press("l")
            await wait_for_screen(pilot, LimitsScreen, what="the limits form")
            app.screen.query_one("#limits-TasksMax", Input).value = "123"
            await pilot.press("ctrl+s")
            await wait_for_screen(pilot, ConfirmScreen, what="the confirmation")
            await confirm_by_name(app, pilot, "far1/con")
            await wait_for(pilot, lambda: view.limits.get("TasksMax") == "123", timeout=60,
                           what=lambda: f"TasksMax in force ({view.limits}, {[n.message for n in app._notifications]})")
            status = json.loads(farm.remote("far1", "status", "-o", "json", "con").stdout)
            assert status["limits"]["TasksMax"] == "123"
            await pilot.press("escape")
            assert not isinstance(app.screen, MachineScreen)
            await wait_for(pilot, lambda: ssh.poll() is not None, timeout=10, what="the console's ssh ended")
            assert _state(app, "far1/con") == "running"  # leaving the console leaves the machine running
        assert "con" in farm.names("far1")
    finally:
        _far_gone(farm, "far1", "con")


@pytest.mark.usefixtures("farm_env")
async def test_a_far_console_for_a_machine_that_is_not_there_says_why(farm):
    from nsdash.tui.remote_console import RemoteConsole

    console = RemoteConsole(Target("far1"), "nosuch", 24, 80)
    try:
        with pytest.raises(NsdashError) as e:
            while console.read(5.0) is not None:
                pass
        assert e.value.message.startswith("far1: ") and "nosuch" in e.value.message, e.value.message
        assert "\n" not in e.value.oneline() and "\x1b" not in e.value.oneline()
    finally:
        console.close()
    assert console.stream.conn.proc.poll() is not None


@pytest.mark.usefixtures("farm_env")
async def test_a_far_console_whose_host_drops_says_so_in_one_line(farm):
    _far_machine(farm, "far2", "con2")
    app = NsdashApp(interval=0.5, hosts=[Target("far2")])
    try:
        async with app.run_test(size=SIZE) as pilot:
            pane = await _open_console(app, pilot, "far2/con2")
            await _log_in(pilot, pane)
            farm.ssh("far2", "pkill -x sshd")  # the listener and every session, the console's too
            await wait_for(pilot, lambda: pane.attached is None, timeout=60, what="the console ended")
            reason = str(pane.border_subtitle)
            assert "far2" in reason and "lost" in reason and "\n" not in reason, reason
            assert any("far2/con2" in str(n.message) and "lost" in str(n.message) for n in app._notifications)
            assert isinstance(app.screen, MachineScreen)  # the app goes on
    finally:
        r = run_nsdash("shell", farm.machines["far2"], "/bin/systemctl", "start", "ssh.service", timeout=60)
        assert r.returncode == 0, r.stderr
        wait_until(lambda: farm.remote("far2", "list", timeout=30).returncode == 0, timeout=60, step=0.5,
                   what="far2's sshd back")
        _far_gone(farm, "far2", "con2")


def _image_rows(app: NsdashApp) -> dict[str, tuple]:
    screen = app.screen
    return dict(screen.query_one(ImageList)._rows) if isinstance(screen, ImagesScreen) else {}


@pytest.mark.usefixtures("farm_env")
async def test_images_per_host_boot_on_one_and_spawn_from_the_form_on_another(farm):
    for alias in HOSTS:  # an image of the same name on each far host (a copy of the BusyBox tree)
        farm.ssh(alias, "mkdir -p /var/lib/machines && rm -rf /var/lib/machines/bbimg && "
                        "cp -a /opt/busybox /var/lib/machines/bbimg")
    app = NsdashApp(interval=0.5, hosts=[Target(h) for h in HOSTS])
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("I")
            await wait_for(pilot, lambda: {"far1/bbimg", "far2/bbimg"} <= set(_image_rows(app)), timeout=60,
                           what=lambda: f"both hosts' images ({_image_rows(app)})")
            images = app.screen.query_one(ImageList)
            assert [c.label.plain for c in images.columns.values()][:2] == ["Host", "Image"]
            assert _image_rows(app)["far1/bbimg"][:3] == ("far1", "bbimg", "directory")
            assert _image_rows(app)["far2/bbimg"][:3] == ("far2", "bbimg", "directory")

            # boot far1's image: `start bbimg` there; far2 gets nothing
            images.select("far1/bbimg")
            await wait_for(pilot, lambda: images.selected == "far1/bbimg", what="far1's image selected")
            await pilot.press("b")
            await wait_for(pilot, lambda: _state(app, "far1/bbimg") == "running", timeout=60,
                           what=lambda: f"far1/bbimg booted ({[n.message for n in app._notifications]})")
            assert "bbimg" not in farm.names("far2")

            # spawn from the form with far2's image: the form names the host, the machine runs there
            images.select("far2/bbimg")
            await wait_for(pilot, lambda: images.selected == "far2/bbimg", what="far2's image selected")
            await pilot.press("s")
            await wait_for_screen(pilot, SpawnScreen, timeout=30, what="the form")
            form = app.screen
            assert isinstance(form, SpawnScreen) and form.host == "far2"
            assert "far2" in str(form.query_one("#spawn-title", Static).render())
            form.query_one("#spawn-name", Input).value = "formbb"
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: _state(app, "far2/formbb") == "running", timeout=60,
                           what=lambda: f"far2/formbb ({[n.message for n in app._notifications]})")
            assert "formbb" in farm.names("far2") and "formbb" not in farm.names("far1")
    finally:
        _far_gone(farm, "far1", "bbimg")
        _far_gone(farm, "far2", "formbb")
        for alias in HOSTS:
            farm.ssh(alias, "rm -rf /var/lib/machines/bbimg")


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_in_a_real_terminal_a_far_console_shows_in_the_pane_and_its_sequences_never_reach_the_terminal(farm):
    _far_machine(farm, "far1", "tcon")
    session = f"nsdash-{TAG}-farconsole"
    keep = ("NSDASH_STATE_DIR", "HOME", "NSDASH_SSH_COMMAND", "PATH")
    env = [a for k in keep if k in farm.env for a in ("-e", f"{k}={farm.env[k]}")]

    def screen() -> str:
        return _tmux("capture-pane", "-p", "-t", session).stdout

    def title() -> str:
        return _tmux("display-message", "-p", "-t", session, "#{pane_title}").stdout.strip()

    r = _tmux("new-session", "-d", "-s", session, "-x", "150", "-y", "40", "-e", "TERM=xterm-256color", *env,
              "-c", str(REPO), " ".join([*NSDASH, "-H", "far1"]))
    assert r.returncode == 0, r.stderr
    try:
        _tmux("set-option", "-t", session, "remain-on-exit", "on")
        _tmux("set-option", "-t", session, "allow-rename", "on")  # a title the guest set would show here
        wait_until(lambda: " tcon " in screen(), timeout=60, step=0.2, what="far1's tcon on the screen")
        before = title()
        # the command palette's "Attach console: far1/tcon": the machine view with its console
        _tmux("send-keys", "-t", session, "C-p")
        wait_until(lambda: "Search" in screen() or ">" in screen(), timeout=10, step=0.1, what="the palette")
        _tmux("send-keys", "-t", session, "-l", "Attach console: far1/tcon")
        wait_until(lambda: "Attach console: far1/tcon" in screen(), timeout=10, step=0.1, what="the command")
        _tmux("send-keys", "-t", session, "Enter")
        wait_until(lambda: "Console: far1/tcon" in screen(), timeout=20, step=0.2, what="the console pane")
        time.sleep(0.5)  # (no state to wait on from outside: the far login's stream being up)
        _tmux("send-keys", "-t", session, "Enter")
        wait_until(lambda: "login:" in screen(), timeout=30, step=0.2, what=lambda: f"the far login prompt {screen()}")
        _tmux("send-keys", "-t", session, "-l", "root")
        _tmux("send-keys", "-t", session, "Enter")
        wait_until(lambda: "# " in screen() or screen().rstrip().endswith("#"), timeout=30, step=0.2,
                   what="a root shell on the far machine")
        _tmux("send-keys", "-t", session, "-l", r"printf '\033]2;pwned\007\033[?1049hfar-%s\n' kept")
        _tmux("send-keys", "-t", session, "Enter")
        wait_until(lambda: "far-kept" in screen(), timeout=20, step=0.2, what=lambda: f"the output {screen()}")
        assert "pwned" not in title() and title() == before  # the guest's title never reached the terminal
        assert "Last minute" in screen() and "Console: far1/tcon" in screen()  # the view still draws it all
        _tmux("send-keys", "-t", session, "C-]")
        time.sleep(0.3)  # (the focus moves off the pane: nothing to see from outside)
        _tmux("send-keys", "-t", session, "Escape")
        wait_until(lambda: "Console: far1/tcon" not in screen(), timeout=20, step=0.1,
                   what=lambda: f"back on the dashboard {screen()}")
        _tmux("send-keys", "-t", session, "q")
        wait_until(lambda: _tmux("display-message", "-p", "-t", session, "#{pane_dead}").stdout.strip() == "1",
                   timeout=20, step=0.1, what=lambda: f"nsdash to quit {screen()}")
    finally:
        _tmux("kill-session", "-t", session)
        _far_gone(farm, "far1", "tcon")


# ---------------------------------------------------------------- trace over -H


LOOP = "while :; do cat /etc/hostname > /dev/null; sleep 0.3; done"


def _far_tracers(farm: Farm, host: str) -> int:
    """strace processes on HOST (the far `nsdash trace` runs it; it must detach when we hang up)."""
    r = farm.ssh(host, "pgrep -c -x strace || true")
    return int(r.stdout.strip() or 0)


@pytest.fixture
def far_loop(farm):
    """A machine "tr" on far1 whose shell opens /etc/hostname three times a second, forking each time."""
    r = farm.remote("far1", "spawn", "--detach", "-M", "tr", "-xD", "/opt/busybox", "/bin/sh", "-c", LOOP)
    assert r.returncode == 0, r.stderr
    yield "tr"
    _far_gone(farm, "far1", "tr")


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_trace_over_h_streams_the_far_machines_syscalls_and_a_hang_up_detaches_strace(farm, far_loop):
    proc = subprocess.Popen([*NSDASH, "-H", "far1", "trace", "-M", far_loop, "--all", "-e", "trace=openat"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=farm.env,
                            stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        seen = []
        while sum("openat(" in line and "/etc/hostname" in line for line in seen) < 2 and len(seen) < 200:
            seen.append(proc.stdout.readline())  # blocks until the far strace speaks
        assert sum("/etc/hostname" in line for line in seen) >= 2, seen
        assert all(line.endswith("\n") and line[:-1].isprintable() for line in seen)  # escaped lines
        assert _far_tracers(farm, "far1") == 1
    finally:
        proc.kill()  # ssh goes with it: the far side hangs the verb up
        proc.wait(timeout=10)
    wait_until(lambda: _far_tracers(farm, "far1") == 0, timeout=20, step=0.2, what="the far strace to detach")
    # profile runs on the far side too: there (no perf in the far tree) it says what to install, in one line
    r = farm.remote("far1", "profile", "-M", far_loop, "-d", "1")
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "linux-perf" in r.stderr, r.stderr
    # a strace that writes nothing (no EPIPE to end it): the hang-up alone must make it detach
    quiet = ["-qq", "-e", "trace=reboot", "-e", "signal=none"]
    proc = subprocess.Popen([*NSDASH, "-H", "far1", "trace", "-M", far_loop, "--all", *quiet],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, env=farm.env,
                            stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: _far_tracers(farm, "far1") == 1, timeout=20, step=0.2, what="the quiet far strace")
    finally:
        proc.kill()
        proc.wait(timeout=10)
    wait_until(lambda: _far_tracers(farm, "far1") == 0, timeout=20, step=0.2, what="the quiet strace to detach")


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
@pytest.mark.usefixtures("farm_env")
async def test_the_trace_pane_of_a_far_machine_and_a_palette_that_offers_only_what_works_over_h(
        farm, far_loop):
    from nsdash.tui.app import MachineCommands
    from nsdash.tui.screens.debugging import TraceScreen
    from nsdash.tui.widgets.trace_pane import TracePane

    app = NsdashApp(interval=0.5, hosts=[Target(h) for h in HOSTS])
    async with app.run_test(size=SIZE) as pilot:
        key = f"far1/{far_loop}"
        await wait_for(pilot, lambda: _state(app, key) == "running", timeout=60, what=f"{key} in the table")
        # the palette: Trace is offered for the far machine, Profile (local only) is not
        names = [text for text, _, _ in MachineCommands(app.screen)._commands()]
        assert f"Trace (strace): {key}" in names and f"Units: {key}" in names
        assert not any(n.startswith("Profile (perf): ") for n in names)
        app.screen.query_one(MachineList).select(key)
        await wait_for(pilot, lambda: app.selected == key, what="the selection")
        await pilot.press("T")
        await wait_for_screen(pilot, TraceScreen, what="the trace screen")
        pane = app.screen.query_one(TracePane)
        await wait_for(pilot, lambda: sum("/etc/hostname" in x.text for x in pane.lines if x.kind == "trace") >= 2,
                       timeout=30, what=lambda: f"far syscalls in the pane ({pane.lines[-5:]}, {pane.state})")
        assert pane.state.startswith("tracing all of far1/tr")
        assert all(x.text.isprintable() for x in pane.lines)  # escaped: far text never reaches the terminal raw
        assert _far_tracers(farm, "far1") == 1
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, TraceScreen), what="back to the dashboard")
        await asyncio.to_thread(wait_until, lambda: _far_tracers(farm, "far1") == 0, timeout=20, step=0.2,
                                what="the far strace to detach")
