"""One machine on one screen: its CPU, memory and I/O of the last minute, its journal and its console."""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Label, Sparkline, Static

from nsdash.errors import NsdashError
from nsdash.system.text import escape
from nsdash.tui import format as fmt
from nsdash.tui import stylefiles
from nsdash.tui.history import MetricHistory
from nsdash.tui.keyfirst import gate
from nsdash.tui.messages import MachineInfo, Snapshot
from nsdash.tui.screens.confirm import ConfirmScreen
from nsdash.tui.screens.limits import LimitsScreen
from nsdash.tui.screens.panels import PanelScreen
from nsdash.tui.widgets.console_pane import ConsolePane
from nsdash.tui.widgets.journal_pane import JournalPane
from nsdash.tui.widgets.key_footer import KeyFooter

if TYPE_CHECKING:
    from nsdash.tui.app import NsdashApp
    from nsdash.tui.remote_views import RemoteMachine

LIMITS_EVERY = 5.0  # seconds between looks at the limits in force (systemctl set-property elsewhere)


class MachineScreen(PanelScreen):
    """One machine.  The app hands it each snapshot (apply); attaching the console is
    asked of the app with a message, which owns the way in (LauncherActions.attach)."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("a", "attach", "Console"),
        Binding("f", "toggle_maximize", "Maximise"),
        Binding("l", "limits", "Limits"),
    ]

    class AttachWanted(Message):
        """Attach CONSOLE (a pane of this screen) to MACHINE's console."""

        def __init__(self, console: ConsolePane, machine: str) -> None:
            super().__init__()
            self.console = console
            self.machine = machine

    def __init__(self, machine: str, remote: RemoteMachine | None = None) -> None:
        """REMOTE: the far side of a machine on another host (-H): its limits are asked of it."""
        super().__init__()
        stylefiles.use(self, "machine")
        self.machine = machine
        self.remote = remote
        self.far_leader: int | None = None  # (REMOTE) its leader's PID on its own host
        self._info_text = ""
        self._net_text = ""
        self.limits: dict[str, str] = {}  # CPUQuota, MemoryMax, TasksMax ... in force
        self._cgroup: str | None = None
        self._limits_at = float("-inf")

    def compose(self) -> ComposeResult:
        yield Static(Text(self.machine), id="machine-info")
        with Horizontal(id="machine-body"):
            with Vertical(id="machine-left"):
                with Vertical(id="machine-metrics", classes="panel"):
                    for key, label in (("cpu", "CPU %"), ("memory", "Memory"), ("io", "I/O")):
                        with Horizontal(classes="metric"):
                            yield Label(label, classes="metric-label")
                            yield Sparkline([], id=f"spark-{key}", classes="metric-spark")
                            yield Label("-", id=f"value-{key}", classes="metric-value")
                yield Static("", id="machine-net")  # shown while the machine has links of its own
                yield JournalPane(id="machine-journal", classes="panel")
            yield ConsolePane(id="console", classes="panel")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#machine-metrics").border_title = "Last minute"
        self.query_one(ConsolePane).border_title = "Console (a: attach)"

    def apply(self, snap: Snapshot, history: MetricHistory, status: str, now: float) -> None:
        """Show one refresh; NOW is the app's clock (epoch seconds), for the uptime."""
        info = next((m for m in snap.machines if m.name == self.machine), None)
        if not snap.machines and snap.errors:
            return
        cgroup = limits_cgroup(info)
        if cgroup is not None and time.monotonic() - self._limits_at > LIMITS_EVERY:
            self._cgroup = cgroup
            self._fetch_limits()
        text = describe(info, self.machine, now, self.limits, self.far_leader)
        if text != self._info_text:  # only on change, and no layout: the line's size is fixed (one row)
            self._info_text = text
            self.query_one("#machine-info", Static).update(Text(text), layout=False)  # never markup: the OS
            # name is the guest's.  A layout of the whole screen costs tens of ms under a flood, and the
            # uptime in this line changes every second.
        self._show_links(info)
        series = history.by_machine.get(self.machine)
        if series is None:
            return
        for key, values, show in (("cpu", series.cpu, fmt.percent), ("memory", series.memory, fmt.size),
                                  ("io", series.io, fmt.rate)):
            known = [v if v is not None else 0.0 for v in values]
            self.query_one(f"#spark-{key}", Sparkline).data = known
            value = show(values[-1] if values else None) + self._limit_text(key)
            label = self.query_one(f"#value-{key}", Label)
            if str(label.render()) != value:
                label.update(value, layout=False)  # a fixed width (styles: .metric-value): no layout

    def _show_links(self, info: MachineInfo | None) -> None:
        net = self.query_one("#machine-net", Static)
        text = links_line(info)
        net.display = bool(text)
        if text != self._net_text:
            self._net_text = text
            net.update(Text(text))  # never markup: the link names are the guest's

    def on_unmount(self) -> None:
        if self.remote is not None:
            self.remote.close()  # its ssh connection ends with the screen

    def action_attach(self) -> None:
        pane = self.query_one(ConsolePane)
        if pane.attached != self.machine:
            self.post_message(self.AttachWanted(pane, self.machine))
        pane.focus()


    def on_console_pane_left(self, event: ConsolePane.Left) -> None:
        # The screen's set_focus, not the log's focus(): that repaints every line of the log
        # first (a flooding log's), for a focus change the log does not show (follow_log.py).
        self.set_focus(self.query_one("#machine-journal #journal-log"))
        gate(self.app).handled(self.app, self)  # the pane kept ctrl+]: its effect is this, drawn now (nsdash.tui.keyfirst)

    # ---- limits: read in a thread worker, shown beside usage, changed through the launcher

    def _limit_text(self, key: str) -> str:
        if key == "memory" and "MemoryMax" in self.limits:
            return f" / {fmt.size(float(self.limits['MemoryMax']))}"
        if key == "cpu" and "CPUQuota" in self.limits:
            return f" / {self.limits['CPUQuota']}"
        return ""

    def _fetch_limits(self) -> None:
        self._limits_at = time.monotonic()
        cgroup, remote = self._cgroup, self.remote
        if cgroup is None and remote is None:
            return
        app = cast("NsdashApp", self.app)

        def work() -> None:
            try:
                if remote is not None:
                    far = remote.status()
                    found, self.far_leader = far.limits, far.leader
                else:
                    found = app.actions.limits(self.machine, cgroup or "")
            except (NsdashError, OSError, AttributeError):
                return  # unknown stays unshown
            app.call_from_thread(self._got_limits, found)

        self.run_worker(work, thread=True, group="limits", exclusive=True, exit_on_error=False)

    def _got_limits(self, found: dict[str, str]) -> None:
        self.limits = dict(found)
        self._info_text = ""  # redrawn with the next snapshot

    def action_limits(self) -> None:
        """Change the CPU quota, memory limit and tasks limit live, after confirmation."""
        app = cast("NsdashApp", self.app)
        cgroup = self._cgroup
        if cgroup is None:
            app.notify(f"{self.machine}: not running", severity="warning")
            return

        def confirmed(assignments: list[str], yes: bool | None) -> None:
            def change() -> None:  # in the action worker's thread
                app.actions.set_limits(self.machine, cgroup, assignments)
                app.call_from_thread(self._fetch_limits)  # show what is in force now

            if yes:
                app.run_action_worker("set limits", self.machine, change)

        def edited(assignments: list[str] | None) -> None:
            if assignments:
                # confirmed by typing the machine's name, as every action on a machine (screens/confirm.py)
                app.push_screen(ConfirmScreen(f"Set {' '.join(assignments)} on machine '{self.machine}'?", "Set",
                                              typed=self.machine), partial(confirmed, assignments))

        app.push_screen(LimitsScreen(self.machine, self.limits), edited)


