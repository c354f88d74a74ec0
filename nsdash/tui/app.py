"""NsdashApp: the dashboard's screens, global keys, command palette and the one poller.

The app never reads the host itself: the Poller posts snapshots and journal
lines, actions run in thread workers through LauncherActions, and the console
pane's connection reads its socket in a thread of its own.  Quitting detaches
from everything and leaves every machine running.
"""

from __future__ import annotations

import contextlib
import sys
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from rich.console import RenderableType
from textual import events
from textual.app import App
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.css.query import NoMatches
from textual.driver import Driver
from textual.drivers.linux_driver import LinuxDriver
from textual.reactive import reactive
from textual.screen import Screen
from textual.worker import get_current_worker

from nsdash.errors import NsdashError
from nsdash.system.text import escape
from nsdash.tui import gcpause, stylefiles
from nsdash.tui.actions import LauncherActions
from nsdash.tui.backlog import CountingDriver, TerminalBacklog
from nsdash.tui.history import MetricHistory
from nsdash.tui.keyfirst import KeyFirst, at_once
from nsdash.tui.messages import ActionDone, JournalLines, Snapshot, SnapshotReady
from nsdash.tui.poller import TREE_EVERY, Poller, Readers
from nsdash.tui.screens.dashboard import DashboardScreen
from nsdash.tui.widgets.cgroup_tree import CgroupTree
from nsdash.tui.widgets.cpu_table import CpuTable
from nsdash.tui.widgets.journal_pane import JournalPane
from nsdash.tui.widgets.machine_list import MachineList

if TYPE_CHECKING:
    # Loaded when first used, not at start (issue 16: first frame within 250 ms): the spawn
    # form, the units and debugging screens (D-Bus, perf, strace) and the console stack (pyte).
    # The machine, images and confirm screens too (the machine screen brings the console pane,
    # pyte's wrapper and the limits form): none is on the first frame.
    from nsdash.launcher.spec import ContainerSpec
    from nsdash.remote.target import Target
    from nsdash.tui.host_readers import FirstSnapshot
    from nsdash.tui.rulecache import RuleCache
    from nsdash.tui.screens.debugging import Subject
    from nsdash.tui.screens.images import ImagesScreen
    from nsdash.tui.screens.machine import MachineScreen
    from nsdash.tui.widgets.console_pane import ConsolePane

def _is(screen: object, which: tuple[str, str]) -> bool:
    """isinstance(SCREEN, MODULE.NAME) without importing MODULE: a screen class whose module was
    never loaded has no instance, so asking (check_action asks on every key) loads nothing."""
    loaded = sys.modules.get(which[0])
    return loaded is not None and isinstance(screen, getattr(loaded, which[1]))


IMAGES = ("nsdash.tui.screens.images", "ImagesScreen")
MACHINE = ("nsdash.tui.screens.machine", "MachineScreen")


GC_HELD_AT_MOST = 3.0  # seconds: collection resumes by then even if no snapshot came

DESTRUCTIVE = {"poweroff": "Power off", "reboot": "Reboot", "terminate": "Terminate"}


