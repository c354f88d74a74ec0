"""A machine's units: a filterable table (failed ones marked), actions on a unit, its status and journal.

All I/O goes through nsdash.inside.view.MachineUnits in thread workers, which
answer with messages; the screen only renders.  Rows are keyed by unit name, so
the cursor survives every refresh.  A slow or vanished machine shows up as a
notification and the table keeps its last contents.

Hooking it into the app (app.py / machine.py belong to the dashboard):
- machine view: a binding such as Binding("u", "units", "Units") with
  `def action_units(self): self.app.push_screen(UnitsScreen(self.machine))`;
- cgroup tree / process list, "jump to unit": for host PID P of machine M,
  `unit = procs.unit_of_process(target.resolve(M), P)` (no bus needed; in a worker),
  then `app.push_screen(UnitsScreen(M, select=unit))`;
- the command palette: ("Units: NAME", partial(app.push_screen, UnitsScreen(NAME))).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Input, Static

from nsdash.errors import NsdashError
from nsdash.inside.render import glyph
from nsdash.inside.units import UnitInfo
from nsdash.inside.view import MachineUnits, UnitsSnapshot
from nsdash.journal.entry import SHOWN_FIELD_MAX, shown
from nsdash.system.text import escape
from nsdash.tui.screens.confirm import ConfirmScreen
from nsdash.tui.widgets.edges import FocusMarkScreen
from nsdash.tui.widgets.key_footer import KeyFooter


class UnitsSource(Protocol):
    """Where the screen's units come from: the machine's bus here (MachineUnits), or the far
    side's nsdash for a machine on another host (nsdash.tui.remote_views.RemoteMachineUnits)."""

    def snapshot(self, with_files: bool = False) -> UnitsSnapshot: ...
    def detail(self, unit: str) -> _Detail: ...
    def journal(self, unit: str) -> Sequence[_Short]: ...
    def act(self, kind: str, unit: str) -> object: ...


class _Detail(Protocol):
    def text(self) -> str: ...


class _Short(Protocol):
    def short(self) -> str: ...


COLUMNS = (("unit", "Unit"), ("load", "Load"), ("active", "Active"), ("sub", "Sub"), ("description", "Description"))
CONFIRM = {"stop": "Stop", "restart": "Restart"}  # the actions that interrupt a running service
REFRESH_SECONDS = 2.0


def visible(units: tuple[UnitInfo, ...], text: str, show_all: bool, failed_only: bool) -> list[UnitInfo]:
    """The rows the table shows: a substring filter over name and description, like `list-units`' selection."""
    needle = text.strip().lower()
    rows = []
    for u in units:
        if failed_only and not u.failed:
            continue
        if not show_all and not failed_only and u.active_state == "inactive" and u.job_id is None:
            continue
        if needle and needle not in u.name.lower() and needle not in u.description.lower():
            continue
        rows.append(u)
    return rows


def row_cells(u: UnitInfo) -> tuple[Text, ...]:
    style = "bold red" if u.failed or u.load_error else ""
    mark = "● " if u.failed or u.load_error else "  "
    # Everything here came over the machine's bus: escaped, and Text (never markup); each cell
    # at most SHOWN_FIELD_MAX characters of it.  A unit file's Description may be a line of 1 MB,
    # and the table's columns fit their widest cell: every row was then painted a million cells
    # wide (about 6 ms a cell, each kept: hundreds of MB while scrolling).
    def cell(text: str) -> str:
        return escape(shown(text, SHOWN_FIELD_MAX) or "")

    return (Text(mark + cell(u.name), style=style), Text(cell(u.load_state), style="red" if u.load_error else ""),
            Text(cell(u.active_state), style=style), Text(cell(u.sub_state), style=style),
            Text(cell(u.description)))


DETAIL_LINES_MAX = 1000  # lines of a unit's status kept for the pane (the journal tail is ~10)


def detail_text(status: str) -> Text:
    """A unit's status as the pane shows it: escaped, each line at most SHOWN_MESSAGE_MAX
    characters and at most DETAIL_LINES_MAX lines.  Its Description, drop-in paths and
    conditions came from the guest's unit files: a line of a megabyte was painted whole."""
    lines = status.split("\n", DETAIL_LINES_MAX)[:DETAIL_LINES_MAX]
    return Text("\n".join(escape(shown(line) or "") for line in lines))


