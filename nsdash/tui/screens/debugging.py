"""Trace and profile a machine from the dashboard: one screen each, its tool run by a thread worker.

The worker owns the tool (strace, perf) from start to reap and answers with
messages; leaving the screen (escape, or quitting the dashboard) asks it to
stop, and it detaches strace / ends perf before it returns.  Nothing stays.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Static

from nsdash.errors import NsdashError
from nsdash.inside.debugging.perf import Profile, Profiler, flame_svg
from nsdash.inside.debugging.strace import Line, StraceRun
from nsdash.remote.target import Target
from nsdash.system.text import escape
from nsdash.tui.remote_trace import FarTrace, trace_argv
from nsdash.tui.widgets.console_pane import ConsolePane
from nsdash.tui.widgets.edges import FocusMarkScreen
from nsdash.tui.widgets.key_footer import KeyFooter
from nsdash.tui.widgets.profile_pane import ProfilePane
from nsdash.tui.widgets.trace_pane import TracePane

BATCH_SECONDS = 0.05  # lines are handed to the pane at most this often
PROFILE_WINDOW = 2.0  # seconds of samples per refresh of the top lists


@dataclass(frozen=True)
class Subject:
    """What to look at: a machine, and in it a host PID, a unit, or everything."""

    machine: str
    host_pid: int | None = None
    unit: str | None = None

    def describe(self) -> str:
        if self.host_pid is not None:
            return f"host PID {self.host_pid} of {self.machine}"
        if self.unit is not None:
            return f"{self.unit} of {self.machine}"
        return f"all of {self.machine}"


class ToolScreen(FocusMarkScreen):
    """A screen whose worker runs one tool until the screen goes."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    class Failed(Message):
        def __init__(self, error: NsdashError) -> None:
            super().__init__()
            self.error = error

    def __init__(self, subject: Subject) -> None:
        super().__init__()
        self.subject = subject
        self.stopping = threading.Event()
        self.done = threading.Event()  # the worker has reaped its tool

    def on_unmount(self) -> None:
        self.stop()

    def stop(self) -> None:
        self.stopping.set()

    def on_tool_screen_failed(self, message: Failed) -> None:
        # Unit names and process names come from the guest: escaped, and never read as markup.
        self.notify(escape(message.error.oneline()), title=escape(self.subject.describe()), severity="error",
                    timeout=10, markup=False)


class _TraceSession:
    """One strace of a trace screen (a new -e expression starts another): its options and flags."""

    def __init__(self, options: list[str]) -> None:
        self.options = options
        self.stopping = threading.Event()
        self.done = threading.Event()  # its worker has reaped its strace
        self.run: StraceRun | FarTrace | None = None

    def stop(self) -> None:
        self.stopping.set()
        if self.run is not None:
            self.run.stop()