class MachineCommands(Provider):
    """Every action on every machine, in the command palette."""

    def _commands(self) -> list[tuple[str, Any, str]]:
        """The commands the app allows here and now: each names its action, and the app's
        check_action (the one place that says what is off, e.g. over -H) decides."""
        app = self.app
        assert isinstance(app, NsdashApp)
        return [(text, callback, help_text) for text, action, callback, help_text in self._all(app)
                if app.check_action(action, ()) is True]

    @staticmethod
    def _all(app: NsdashApp) -> list[tuple[str, str, Any, str]]:
        from nsdash.tui.screens.debugging import Subject

        out: list[tuple[str, str, Any, str]] = [
            ("Spawn a machine", "spawn", app.action_spawn, "open the spawn form"),
            ("Images", "images", app.action_images, "boot, clone, rename, remove and create images"),
            ("Follow all journals", "follow_all", app.action_follow_all, "merge every machine's journal in the pane"),
            ("Toggle dark/light theme", "toggle_theme", app.action_toggle_theme, ""),
        ]
        for name in app.machine_names():
            out += [
                (f"Open machine view: {name}", "view", partial(app.open_machine, name), "CPU, journal and console"),
                (f"Attach console: {name}", "attach", partial(app.open_machine, name, True), ""),
                (f"Follow journal: {name}", "journal", partial(app.follow_journal, name), ""),
                (f"Units: {name}", "units", partial(app.open_units, name), "the machine's systemd units"),
                (f"Trace (strace): {name}", "trace", partial(app.open_trace, Subject(name)), "every process, live"),
                (f"Profile (perf): {name}", "profile", partial(app.open_profile, Subject(name)),
                 "hottest functions, live"),
                (f"Power off: {name}", "machine_action", partial(app.ask_and_run, "poweroff", name), "asks first"),
                (f"Reboot: {name}", "machine_action", partial(app.ask_and_run, "reboot", name), "asks first"),
                (f"Terminate: {name}", "machine_action", partial(app.ask_and_run, "terminate", name), "asks first"),
            ]
        return out

    async def discover(self) -> Hits:
        for text, callback, help_text in self._commands():
            yield DiscoveryHit(text, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, callback, help_text in self._commands():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), callback, help=help_text)