class UnitsScreen(FocusMarkScreen):
    """The units of one machine, over the machine's own systemd."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("slash", "focus_filter", "Filter"),
        Binding("a", "toggle_all", "All"),
        Binding("f", "toggle_failed", "Failed"),
        Binding("s", "act('start')", "Start"),
        Binding("x", "act('stop')", "Stop"),
        Binding("r", "act('restart')", "Restart"),
        Binding("l", "act('reload')", "Reload"),
        Binding("j", "toggle_journal", "Journal"),
    ]

    DEFAULT_CSS = """
    UnitsScreen #units-body { height: 1fr; }
    UnitsScreen #units-left { width: 3fr; }
    UnitsScreen #units-table { height: 1fr; }
    UnitsScreen #unit-detail-scroll { width: 2fr; }
    UnitsScreen #units-filter { height: 3; }
    """

    class Loaded(Message):
        def __init__(self, snapshot: UnitsSnapshot) -> None:
            super().__init__()
            self.snapshot = snapshot

    class DetailLoaded(Message):
        def __init__(self, unit: str, text: str) -> None:
            super().__init__()
            self.unit = unit
            self.text = text

    class Failed(Message):
        def __init__(self, what: str, error: NsdashError) -> None:
            super().__init__()
            self.what = what
            self.error = error

    class ActionDone(Message):
        def __init__(self, kind: str, unit: str, error: NsdashError | None) -> None:
            super().__init__()
            self.kind = kind
            self.unit = unit
            self.error = error

    def __init__(self, machine: str, select: str | None = None, source: UnitsSource | None = None) -> None:
        super().__init__()
        self.machine = machine
        self.source: UnitsSource = source or MachineUnits(machine, timeout=5.0)
        self.snapshot: UnitsSnapshot | None = None
        self.show_all = False
        self.failed_only = False
        self.journal_mode = False
        self._want = select  # a unit to put the cursor on once loaded (jump from a process)
        self._busy: set[str] = set()

    def compose(self) -> ComposeResult:
        yield Static(Text(f"{self.machine}: units"), id="units-info")
        with Horizontal(id="units-body"):
            with Vertical(id="units-left"):
                yield Input(placeholder="filter units (name or description)", id="units-filter")
                yield DataTable(id="units-table", cursor_type="row", classes="panel")
            with VerticalScroll(id="unit-detail-scroll", classes="panel"):
                yield Static("", id="unit-detail")
        yield KeyFooter()

    def on_mount(self) -> None:
        table = self.query_one("#units-table", DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        self.query_one("#unit-detail-scroll").border_title = "Status"
        table.focus()
        self.refresh_units()
        self.set_interval(REFRESH_SECONDS, self.refresh_units)

    def on_unmount(self) -> None:
        close = getattr(self.source, "close", None)  # a far host's connection (remote_views) ends with the screen
        if close is not None:
            close()

    # ------------------------------------------------------------ public

    @property
    def selected_unit(self) -> str | None:
        table = self.query_one("#units-table", DataTable)
        if table.row_count == 0:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except Exception:  # the cursor sits on no row while the table is being rebuilt
            return None
        return str(key.value) if key.value is not None else None

    def refresh_units(self) -> None:
        self.run_worker(self._load, thread=True, exclusive=True, group="units-load", exit_on_error=False)

    # ------------------------------------------------------------ workers (threads)

    def _load(self) -> None:
        try:
            self.post_message(self.Loaded(self.source.snapshot(with_files=self.show_all)))
        except NsdashError as e:
            self.post_message(self.Failed("listing units", e))

    def _load_detail(self, unit: str) -> None:
        try:
            if self.journal_mode:
                lines = self.source.journal(unit)
                text = "\n".join(escape(line.short()) for line in lines) or f"-- no journal lines for {unit} --"
            else:
                text = self.source.detail(unit).text()  # escaped where it is shown
            self.post_message(self.DetailLoaded(unit, text))
        except NsdashError as e:
            self.post_message(self.Failed(f"reading {unit}", e))

    def _act(self, kind: str, unit: str) -> None:
        try:
            self.source.act(kind, unit)
            self.post_message(self.ActionDone(kind, unit, None))
        except NsdashError as e:
            self.post_message(self.ActionDone(kind, unit, e))

    # ------------------------------------------------------------ messages

    def on_units_screen_loaded(self, message: Loaded) -> None:
        self.snapshot = message.snapshot
        self._render_rows()

    def on_units_screen_detail_loaded(self, message: DetailLoaded) -> None:
        if message.unit == self.selected_unit:
            self.query_one("#unit-detail", Static).update(detail_text(message.text))

    def on_units_screen_failed(self, message: Failed) -> None:
        self.notify(escape(message.error.oneline()), title=escape(f"{self.machine}: {message.what}"),
                    severity="error", timeout=8, markup=False)

    def on_units_screen_action_done(self, message: ActionDone) -> None:
        self._busy.discard(message.unit)
        if message.error is None:
            self.notify(escape(f"{message.kind} {message.unit}: done"), timeout=3, markup=False)
        else:
            self.notify(escape(message.error.oneline()), title=escape(f"{message.kind} {message.unit}"),
                        severity="error", timeout=12, markup=False)
        self.refresh_units()
        self._show_detail()

    @on(Input.Changed, "#units-filter")
    def _filter_changed(self) -> None:
        self._render_rows()

    @on(Input.Submitted, "#units-filter")
    def _filter_done(self) -> None:
        self.query_one("#units-table", DataTable).focus()

    @on(DataTable.RowHighlighted, "#units-table")
    def _row_highlighted(self) -> None:
        self._show_detail()

    # ------------------------------------------------------------ helpers

    def _render_rows(self) -> None:
        if self.snapshot is None:
            return
        table = self.query_one("#units-table", DataTable)
        current = self._want or self.selected_unit
        candidates = self.snapshot.with_unloaded() if self.show_all else self.snapshot.units
        rows = visible(candidates, self.query_one("#units-filter", Input).value, self.show_all, self.failed_only)
        wanted = [u.name for u in rows]
        existing = [str(k.value) for k in table.rows]
        if existing != wanted:
            # Order or membership changed: rebuild, then put the cursor back on the same unit.
            table.clear()
            for u in rows:
                table.add_row(*row_cells(u), key=u.name)
        else:
            for u in rows:
                for (col, _), cell in zip(COLUMNS, row_cells(u), strict=True):
                    if table.get_cell(u.name, col) != cell:
                        table.update_cell(u.name, col, cell)
        if current in wanted:
            table.move_cursor(row=wanted.index(current))
            if self._want:
                self._want = None
                self._show_detail()
        failed = self.snapshot.failed
        mode = "all" if self.show_all else "failed" if self.failed_only else "active"
        self.query_one("#units-info", Static).update(Text(
            f"{self.machine}: {len(rows)} units shown ({mode})" + (f"  ·  {failed} failed" if failed else "")))

    def _show_detail(self) -> None:
        unit = self.selected_unit
        if unit is None:
            return
        self.query_one("#unit-detail-scroll").border_title = Text(
            f"{'Journal' if self.journal_mode else 'Status'}: {escape(unit)}")
        self.run_worker(lambda: self._load_detail(unit), thread=True, exclusive=True, group="units-detail",
                        exit_on_error=False)

    # ------------------------------------------------------------ actions

    def action_focus_filter(self) -> None:
        self.query_one("#units-filter", Input).focus()

    def action_toggle_all(self) -> None:
        self.show_all = not self.show_all
        self.failed_only = False
        self._render_rows()
        if self.show_all:
            self.refresh_units()  # fetch the unit files too

    def action_toggle_failed(self) -> None:
        self.failed_only = not self.failed_only
        self._render_rows()

    def action_toggle_journal(self) -> None:
        self.journal_mode = not self.journal_mode
        self._show_detail()

    def action_act(self, kind: str) -> None:
        unit = self.selected_unit
        if unit is None:
            self.notify("no unit selected", severity="warning")
            return
        if unit in self._busy:
            self.notify(escape(f"{unit}: a job is already running"), severity="warning", markup=False)
            return

        def run(yes: bool | None = True) -> None:
            if yes:
                self._busy.add(unit)
                self.notify(escape(f"{kind} {unit}…"), timeout=3, markup=False)
                self.run_worker(lambda: self._act(kind, unit), thread=True, group="units-act", exit_on_error=False)

        if kind in CONFIRM:
            # Tab then Enter (or a click): no single key confirms (screens/confirm.py).
            self.app.push_screen(ConfirmScreen(f"{CONFIRM[kind]} {unit} in machine '{self.machine}'?",
                                               CONFIRM[kind]), run)
        else:
            run()

    def glyph_of(self, unit: str) -> str:
        """The state circle of UNIT as last loaded (for tests and the header)."""
        u = next((u for u in self.snapshot.units if u.name == unit), None) if self.snapshot else None
        return glyph(u.active_state) if u else "?"
