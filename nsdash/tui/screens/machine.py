"""One machine on one screen: its CPU, memory and I/O of the last minute, its journal and its console."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Label, Sparkline, Static

from nsdash.system.text import escape
from nsdash.tui import format as fmt
from nsdash.tui.history import MetricHistory
from nsdash.tui.messages import MachineInfo, Snapshot
from nsdash.tui.screens.panels import PanelScreen
from nsdash.tui.widgets.console_pane import ConsolePane
from nsdash.tui.widgets.journal_pane import JournalPane


class MachineScreen(PanelScreen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("a", "attach", "Console"),
        Binding("f", "toggle_maximize", "Maximise"),
    ]

    def __init__(self, machine: str) -> None:
        super().__init__()
        self.machine = machine
        self._info_text = ""

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
                yield JournalPane(id="machine-journal", classes="panel")
            yield ConsolePane(id="console", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#machine-metrics").border_title = "Last minute"
        self.query_one(ConsolePane).border_title = "Console (a: attach)"

    def apply(self, snap: Snapshot, history: MetricHistory, status: str) -> None:
        info = next((m for m in snap.machines if m.name == self.machine), None)
        if not snap.machines and snap.errors:
            return
        now = self.app.clock()  # type: ignore[attr-defined]
        text = describe(info, self.machine, now)
        if text != self._info_text:  # Static.update() re-lays the screen out: only on change
            self._info_text = text
            self.query_one("#machine-info", Static).update(Text(text))  # never markup: the OS name is the guest's
        series = history.by_machine.get(self.machine)
        if series is None:
            return
        for key, values, show in (("cpu", series.cpu, fmt.percent), ("memory", series.memory, fmt.size),
                                  ("io", series.io, fmt.rate)):
            known = [v if v is not None else 0.0 for v in values]
            self.query_one(f"#spark-{key}", Sparkline).data = known
            value = show(values[-1] if values else None)
            label = self.query_one(f"#value-{key}", Label)
            if str(label.render()) != value:
                label.update(value)

    def action_attach(self) -> None:
        pane = self.query_one(ConsolePane)
        if pane.attached != self.machine:
            self.app.attach_console(pane, self.machine)  # type: ignore[attr-defined]
        pane.focus()


    def on_console_pane_left(self, event: ConsolePane.Left) -> None:
        self.query_one("#machine-journal #journal-log").focus()


def describe(info: MachineInfo | None, name: str, now: float | None = None) -> str:
    if info is None:
        return f"{name}: gone"
    now = time.time() if now is None else now
    up = fmt.uptime(now - info.started) if info.started else "-"
    kind = "boot" if info.boot_mode else "command"
    return (f"{info.name}  ·  {escape(info.state)}  ·  {escape(info.os)}  ·  {escape(info.address)}  ·  up {up}"
            f"  ·  boot #{info.boot} ({kind})  ·  leader {info.leader or '-'}")
