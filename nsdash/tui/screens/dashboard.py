"""The overview: machines, the CPU table, the cgroup tree and the journal of the selected machine."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Static

from nsdash.monitor.tree import CgroupNode
from nsdash.tui.history import MetricHistory
from nsdash.tui.messages import Snapshot
from nsdash.tui.screens.panels import PanelScreen
from nsdash.tui.widgets.cgroup_tree import CgroupTree
from nsdash.tui.widgets.cpu_table import CpuTable
from nsdash.tui.widgets.edges import FOCUSED
from nsdash.tui.widgets.journal_pane import JournalPane
from nsdash.tui.widgets.key_footer import KeyFooter
from nsdash.tui.widgets.machine_list import SPARK_STEP, MachineList

if TYPE_CHECKING:
    from nsdash.tui.app import NsdashApp


class StatusLine(Static):
    """One line: how many machines, the refresh delay, the last reader error."""

    def show(self, text: str) -> None:
        # Static.update() lays the screen out again even for the same text: skip that at rest, and
        # lay nothing out on a change either (one row, its size fixed by the styles: #status).
        if text != getattr(self, "_shown", None):
            self._shown = text
            self.update(Text(text), layout=False)  # never markup: it names the selected machine


class DashboardScreen(PanelScreen):
    """The overview.  It reads nothing itself: the app hands it each snapshot (apply) and
    hears from it through the messages below."""

    BINDINGS = [
        Binding("f", "toggle_maximize", "Maximise"),
        Binding("tab", "app.focus_next", "Next panel", show=False),
    ]

    _tree_shown: CgroupNode | None = None
    _resumed_once = False

    class Resumed(Message):
        """The dashboard is on top again: follow the selection's journal, show the last snapshot."""

    class TreeFocus(Message):
        """The cgroup tree gained or lost the focus: the poller walks it every refresh while
        the user is in it."""

        def __init__(self, focused: bool) -> None:
            super().__init__()
            self.focused = focused

    def compose(self) -> ComposeResult:
        yield StatusLine("nsdash", id="status")
        with Horizontal(id="top-row", classes="row"):
            hosts = getattr(self.app, "hosts", None)  # RemoteHosts over -H
            remote = hosts is not None
            # The focus's first place (Textual's auto-focus, then on_mount): with its mark from the
            # start, the auto-focus restyles it once (its :focus), not a second time for the mark
            # (each restyle of a table styles its dozen component classes too; issue 16).
            yield MachineList(id="machines", classes=f"panel {FOCUSED}", hosts=remote)
            yield CpuTable(id="cpu", classes="panel", hosts=list(hosts.watches) if hosts is not None else ())
        with Horizontal(id="bottom-row", classes="row"):
            yield CgroupTree(id="tree", classes="panel", hosts=remote)
            yield JournalPane(id="journal", classes="panel")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#machines").border_title = "Machines"
        self.query_one("#cpu").border_title = "CPU (cgtop: p t c m i % + - space)"
        self.query_one("#tree").border_title = "Control groups"
        self.query_one(MachineList).focus()
        # The first snapshot often comes before the panels are composed: shown now, it is in the
        # first frame painted (waiting for ScreenResume painted the empty panels a few times first).
        cast("NsdashApp", self.app).show_snapshot()

    def on_screen_resume(self, event: events.ScreenResume) -> None:
        if not self._resumed_once:
            # The start's resume comes right after the screen and its panels were composed and
            # styled (Textual styles each widget as it is mounted): restyling them all again was
            # a tenth of the work before the first frame (issue 16).  This handler runs before
            # Screen's own, which then skips the restyle.  Later resumes (back from the machine
            # view, a theme changed meanwhile) restyle as usual.
            self._resumed_once = True
            event.refresh_styles = False
        self.post_message(self.Resumed())

    def apply(self, snap: Snapshot, history: MetricHistory, status: str, now: float) -> None:
        """Show one refresh; NOW is the app's clock (epoch seconds), for the uptimes."""
        self.query_one(StatusLine).show(status)
        if not snap.machines and not snap.rows and snap.errors:
            return
        # A bar a SPARK_STEP samples: the column says a minute; and an idle machine's row changes
        # once a bar, not every refresh (its last 20 samples moved every bar along each second).
        self.query_one(MachineList).update_machines(snap.machines, lambda name: history.cpu_means(name, SPARK_STEP),
                                                    now)
        self.query_one(CpuTable).update_rows(snap.rows, dict(snap.machine_of), snap.notes)
        # The poller walks the tree every other refresh unless the user is in it (see
        # on_descendant_focus) and hands the same tree again in between: nothing to do then.
        if snap.tree is not None and snap.tree is not self._tree_shown:
            self._tree_shown = snap.tree
            self.query_one(CgroupTree).update_tree(snap.tree, dict(snap.commands), dict(snap.machine_of), snap.notes)

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        self.post_message(self.TreeFocus(isinstance(event.widget, CgroupTree)))


