"""The cgtop-style table: rows keyed by cgroup path, updated in place, sorted like systemd-cgtop.

Over remote hosts (-H, HOSTS true) a row's key is "/HOST/PATH" (nsdash.tui.remote):
a Host column comes first and the Control Group column shows the far PATH, or the
row's note ("unreachable") instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.text import Text
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

from nsdash.monitor.display import Row, ellipsize, format_timespan, order_rows
from nsdash.system.text import escape
from nsdash.tui import format as fmt
from nsdash.tui.messages import split_path
from nsdash.tui.widgets.fast_table import HOST_COLUMN, Column, FastTable


def figure(key: str, label: str, width: int) -> Column:
    """A figure's column: headed to the right, as its numbers are, and of a fixed width."""
    return Column(key, Text(label, justify="right"), width)


# Fixed widths for the figures: measuring thousands of changed cells each refresh
# to fit the columns would cost more than everything else together.
COLUMNS = (Column("path", "Control Group"), figure("tasks", "Tasks", 5), figure("cpu", "%CPU", 9),
           figure("memory", "Memory", 7), figure("input", "Input/s", 9), figure("output", "Output/s", 9))
HOST_WIDTH = 16  # the most the Host column takes (a longer name is ellipsized): the paths need the room
ORDERS = {"path": "path", "tasks": "tasks", "cpu": "cpu", "memory": "memory", "io": "io"}

NUMBERS_WIDTH = sum(c.width or 0 for c in COLUMNS[1:]) + 2 * len(COLUMNS[1:])  # the figures with their cell padding


class PathCell(Text):
    """The Control Group cell: shows the path escaped (a guest names its cgroups) and ellipsized,
    remembers it whole (the sort key)."""

    def __init__(self, path: str, width: int, shown: str | None = None) -> None:
        """PATH: the row's key; SHOWN: what to show instead of it (a far host's own path)."""
        shown = escape(path if shown is None else shown)
        super().__init__(ellipsize(shown, width) if len(shown) > width else shown)
        self.path = path


def cells_of(row: Row, cpu_time: bool) -> tuple[str, ...]:
    cpu = format_timespan(row.cpu_usec) if cpu_time and row.cpu_usec is not None else (
        "-" if cpu_time else fmt.percent(row.cpu_percent))
    return (row.path, "-" if row.tasks is None else str(row.tasks), cpu, fmt.size(row.memory),
            fmt.rate(row.io_read_bps), fmt.rate(row.io_write_bps))


def display_order(rows: Sequence[Row], order: str, cpu_time: bool = False) -> list[str]:
    """The paths in systemd-cgtop's order, %CPU ranked as shown (to 0.1): rows that both read
    0.0 keep their order (by path) instead of trading places on differences nobody can see,
    which would re-sort and repaint the table every refresh."""
    if order == "cpu" and not cpu_time:
        rows = [r._replace(cpu_percent=round(r.cpu_percent, 1)) if r.cpu_percent else r for r in rows]
    return [r.path for r in order_rows(rows, ORDERS[order], cpu_time)]