class TraceScreen(ToolScreen):
    """strace on a machine's process, unit or whole self, live; FAR (the host and the machine's name
    there, -H): the far host's `nsdash trace` instead (nsdash.tui.remote_trace)."""

    def __init__(self, subject: Subject, far: tuple[Target, str] | None = None) -> None:
        super().__init__(subject)
        self.far = far

    class Lines(Message):
        def __init__(self, lines: list[Line]) -> None:
            super().__init__()
            self.lines = lines

    class State(Message):
        def __init__(self, state: str) -> None:
            super().__init__()
            self.state = state

    def compose(self) -> ComposeResult:
        yield Static(Text(f"strace: {escape(self.subject.describe())}"), id="trace-info")
        yield TracePane(title=f"Trace: {escape(self.subject.describe())}", id="trace", classes="panel")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.options: list[str] = []
        self._sessions: list[_TraceSession] = []
        self.query_one("#trace-log").focus()
        self._start()

    def _start(self, marker: str | None = None) -> None:
        session, previous = _TraceSession(list(self.options)), list(self._sessions)
        self._sessions.append(session)
        self.run_worker(lambda: self._trace(session, previous, marker), thread=True, group="trace",
                        exit_on_error=False)

    def stop(self) -> None:
        super().stop()
        for session in self._sessions:
            session.stop()
        self._check_done()

    def _check_done(self) -> None:
        if self.stopping.is_set() and all(s.done.is_set() for s in getattr(self, "_sessions", ())):
            self.done.set()

    def on_trace_pane_expression(self, message: TracePane.Expression) -> None:
        """Trace again with the user's -e expression: the running strace detaches, a new one attaches."""
        for session in self._sessions:
            session.stop()
        self.options = ["-e", message.expression] if message.expression else []
        self._start(marker=f"-- strace -e {escape(message.expression) or 'trace=all'} --")

    def _trace(self, session: _TraceSession, previous: list[_TraceSession], marker: str | None) -> None:
        from nsdash.inside.debugging.pids import MachineProcesses
        from nsdash.inside.target import resolve

        try:
            for earlier in previous:  # their last lines come first: then the marker, then ours
                earlier.done.wait(10)
            if marker:
                self.post_message(self.Lines([Line("message", marker)]))
            run: StraceRun | FarTrace
            try:
                if self.far is not None:
                    target, machine = self.far
                    s = self.subject
                    run = FarTrace(target, trace_argv(machine, s.host_pid, s.unit, session.options))
                    run.connect()
                    what = s.describe()
                else:
                    procs = MachineProcesses(resolve(self.subject.machine))
                    if self.subject.host_pid is not None:
                        host_pids, what = procs.select(str(self.subject.host_pid), host=True)
                    else:
                        host_pids, what = procs.select(self.subject.unit)
                    run = StraceRun(procs, host_pids, session.options)
            except NsdashError as e:
                self.post_message(self.Failed(e))
                self.post_message(self.State(f"not started: {e.message}"))
                return
            session.run = run
            if session.stopping.is_set():
                return
            self.post_message(self.State(f"tracing {what}"))
            try:
                with run:
                    self._pump(run, session)
            except Exception as e:
                # Not an expected failure (those are NsdashError, above): still never a pane that says
                # "tracing" over a dead worker.  Said in the pane and a notification, then the worker
                # ends in error (Textual logs the traceback).
                what_failed = f"{type(e).__name__}: {escape(str(e))}"
                self.post_message(self.Failed(NsdashError(f"strace stopped: {what_failed}",
                                                          "see the log (textual console)")))
                self.post_message(self.State(f"failed: {what_failed}"))
                raise
            if not session.stopping.is_set() or self.stopping.is_set():
                tool = "far nsdash trace" if self.far is not None else "strace"
                self.post_message(self.State(f"ended ({tool} exit status {run.returncode})"))
        finally:
            session.done.set()
            self._check_done()  # events only: safe from this thread

    def _pump(self, run: StraceRun | FarTrace, session: _TraceSession) -> None:
        batch: list[Line] = []
        sent = time.monotonic()
        asked = False
        while not run.finished:
            if session.stopping.is_set() and not asked:
                run.stop()  # strace detaches; its last lines still come through here
                asked = True
            batch += run.poll(BATCH_SECONDS)
            if batch and (time.monotonic() - sent >= BATCH_SECONDS or run.finished):
                self.post_message(self.Lines(batch))
                batch, sent = [], time.monotonic()
        if batch:
            self.post_message(self.Lines(batch))

    def on_trace_screen_lines(self, message: Lines) -> None:
        self.query_one(TracePane).show(message.lines)

    def on_trace_screen_state(self, message: State) -> None:
        self.query_one(TracePane).set_state(message.state)


class ProfileScreen(ToolScreen):
    """perf on a machine's cgroup (or a unit's): the top lists, refreshed; w writes a flame graph of all
    samples so far."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("w", "write_flame", "Flame graph")]

    class Recorded(Message):
        def __init__(self, profile: Profile, note: str | None) -> None:
            super().__init__()
            self.profile = profile
            self.note = note

    class Written(Message):
        def __init__(self, path: str) -> None:
            super().__init__()
            self.path = path

    def __init__(self, subject: Subject, window: float = PROFILE_WINDOW, flame_dir: str | None = None) -> None:
        super().__init__(subject)
        self.window = window
        self.flame_dir = flame_dir
        self._profiler: Profiler | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text(f"perf: {escape(self.subject.describe())}"), id="profile-info")
        yield ProfilePane(title=f"Profile: {escape(self.subject.describe())}", id="profile", classes="panel")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.run_worker(self._profile, thread=True, group="profile", exit_on_error=False)

    def stop(self) -> None:
        super().stop()
        if self._profiler is not None:
            self._profiler.cancel()

    def _profile(self) -> None:
        from nsdash.inside.debugging.pids import MachineProcesses
        from nsdash.inside.target import resolve

        try:
            try:
                profiler = self._profiler = Profiler(MachineProcesses(resolve(self.subject.machine)),
                                                     unit=self.subject.unit)
                if self.stopping.is_set():
                    profiler.cancel()  # the screen went while perf was being found
                while not self.stopping.is_set():
                    profile = profiler.record(self.window)
                    if not self.stopping.is_set():
                        self.post_message(self.Recorded(profile, profiler.note))
            except NsdashError as e:
                self.post_message(self.Failed(e))
        finally:
            self.done.set()

    def on_profile_screen_recorded(self, message: Recorded) -> None:
        self.query_one(ProfilePane).show(message.profile, message.note)

    def action_write_flame(self) -> None:
        pane = self.query_one(ProfilePane)
        profile = pane.cumulative()
        if profile is None:
            self.notify("no samples yet", severity="warning")
            return
        directory = self.flame_dir or os.getcwd()
        path = os.path.join(directory, f"nsdash-flame-{self.subject.machine}-{time.strftime('%H%M%S')}.svg")
        self.run_worker(lambda: self._write(profile, path), thread=True, group="flame", exit_on_error=False)

    def _write(self, profile: Profile, path: str) -> None:
        try:
            svg = flame_svg(profile, f"machine {self.subject.machine}: {profile.event}, {profile.seconds:.1f} s")
            with open(path, "w") as f:
                f.write(svg)
        except NsdashError as e:
            self.post_message(self.Failed(e))
            return
        except OSError as e:
            self.post_message(self.Failed(NsdashError(f"cannot write {path}: {e.strerror}")))
            return
        self.post_message(self.Written(path))

    def on_profile_screen_written(self, message: Written) -> None:
        self.query_one(ProfilePane).flame = message.path
        self.notify(f"flame graph written to {message.path}", timeout=8, markup=False)


def subject_at_cursor(screen: Screen, focused: object, selected: str | None) -> Subject | None:
    """What the user points at: the unit selected on a units screen, the process under the
    cgroup tree's cursor, else the machine of the machine view or the selected machine."""
    from nsdash.tui.screens.machine import MachineScreen
    from nsdash.tui.screens.units import UnitsScreen
    from nsdash.tui.widgets.cgroup_tree import CgroupTree

    if isinstance(screen, UnitsScreen):
        return Subject(screen.machine, unit=screen.selected_unit)
    if isinstance(focused, CgroupTree):
        hit = focused.process_at_cursor()
        if hit is not None:
            return Subject(hit[0], host_pid=hit[1])
    machine = screen.machine if isinstance(screen, MachineScreen) else selected
    return Subject(machine) if machine else None


