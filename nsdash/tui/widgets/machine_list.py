"""The machine list: one row per machine, keyed by name, cells changed in place."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from rich.style import Style
from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from nsdash.system.text import SHOWN_FIELD_MAX, escape, shown
from nsdash.tui import format as fmt
from nsdash.tui.messages import MachineInfo
from nsdash.tui.widgets.fast_table import HOST_COLUMN, Column, SelectingTable

COLUMNS = (Column("name", "Machine"), Column("state", "State"), Column("os", "OS"), Column("address", "Address"),
           Column("uptime", "Up"), Column("cpu", "CPU (1 min)"))
SPARK_WIDTH = 20
SPARK_STEP = 3  # samples a bar stands for: 20 bars, a minute at the default 1 s refresh


UP_STATES = ("running", "degraded")
STATUS_WIDTH = 32  # characters of the guest's STATUS= line shown beside a state other than running


def state_cell(m: MachineInfo) -> str:
    """The state, and while the guest is not simply running its last STATUS= line (escaped):
    a boot that hangs shows as 'starting' with what it waits for, never as running."""
    if not m.status or m.state in ("running", "orphan"):
        return m.state
    status = escape(m.status)
    if len(status) > STATUS_WIDTH:
        status = status[:STATUS_WIDTH - 1] + "…"
    return f"{m.state}: {status}"


def text_cell(value: str) -> Text:
    """A cell of text a guest or a far host wrote: a Text, never a str (DataTable reads a str
    cell as markup: "[@click=app.quit]" would be a link to an action), escaped, and at most
    SHOWN_FIELD_MAX characters of it.  The OS name is a guest's os-release ID and VERSION_ID
    (64 KiB each), a far host's list says what it likes (megabytes): the table fits each
    column to its widest cell and every row was painted that wide (as the units table was)."""
    return Text(escape(shown(value, SHOWN_FIELD_MAX) or ""))


def spark(values: list) -> str:
    """The CPU sparkline of the last SPARK_WIDTH VALUES (each a bar: MetricHistory.cpu_means):
    scaled to the busiest bar, but never finer than 5 % per full bar."""
    top = max([v for v in values if v is not None] + [5.0])
    return fmt.sparkline(values, SPARK_WIDTH, top=top)


class MachineList(SelectingTable):
    """Every registered machine with its state, OS, address, uptime and CPU sparkline."""

    COMPONENT_CLASSES = {"machine-list--running", "machine-list--transient", "machine-list--orphan"}

    class Selected(Message):
        """The cursor moved onto a machine (or the list emptied: None)."""

        def __init__(self, machine: str | None) -> None:
            super().__init__()
            self.machine = machine

    class Opened(Message):
        def __init__(self, machine: str) -> None:
            super().__init__()
            self.machine = machine

    def __init__(self, clock: Callable[[], float] = time.time, hosts: bool = False, **kw) -> None:
        super().__init__(cursor_type="row", columns=(HOST_COLUMN, *COLUMNS) if hosts else COLUMNS, **kw)
        self.clock = clock
        self.hosts = hosts
        self._rows: dict[str, tuple] = {}
        self._styles: dict[str, Style] = {}

    # ------------------------------------------------------------ public

    def update_machines(self, machines: Sequence[MachineInfo], cpu: Callable[[str], list],
                        now: float | None = None) -> None:
        """CPU: a machine's name -> its CPU chart's bars, oldest first (SPARK_STEP samples each)."""
        with self.repainting():  # the changed rows' lines marked in one refresh
            self._update_machines(machines, cpu, self.clock() if now is None else now)

    def _update_machines(self, machines: Sequence[MachineInfo], cpu: Callable[[str], list], now: float) -> None:
        self._styles = {}  # looked up once per refresh (and again after a theme change)
        seen = set()
        state_at = 2 if self.hosts else 1
        added = False
        for m in machines:
            seen.add(m.name)
            up = fmt.uptime(now - m.started) if m.started and m.state in UP_STATES else "-"
            cells: tuple[str, ...] = (m.name, state_cell(m), m.os, m.address, up, spark(cpu(m.name)))
            if self.hosts:
                cells = (m.host or "-", m.name.partition("/")[2] if m.host else m.name, *cells[1:])
            old = self._rows.get(m.name)
            if old is None:
                self.add_row(*self._styled(cells), key=m.name)
                added = True
            elif old != cells:
                self.set_cells(m.name, {col: self._styled_cell(col, new, cells[state_at]) for col, new, was
                                        in zip(self.column_keys, cells, old, strict=True) if new != was})
            self._rows[m.name] = cells
        for gone in set(self._rows) - seen:
            del self._rows[gone]
            self.remove_row(gone)
        if self.hosts and added:
            # grouped by host: a machine that appears later joins its host's rows, not the end
            keep = self._selected
            self.sort(key=lambda row: (row[0].plain, row[1].plain))
            if keep is not None:
                self.select(keep)
        if self._selected not in self._rows:
            self._announce()

    # ------------------------------------------------------------ helpers

    def _styled(self, cells: tuple) -> list:
        state = cells[2] if self.hosts else cells[1]
        return [self._styled_cell(col, c, state) for col, c in zip(self.column_keys, cells, strict=True)]

    def _styled_cell(self, col: str, value: str, state: str) -> Text:
        if col == "state":
            state = state.partition(":")[0]  # (the cell may carry the guest's STATUS= line)
            cls = ("machine-list--running" if state == "running"
                   else "machine-list--orphan" if state == "orphan" else "machine-list--transient")
            return Text(value, style=self._style(cls))
        if col == "cpu":
            return Text(value, style=self._style("machine-list--running"))
        return text_cell(value)

    def _style(self, component: str) -> Style:
        style = self._styles.get(component)
        if style is None:
            style = self._styles[component] = self.get_component_rich_style(component, partial=True)
        return style


    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.post_message(self.Opened(str(event.row_key.value)))