def limits_cgroup(info: MachineInfo | None) -> str | None:
    """Where the machine's limits are read and set: its cgroup here; "" for a running far
    machine (-H: its cgroup path means nothing here, its host reads and sets them); None: nowhere."""
    if info is None:
        return None
    if info.host is not None:  # (running, degraded, starting...: its host answers, or says why not)
        return "" if info.state != "unreachable" else None
    return info.cgroup or None


def describe(info: MachineInfo | None, name: str, now: float | None = None,
             limits: dict[str, str] | None = None, far_leader: int | None = None) -> str:
    """The view's one line.  FAR_LEADER: a machine on another host (-H) has its leader there."""
    if info is None:
        return f"{name}: gone"
    now = time.time() if now is None else now
    up = fmt.uptime(now - info.started) if info.started else "-"
    kind = "boot" if info.boot_mode else "command"
    tasks = f"  ·  tasks ≤ {escape(limits['TasksMax'])}" if limits and "TasksMax" in limits else ""
    return (f"{info.name}  ·  {escape(info.state)}  ·  {escape(info.os)}  ·  {escape(info.address)}  ·  up {up}"
            f"  ·  boot #{info.boot} ({kind})  ·  leader {_leader(info, far_leader)}{tasks}")


def _leader(info: MachineInfo, far_leader: int | None) -> str:
    if info.host is not None:
        return f"{far_leader or '-'} on {escape(info.host)}"
    return str(info.leader or "-")


def links_line(info: MachineInfo | None) -> str:
    """The machine's links with their receive and send rates ("" when it has none of its own)."""
    if info is None or not info.links:
        return ""
    return "Network  " + "  ·  ".join(f"{escape(link.name)} ↓ {fmt.rate(link.rx)} ↑ {fmt.rate(link.tx)}"
                                      for link in info.links)