# gdb is asked to let go before the pane closes: ctrl+c (stops a running inferior), then
# detach and quit (confirm is off).  NUL separates steps that need a moment in between.
GDB_FAREWELL = b"\x03\0detach\rquit\r"


class GdbScreen(ToolScreen):
    """gdb on one of a machine's processes, in a console pane; ctrl+] (or gdb's quit) leaves and detaches."""


    class Ready(Message):
        def __init__(self, argv: list[str], label: str) -> None:
            super().__init__()
            self.argv = argv
            self.label = label

    def compose(self) -> ComposeResult:
        yield Static(Text(f"gdb: {escape(self.subject.describe())}  ·  ctrl+] leaves (gdb detaches)"), id="gdb-info")
        yield ConsolePane(id="gdb-console", classes="panel")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one(ConsolePane).focus()
        self.run_worker(self._prepare, thread=True, group="gdb", exit_on_error=False)

    def _prepare(self) -> None:
        """Find the process and gdb (I/O: off the UI thread); the pane starts gdb on the answer."""
        from nsdash.inside.debugging import gdb, tools
        from nsdash.inside.debugging.pids import MachineProcesses
        from nsdash.inside.target import resolve

        try:
            target = resolve(self.subject.machine)
            procs = MachineProcesses(target)
            if self.subject.host_pid is not None:
                process = procs.by_pid(self.subject.host_pid, host=True)
            elif self.subject.unit is not None:
                host_pids, _ = procs.select(self.subject.unit)
                process = procs.by_pid(host_pids[0], host=True)  # the unit's first process
            else:
                raise NsdashError("gdb needs one process", "put the cursor on a process in the cgroup tree, "
                                                           "or on a unit in the units screen")
            argv = gdb.build_argv(tools.find("gdb"), process.host_pid, extra=["-ex", "set confirm off"])
        except NsdashError as e:
            self.post_message(self.Failed(e))
            return
        self.post_message(self.Ready(argv, f"PID {process.pid} ({process.comm}) of {self.subject.machine}"))

    def on_gdb_screen_ready(self, message: Ready) -> None:
        from nsdash.tui.console.connection import ConsoleConnection
        from nsdash.tui.console.pty_session import PtySession

        if self.stopping.is_set():
            return
        pane = self.query_one(ConsolePane)
        connection = ConsoleConnection(
            message.label, pane.model, pane._ended,
            attach=lambda _name, rows, cols: PtySession(message.argv, rows, cols, GDB_FAREWELL))
        pane.attach(message.label, connection)
        pane.border_title = Text(f"gdb: {escape(message.label)}")

    def on_console_pane_left(self, event: ConsolePane.Left) -> None:
        event.stop()
        self.app.pop_screen()

    def on_console_pane_ended(self, event: ConsolePane.Ended) -> None:
        event.stop()  # not the machine's console: the app's "machine stopped" notice does not apply
        self.notify(f"gdb ended ({escape(event.machine)})", timeout=4, markup=False)
        self.query_one(ConsolePane).detach()
        self.done.set()

    def on_unmount(self) -> None:
        # The console pane, unmounted before its screen, has closed its session by now:
        # gdb detached and quit (PtySession.close waits for it).
        super().on_unmount()
        self.done.set()