class NsdashApp(App):
    """The nsdash dashboard."""

    TITLE = "nsdash"
    CSS_PATH = str(stylefiles.path())  # the dashboard's; other screens add their own (stylefiles.use)
    # our footer (widgets/key_footer.py) stays shown over a maximised panel, as Textual's does
    ALLOW_IN_MAXIMIZED_VIEW = "KeyFooter"
    COMMANDS = App.COMMANDS | {MachineCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("s", "spawn", "Spawn"),
        Binding("b", "spawn(True)", "Boot image", show=False),
        Binding("o", "machine_action('poweroff')", "Poweroff"),
        Binding("r", "machine_action('reboot')", "Reboot"),
        Binding("x", "machine_action('terminate')", "Terminate"),
        Binding("a", "attach", "Console"),
        Binding("j", "journal", "Journal"),
        Binding("J", "follow_all", "All journals", show=False),
        Binding("v", "view", "View"),
        Binding("u", "units", "Units"),
        Binding("T", "trace", "Trace"),
        Binding("P", "profile", "Profile"),
        Binding("D", "debug", "gdb"),
        Binding("I", "images", "Images"),
        Binding("ctrl+t", "toggle_theme", "Theme", show=False),
    ]

    selected: reactive[str | None] = reactive(None)

    def __init__(self, readers: Readers | None = None, actions: LauncherActions | None = None,
                 interval: float = 1.0, poll: bool = True, clock=time.time, hosts: list | None = None,
                 first: FirstSnapshot | None = None, rules: RuleCache | None = None,
                 process_ends: bool = False) -> None:
        """HOSTS: remote hosts (-H, nsdash.remote.target.Target): the dashboard shows theirs
        only, as machinectl -H does (nsdash.tui.remote).  FIRST: this host's readers and first
        snapshot, started before Textual was imported (nsdash.cli.dashboard); the poller takes them.
        RULES: the style rules parsed by earlier starts (nsdash.tui.rulecache), saved again if
        this one parsed any.  PROCESS_ENDS: the process ends with the app (nsdash.cli.dashboard):
        the poller's open files are left for the kernel to close then."""
        super().__init__()
        self.rules = rules
        self._save_rules = False
        self.process_ends = process_ends
        if rules is not None:
            from nsdash.tui.rulecache import RuleStylesheet

            # (nothing has been read into Textual's stylesheet yet: it reads the CSS as it runs)
            self.stylesheet = RuleStylesheet(variables=self.get_css_variables(), cache=rules)
        self.readers = readers
        self.first = first
        self.hosts = None
        if hosts:
            from nsdash.tui.remote import RemoteActions, RemoteHosts

            self.hosts = RemoteHosts(hosts, interval)
            actions = actions or RemoteActions(self.hosts)
        self.actions = actions or LauncherActions()
        self.interval = interval
        self.poll = poll
        self.clock = clock
        self.history = MetricHistory()
        self.snapshot = Snapshot(0.0)
        self.poller: Poller | None = None
        self.last_error: str | None = None
        self.following: tuple[str, ...] | None = None
        self.busy: set[tuple[str, str]] = set()
        self.key_first = KeyFirst()  # a key's frame before a flood's paints (nsdash.tui.keyfirst)
        self.backlog = TerminalBacklog()  # what the terminal has still to read (nsdash.tui.backlog)

    # Machine actions make no sense over the Images panel: hidden from its footer and off there.
    MACHINE_ACTIONS = frozenset({"machine_action", "attach", "journal", "follow_all", "view", "units", "trace",
                                 "profile", "debug", "images"})

    # Over remote hosts (-H) these would read this host (nsdash.tui.remote): off.
    # (trace runs the far host's `nsdash trace`: nsdash.tui.remote_trace)
    LOCAL_ONLY = frozenset({"profile", "debug"})

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.hosts is not None and action in self.LOCAL_ONLY:
            return False
        return not (action in self.MACHINE_ACTIONS and _is(self.screen, IMAGES))

    async def on_event(self, event: events.Event) -> None:
        # A key comes here twice: from the terminal (then forwarded to the focused widget) and,
        # unless a widget kept it, back after bubbling up, when Textual runs its binding.
        # (Forwarding marks the event itself forwarded: whether it came back is known before.)
        key, back = isinstance(event, events.Key), event.is_forwarded
        screen = self.screen if key and self.screen_stack else None
        if key and not back:
            self.key_first.arrived()
            assert isinstance(event, events.Key) and screen is not None
            if at_once(self, event) and await self._bound_at_once(event, screen):
                return
        await super().on_event(event)
        if key and (back or not event.is_forwarded):  # (not forwarded: a priority binding took it)
            # its frame drawn now, not hops later (a binding that opened a screen: that one's first frame)
            self.key_first.handled(self, screen)

    async def _bound_at_once(self, event: events.Key, screen: Screen) -> bool:
        """Run the binding of a key no widget on its way takes (keyfirst.at_once) now, not after
        it bubbled back up through every node to the focused one, a turn of the loop each;
        False if none ran (the key then goes the usual way).  As App.on_event, then App._on_key."""
        self.app_focus = True
        if self.focused:
            screen._clear_tooltip()
        if await self._check_bindings(event.key, priority=True) or await self._check_bindings(event.key):
            self.key_first.handled(self, screen)
            return True
        return False

    def get_driver_class(self) -> type[Driver]:
        # Textual's own choice, its output counted when it is the Linux terminal's (nsdash.tui.backlog)
        found = super().get_driver_class()
        return CountingDriver if found is LinuxDriver else found

    def _display(self, screen: Screen, renderable: RenderableType | None) -> None:
        # Textual's one place where a frame goes to the terminal: the frame a key waited for.
        super()._display(screen, renderable)
        self.key_first.frame()
        if self._save_rules and self.rules is not None:
            # The first full frame's style rules, as soon as it is out (a dashboard closed at once,
            # a benchmark's, never gets to on_unmount): written only if this start parsed any, in a
            # thread (a key pressed now waits for no pickle and no file).
            self._save_rules = False
            self.rules.save_soon()

    # ------------------------------------------------------------ lifecycle

    def get_default_screen(self) -> DashboardScreen:
        # The dashboard is the bottom of the stack itself, not pushed over Textual's empty default
        # screen: one screen fewer to compose, style and lay out before the first frame (issue 16).
        return DashboardScreen()

    def on_mount(self) -> None:
        # The first snapshot's frame releases the collector (gcpause); this, if none comes.
        self.set_timer(GC_HELD_AT_MOST, gcpause.release)
        if gcpause.held():  # (the dashboard's own process: nsdash.cli.dashboard holds it)
            self.set_interval(gcpause.TEND_EVERY, self._tend_gc)
        if not self.poll:
            return
        from nsdash.tui.poller import HostReaders

        make: Any = HostReaders
        first = self.first if self.readers is None and self.hosts is None else None
        if self.hosts is not None:
            from nsdash.tui.remote import RemoteReaders

            hosts = self.hosts
            make = lambda: RemoteReaders(hosts)  # noqa: E731
        # The readers open the host's files (or ssh): made in the poller's thread (or FIRST's,
        # while Textual loaded), not on the UI thread before the first frame.
        self.poller = Poller(self.readers, self.post_message, self.interval, make_readers=make, first=first)
        self.poller.start()

    def _tend_gc(self) -> None:
        """A full collection when one is due, never while a key waits for its frame (gcpause)."""
        gcpause.tend(busy=self.key_first.holding())

    def on_unmount(self) -> None:
        gcpause.untended()
        if self.rules is not None:
            self.rules.save()  # (those of the screens opened since; the first frame's write finished first)
        if self.poller is not None:
            self.poller.stop(close_readers=not self.process_ends)
        if self.first is not None:
            self.first.close()  # (its readers are the poller's, closed by it, if it took them)
        if self.hosts is not None:
            self.hosts.stop()  # (the readers stop them too; not made if the poller never ran)

    # ------------------------------------------------------------ snapshots

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        snap = message.snapshot
        if snap.errors:
            if snap.errors[0] != self.last_error:
                self.notify(escape(snap.errors[0]), title="reading the host", severity="warning", markup=False)
            self.last_error = snap.errors[0]
        if snap.machines or snap.rows or snap.unreachable or not snap.errors:
            self.snapshot = snap
            self.history.update(snap)
        self._apply()
        if self.rules is not None and not self.rules.saved_once:
            self._save_rules = True  # at the next frame: this snapshot's (see _display)
        if gcpause.held():
            self.call_after_refresh(gcpause.release)  # the first full frame is painted by then

    def show_snapshot(self) -> None:
        """Show the last snapshot on the screen on top (a screen that just mounted asks: the
        first snapshot often comes before the dashboard's panels are composed)."""
        self._apply()

    def _apply(self) -> None:
        if not self.screen_stack:
            return  # quitting: the screens are gone, and a snapshot still queued has nowhere to go
        screen = self.screen
        if isinstance(screen, DashboardScreen) or _is(screen, MACHINE):
            screen = cast("DashboardScreen | MachineScreen", screen)
            # NoMatches: the screen is not composed yet; the next snapshot will show.
            with contextlib.suppress(NoMatches):
                screen.apply(self.snapshot, self.history, self.status_text(), self.clock())

    def status_text(self) -> str:
        n = len(self.snapshot.machines)
        delay = self.poller.interval if self.poller else self.interval
        sel = f"  ·  selected: {self.selected}" if self.selected else ""
        where = ""
        if self.hosts is not None:
            down = self.snapshot.unreachable
            where = f" on {len(self.hosts.watches)} hosts" + (f"  ·  unreachable: {', '.join(down)}" if down else "")
        return f"nsdash  ·  {n} machine{'s' if n != 1 else ''}{where}  ·  refresh {delay:g} s{sel}"

    def machine_names(self) -> list[str]:
        return [m.name for m in self.snapshot.machines]

    def on_journal_lines(self, message: JournalLines) -> None:
        try:
            for pane in self.screen.query(JournalPane) if self.screen_stack else ():
                pane.show(message.machines, message.lines, message.reset, message.note)
        finally:
            if self.poller is not None:
                self.poller.journal_taken()

    # ------------------------------------------------------------ selection

    def on_machine_list_selected(self, message: MachineList.Selected) -> None:
        self.selected = message.machine

    def on_machine_list_opened(self, message: MachineList.Opened) -> None:
        self.open_machine(message.machine)

    def on_cpu_table_machine_selected(self, message: CpuTable.MachineSelected) -> None:
        self.selected = message.machine
        for ml in self.screen.query(MachineList):
            ml.select(message.machine)

    def on_cpu_table_delay_requested(self, message: CpuTable.DelayRequested) -> None:
        if self.poller is not None:
            current = self.poller.interval
            new = current + message.step if current + message.step >= 1 else current * (2 if message.step > 0 else 0.5)
            self.notify(f"refresh every {self.poller.set_interval(new):g} s", timeout=2)
            self._apply()

    def on_cpu_table_refresh_requested(self, message: CpuTable.RefreshRequested) -> None:
        if self.poller is not None:
            self.poller.refresh_now()

    def watch_selected(self, machine: str | None) -> None:
        if isinstance(self.screen, DashboardScreen):
            if self.following is None or len(self.following) <= 1:
                self.follow_journal(machine)
            info = next((m for m in self.snapshot.machines if m.name == machine), None)
            if info is not None and info.cgroup:
                screen = self.screen
                table = screen.query_one(CpuTable)
                if not table.has_focus:
                    table.select_path(info.cgroup)
            self._apply()

    def follow_journal(self, machine: str | None, again: bool = False) -> None:
        want = (machine,) if machine else None
        if again or want != self.following:
            self.following = want
            if self.poller is not None:
                self.poller.follow_journal(want, again=again)

    # ------------------------------------------------------------ screens

    def open_machine(self, name: str, console: bool = False) -> None:
        remote = None
        if self.hosts is not None:  # a machine on another host: its limits are asked of the far side
            from nsdash.tui.remote_views import RemoteMachine

            far = self._far(name)
            if far is None:
                return
            remote = RemoteMachine(*far)
        from nsdash.tui.screens.machine import MachineScreen

        screen = MachineScreen(name, remote=remote)
        self.push_screen(screen)
        self.follow_journal(name, again=True)
        self.call_after_refresh(self._apply)
        if console:
            self.call_after_refresh(screen.action_attach)

    def on_dashboard_screen_resumed(self, _message: DashboardScreen.Resumed) -> None:
        if isinstance(self.screen, DashboardScreen):
            self.follow_journal(self.selected, again=True)
            self._apply()

    def on_dashboard_screen_tree_focus(self, message: DashboardScreen.TreeFocus) -> None:
        if self.poller is not None:
            self.poller.walk_tree_every(1 if message.focused else TREE_EVERY)

    def on_machine_screen_attach_wanted(self, message: MachineScreen.AttachWanted) -> None:
        message.console.attach(message.machine, opener=self.actions.attach)

    def on_console_pane_ended(self, message: ConsolePane.Ended) -> None:
        from nsdash.tui.widgets.console_pane import ConsolePane

        if not self.screen_stack:
            return
        self.notify(escape(f"{message.machine}: {message.reason}"), severity="warning", markup=False)
        for pane in self.screen.query(ConsolePane):
            if pane.attached == message.machine:
                pane.detach(message.reason)

    # ------------------------------------------------------------ actions

    def action_view(self) -> None:
        if self.selected:
            self.open_machine(self.selected)
        else:
            self.notify("no machine selected", severity="warning")

    def open_units(self, name: str, unit: str | None = None) -> None:
        """The machine's units, over its own bus (nsdash.inside)."""
        from nsdash.tui.screens.units import UnitsScreen

        source = None
        if self.hosts is not None:  # a machine on another host: its units are asked of the far side
            from nsdash.tui.remote_views import RemoteMachineUnits

            far = self._far(name)
            if far is None:
                return
            source = RemoteMachineUnits(*far, key=name)
        self.push_screen(UnitsScreen(name, select=unit, source=source))

    def _far(self, key: str) -> tuple[Target, str] | None:
        """The host and far name of a machine keyed HOST/MACHINE (-H); None (said) if it is none."""
        from nsdash.tui.remote import split_key

        assert self.hosts is not None
        try:
            host, machine = split_key(key)
            return self.hosts.target(host), machine
        except NsdashError as e:
            self.notify(escape(e.oneline()), severity="warning", markup=False)
            return None

    def action_units(self) -> None:
        tree = self.focused if isinstance(self.focused, CgroupTree) else None
        # (over -H a process's PID is the far host's: the selected machine's units instead)
        hit = tree.process_at_cursor() if tree is not None and self.hosts is None else None
        if hit is not None:
            # A process in a machine: jump to the unit it belongs to (found in a worker:
            # it reads the process's cgroup).
            self.run_worker(partial(self._jump_to_unit, *hit), thread=True, group="units")
        elif self.selected:
            self.open_units(self.selected)
        else:
            self.notify("no machine selected", severity="warning")

    def open_trace(self, subject: Subject) -> None:
        from nsdash.tui.screens.debugging import TraceScreen

        far = None
        if self.hosts is not None:  # a machine on another host: its own host traces it
            far = self._far(subject.machine)
            if far is None:
                return
        self.push_screen(TraceScreen(subject, far))

    def open_profile(self, subject: Subject) -> None:
        """perf on the unit the units screen shows, else on the whole machine (a process has no cgroup of its own)."""
        from nsdash.tui.screens.debugging import ProfileScreen, Subject

        self.push_screen(ProfileScreen(Subject(subject.machine, unit=subject.unit)))

    def action_trace(self) -> None:
        """strace what the cursor is on: a process in the cgroup tree, a unit, else the whole machine."""
        from nsdash.tui.screens.debugging import subject_at_cursor

        subject = subject_at_cursor(self.screen, self.focused, self.selected)
        if subject is None:
            self.notify("no machine selected", severity="warning")
        else:
            self.open_trace(subject)

    def action_profile(self) -> None:
        from nsdash.tui.screens.debugging import subject_at_cursor

        subject = subject_at_cursor(self.screen, self.focused, self.selected)
        if subject is None:
            self.notify("no machine selected", severity="warning")
        else:
            self.open_profile(subject)

    def action_debug(self) -> None:
        """gdb on the process under the cgroup tree's cursor (or the selected unit's first process)."""
        from nsdash.tui.screens.debugging import GdbScreen, subject_at_cursor

        subject = subject_at_cursor(self.screen, self.focused, self.selected)
        if subject is None or (subject.host_pid is None and subject.unit is None):
            self.notify("put the cursor on a process in the cgroup tree (or pick a unit) to debug it",
                        severity="warning")
        else:
            self.push_screen(GdbScreen(subject))

    def _jump_to_unit(self, machine: str, pid: int) -> None:
        from nsdash.inside import procs, target

        try:
            unit = procs.unit_of_process(target.resolve(machine), pid)
        except (NsdashError, OSError) as e:
            self.call_from_thread(self.notify, escape(f"{machine}: {e}"), severity="warning", markup=False)
            return
        self.call_from_thread(self.open_units, machine, unit)

    def action_attach(self) -> None:
        if _is(self.screen, MACHINE):
            cast("MachineScreen", self.screen).action_attach()
        elif self.selected:
            self.open_machine(self.selected, console=True)
        else:
            self.notify("no machine selected", severity="warning")

    def action_journal(self) -> None:
        panes = list(self.screen.query(JournalPane))
        if self.selected and isinstance(self.screen, DashboardScreen):
            self.follow_journal(self.selected)
        if panes:
            panes[0].action_follow()
            panes[0].query_one("#journal-log").focus()

    def action_follow_all(self) -> None:
        names = tuple(self.machine_names())
        if names and self.poller is not None:
            self.following = names
            self.poller.follow_journal(names)

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    def action_spawn(self, boot_image: bool = False, image: str | None = None) -> None:
        self.run_worker(partial(self._load_images_then_spawn, image), thread=True, group="images")

    def _load_images_then_spawn(self, image: str | None = None) -> None:
        # over -H: the host of the image or selected machine, its images (None: this host)
        host = self.actions.spawn_host(image or self.selected) if self.hosts is not None else None
        try:
            images = self.actions.images(host) if host is not None else self.actions.images()
        except (NsdashError, OSError):
            images = {}
        self.call_from_thread(self._open_spawn_form, images, image, host)

    def _open_spawn_form(self, images: dict[str, Path], image: str | None = None, host: str | None = None) -> None:
        from nsdash.tui.screens.spawn import SpawnScreen
        from nsdash.tui.spawnform import FarSpawn

        def done(spec: ContainerSpec | FarSpawn | None) -> None:
            if isinstance(spec, FarSpawn):
                from nsdash.tui.remote import RemoteActions

                assert isinstance(self.actions, RemoteActions)
                self.run_action_worker("spawn", f"{spec.host}/{spec.machine}",
                                       partial(self.actions.spawn_far, spec.host, spec.argv))
            elif spec is not None:
                self.run_action_worker("spawn", spec.machine, partial(self.actions.spawn, spec))

        running = self.machine_names()
        if host is not None:  # over -H: that host's machines and images, by their own names
            running = [n.partition("/")[2] for n in running if n.startswith(f"{host}/")]
            image = image.partition("/")[2] if image else None
        self.push_screen(SpawnScreen(images, running, image=image, host=host), done)

    # ------------------------------------------------------------ images

    def action_images(self) -> None:
        if not _is(self.screen, IMAGES):
            from nsdash.tui.screens.images import ImagesScreen

            self.push_screen(ImagesScreen(hosts=self.hosts is not None))

    def on_images_screen_wanted(self, message: ImagesScreen.Wanted) -> None:
        """An action on an image (screens/images.py), through the CLI's backend (LauncherActions)."""
        from nsdash.tui.screens.image_forms import CreateScreen, NameScreen

        name, actions = message.image, self.actions
        if message.action == "create":
            self.push_screen(CreateScreen(actions), lambda _created: self._reload_images())
            return
        assert name is not None
        if message.action == "boot":
            self.run_action_worker("boot", name, partial(actions.boot_image, name))
        elif message.action == "ephemeral":
            self.run_action_worker("boot -x", name, partial(actions.boot_image, name, True))
        elif message.action == "spawn":
            self.action_spawn(image=name)
        elif message.action in ("clone", "rename"):
            verb, call = (("Clone", actions.clone_image) if message.action == "clone"
                          else ("Rename", actions.rename_image))

            def named(new: str | None) -> None:
                if new:
                    self.run_action_worker(message.action, name, partial(call, name, new))

            self.push_screen(NameScreen(f"{verb} image '{name}' as:", verb), named)
        elif message.action == "remove":
            def answered(yes: bool | None) -> None:
                if yes:
                    self.run_action_worker("remove", name, partial(actions.remove_image, name))

            from nsdash.tui.screens.confirm import ConfirmScreen

            self.push_screen(ConfirmScreen(f"Remove image '{name}' and its files?", "Remove", typed=name), answered)

    def _reload_images(self) -> None:
        for screen in self.screen_stack:
            if _is(screen, IMAGES):
                cast("ImagesScreen", screen).reload()

    def action_machine_action(self, action: str) -> None:
        target = cast("MachineScreen", self.screen).machine if _is(self.screen, MACHINE) else self.selected
        if not target:
            self.notify("no machine selected", severity="warning")
            return
        self.ask_and_run(action, target)

    def ask_and_run(self, action: str, name: str) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.run_action_worker(action, name, partial(getattr(self.actions, action), name))

        from nsdash.tui.screens.confirm import ConfirmScreen

        # Confirmed by typing the machine's name: no key a stray sequence can send (screens/confirm.py).
        self.push_screen(ConfirmScreen(f"{DESTRUCTIVE[action]} machine '{name}'?", DESTRUCTIVE[action], typed=name),
                         answered)

    def run_action_worker(self, action: str, name: str, call) -> None:
        if (action, name) in self.busy:
            self.notify(escape(f"{action} {name}: already in progress"), severity="warning", markup=False)
            return
        self.busy.add((action, name))
        self.notify(escape(f"{action} {name}…"), timeout=3, markup=False)

        def work() -> None:
            error = None
            try:
                call()
            except NsdashError as e:
                error = e.oneline()
            except OSError as e:
                error = f"{type(e).__name__}: {e}"
            if not get_current_worker().is_cancelled:
                self.post_message(ActionDone(action, name, error))

        self.run_worker(work, thread=True, group="actions", exit_on_error=False)

    def on_action_done(self, message: ActionDone) -> None:
        self.busy.discard((message.action, message.machine))
        if message.error:
            self.notify(escape(message.error), title=escape(f"{message.action} {message.machine} failed"),
                        severity="error", timeout=10, markup=False)
        else:
            self.notify(escape(f"{message.action} {message.machine}: done"), timeout=3, markup=False)
        if self.poller is not None:
            self.poller.refresh_now()
        self._reload_images()