class CpuTable(FastTable):
    """Control Group, Tasks, %CPU, Memory, Input/s, Output/s, with systemd-cgtop's keys."""

    BINDINGS = [
        Binding("p", "order('path')", "Path", show=False),
        Binding("t", "order('tasks')", "Tasks", show=False),
        Binding("c", "order('cpu')", "CPU", show=False),
        Binding("m", "order('memory')", "Mem", show=False),
        Binding("i", "order('io')", "I/O", show=False),
        Binding("percent_sign", "toggle_cpu_time", "%/time", show=False),
        Binding("plus", "delay(1)", "+delay", show=False),
        Binding("minus", "delay(-1)", "-delay", show=False),
        Binding("space", "refresh_now", "Refresh", show=False),
    ]

    order: reactive[str] = reactive("cpu")
    cpu_time: reactive[bool] = reactive(False)

    _view_still = False  # the cursor moved with its row in a new order: the view stays (_reorder)

    class OrderChanged(Message):
        def __init__(self, order: str, cpu_time: bool) -> None:
            super().__init__()
            self.order = order
            self.cpu_time = cpu_time

    class DelayRequested(Message):
        def __init__(self, step: int) -> None:
            super().__init__()
            self.step = step

    class RefreshRequested(Message):
        pass

    class MachineSelected(Message):
        def __init__(self, machine: str) -> None:
            super().__init__()
            self.machine = machine

    def __init__(self, hosts: Sequence[str] = (), **kw) -> None:
        """HOSTS: the remote hosts' names (-H), for a Host column as wide as the longest."""
        host_width = min(HOST_WIDTH, max([4, *(len(h) for h in hosts)]))
        super().__init__(cursor_type="row", zebra_stripes=False, columns=(
            (HOST_COLUMN._replace(width=host_width), *COLUMNS) if hosts else COLUMNS), **kw)
        self.hosts = bool(hosts)
        self._host_width = host_width
        self._notes: Mapping[str, str] = {}
        self._rows: dict[str, tuple[str, ...]] = {}
        self._figures: dict[str, tuple] = {}  # what each row's cells were made from (update_rows)
        self._last: Sequence[Row] = ()
        self.orderings = 0  # times the rows were ranked (display_order): tests read it
        self.machine_of: dict[str, str] = {}

    # ------------------------------------------------------------ public

    def update_rows(self, rows: Sequence[Row], machine_of: dict[str, str] | None = None,
                    notes: Mapping[str, str] | None = None) -> None:
        """Apply a snapshot: add, change and drop rows by path; then order them.  NOTES: what the
        Control Group column says instead of a row's path (a remote host "unreachable")."""
        with self.repainting():  # a line whose cells changed and whose row moved: marked once
            self._update_rows(rows, machine_of, notes)

    def _update_rows(self, rows: Sequence[Row], machine_of: dict[str, str] | None,
                     notes: Mapping[str, str] | None) -> None:
        self._last = rows
        if machine_of is not None:
            self.machine_of = dict(machine_of)
        if notes is not None:
            self._notes = notes
        cursor_key = self._cursor_key()
        seen = set()
        ranked = self._ranked_cell()
        reorder = ranked is None
        figures = self._figures
        cpu_time = self.cpu_time  # (a reactive: read once, not once a row; 5,000 rows on a big host)
        for row in rows:
            seen.add(row.path)
            old = self._rows.get(row.path)
            # At rest most cgroups read as they did a second ago (two thirds of 80 here): the
            # same figures (and note, and %CPU or CPU time) are the same cells, not formatted again.
            shown = (row.tasks, row.cpu_percent, row.cpu_usec, row.memory, row.io_read_bps, row.io_write_bps,
                     cpu_time, self._notes.get(row.path) if self.hosts else None)
            if old is not None and figures.get(row.path) == shown:
                continue
            figures[row.path] = shown
            cells = cells_of(row, cpu_time)
            if self.hosts:
                cells = (*self._host_and_path(row.path), *cells[1:])
            if old is None:
                self.add_row(*self._styled(cells, row.path), key=row.path)
                reorder = True
            elif old != cells:
                self.set_cells(row.path, {col: self._styled_cell(col, new, row.path) for col, new, was
                                          in zip(self.column_keys, cells, old, strict=True) if new != was})
                reorder = reorder or (ranked is not None and ranked >= 0 and cells[ranked] != old[ranked])
            self._rows[row.path] = cells
        gone = set(self._rows) - seen
        for path in gone:
            del self._rows[path]
            figures.pop(path, None)
        if gone:
            self.remove_rows(gone)
            reorder = True
        self._reorder(cursor_key, reorder)

    def _ranked_cell(self) -> int | None:
        """Where the order reads a figure that its cell shows exactly (%CPU to 0.1, as
        display_order ranks it; tasks): the cell's index, -1 for the path (a row's own key);
        None where it ranks on more than is shown (memory, I/O, CPU time).  With the same rows
        and the same such cells, the order is the one shown: nothing to sort at rest."""
        if self.order == "path":
            return -1
        if (self.order == "cpu" and not self.cpu_time) or self.order == "tasks":
            return self.column_keys.index(self.order)
        return None

    def selected_path(self) -> str | None:
        return self._cursor_key()

    def select_path(self, path: str) -> None:
        if path in self._rows:
            self._view_still = False  # a machine picked elsewhere: its row is scrolled to
            self.move_cursor(row=self.get_row_index(path))

    # ------------------------------------------------------------ watchers

    def watch_order(self) -> None:
        self._reorder(self._cursor_key())

    def watch_cpu_time(self) -> None:
        if self._last:
            self.update_rows(self._last)

    # ------------------------------------------------------------ helpers

    def _styled(self, cells: tuple[str, ...], key: str) -> list[Text | str]:
        return [self._styled_cell(col, c, key) for col, c in zip(self.column_keys, cells, strict=True)]

    def _styled_cell(self, col: str, value: str, key: str) -> Text | str:
        if col == "path":
            return PathCell(key, self._path_width(), value)
        if col == "host":
            shown = escape(value)
            return Text(ellipsize(shown, self._host_width) if len(shown) > self._host_width else shown)
        return Text(value, justify="right")

    def _host_and_path(self, key: str) -> tuple[str, str]:
        """A remote row's key "/HOST/PATH" as its Host and Control Group cells (its note, if any)."""
        host, path = split_path(key)
        return host, self._notes.get(key) or path

    def _path_width(self) -> int:
        # Room is kept for the vertical scrollbar: it comes with the rows, not with a resize.
        room = self.size.width - NUMBERS_WIDTH - 2 - self.styles.scrollbar_size_vertical
        if self.hosts:
            room -= self._host_width + 2
        return max(16, room) if self.size.width else 60

    def on_resize(self) -> None:
        width = self._path_width()
        if width != getattr(self, "_shown_width", None):
            self._shown_width = width
            for path, shown in self._rows.items():
                self.update_cell(path, "path", PathCell(path, width, shown[1] if self.hosts else path))
            # DataTable only ever widens a column: fit it to the ellipsized paths, or the
            # figures stay off to the right when the terminal narrows.
            column = self.columns.get(ColumnKey("path"))
            if column is not None:
                cells = (self.get_cell(path, "path").cell_len for path in self._rows)
                column.content_width = max([column.label.cell_len, *cells])
                self._require_update_dimensions = True
            self._reorder(self._cursor_key())

    def _cursor_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return str(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)
        except Exception:  # noqa: BLE001 - an out-of-range cursor just means "none"
            return None

    def _reorder(self, cursor_key: str | None, order_may_change: bool = True) -> None:
        if not self._last:
            return
        if order_may_change:
            self.orderings += 1
            wanted = [path for path in display_order(self._last, self.order, self.cpu_time) if path in self._rows]
            if len(wanted) == len(self._rows):
                self.put_in_order(wanted)  # repaints the rows that moved, only
            else:  # (a shown row the last snapshot lacks: ranked last, as before)
                rank = {path: i for i, path in enumerate(wanted)}
                self.sort("path", key=lambda cell: rank.get(getattr(cell, "path", str(cell)), 1 << 30))
        if cursor_key is not None and cursor_key in self._rows:
            row = self.get_row_index(cursor_key)
            if row != self.cursor_row:
                # The highlight goes with its row; the view chases it only while the user is in
                # the table.  Else it stays where it is, as systemd-cgtop's does: the selected
                # machine's idle row trades places with the other idle machines' every refresh
                # or two, and chasing it scrolled (and repainted) the whole table each time.
                self._view_still = not self.has_focus
                if self._view_still:
                    self._carry_cursor(row)
                else:
                    self.move_cursor(row=row, animate=False)

    def _carry_cursor(self, row: int) -> None:
        """The cursor's row moved to ROW: the highlight goes with it, as a new place for the same
        row, not a move.  DataTable's cursor watcher would post RowHighlighted for it, a message
        through the table, the screen and the app each refresh the selected machine's idle row
        trades places (at rest, most refreshes), for a row highlighted already."""
        old = self.cursor_row
        self.set_reactive(DataTable.cursor_coordinate, Coordinate(row, self.cursor_column))
        self.refresh_rows((old, row))  # (both lines show another row: put_in_order marked them already)

    def _scroll_cursor_into_view(self, animate: bool = False) -> None:
        # DataTable scrolls to the cursor on every move (its cursor watcher too, and after a
        # refresh while its size is pending): not while the view stays (_reorder).
        if self._view_still and not self.has_focus:
            return
        super()._scroll_cursor_into_view(animate=animate)

    # ------------------------------------------------------------ actions

    def action_order(self, order: str) -> None:
        self.order = order
        self.post_message(self.OrderChanged(self.order, self.cpu_time))

    def action_toggle_cpu_time(self) -> None:
        self.cpu_time = not self.cpu_time
        self.post_message(self.OrderChanged(self.order, self.cpu_time))

    def action_delay(self, step: int) -> None:
        self.post_message(self.DelayRequested(step))

    def action_refresh_now(self) -> None:
        self.post_message(self.RefreshRequested())

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        machine = self.machine_of.get(str(event.row_key.value))
        if machine and self.has_focus:
            self.post_message(self.MachineSelected(machine))
