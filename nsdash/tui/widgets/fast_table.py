"""A DataTable whose unchanged cells are never rendered twice.

Textual's DataTable keys its cell cache on a table-wide update counter, so one
changed cell (a CPU figure, an uptime) re-renders every visible cell of every
row through Rich's Padding/Styled machinery: at a 1 s refresh that was most of
the dashboard's CPU at rest.  FastTable caches each cell's segments under its
row and column keys instead, good while the cell holds the same object (a
changed cell is a new one) at the same width and highlight, each cell marked
with its place (the row and column mouse clicks read) while it stays there, and
each row's line under the row's own version; it renders the one-line cells our tables
hold straight to segments.  set_cells() repaints
just the changed row (update_cell() repaints the whole table, and finds a
row's place by summing every row above it); put_in_order() re-orders the rows and
repaints just the lines that show another row (sort() repaints them all), and so do rows
added and remove_rows(), with the lines past the rows' new end (DataTable repaints all).
A row's repaint covers its cells in view, not the scrollbar and border beside them (DataTable's spans the
virtual width, so every frame that repainted a row painted the bar's lines too), and within
repainting() each line is marked once, in one refresh, when the update is done (a refresh
changed a row's cells, then moved it: the same line marked twice, each mark a walk through
Textual's refresh).  Everything else (cursor, keys, mouse, scrolling, sorting, events, CSS)
is DataTable's own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar, NamedTuple, Self

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual._segment_tools import line_crop
from textual._two_way_dict import TwoWayDict
from textual.geometry import Region, Size
from textual.strip import Strip
from textual.widgets import DataTable
from textual.widgets._data_table import CellKey, default_cell_formatter

from nsdash.tui.widgets.steady import SteadyScrollbars

CACHE_SIZE = 4096  # lines: a few screens' worth, cleared wholesale when full
CELLS_KEPT = 65536  # cells, the last look of each


def cell_segments(text: Text, width: int, padding: int, console, style: Style, post: Style) -> list[Segment]:
    """One line of WIDTH cells: padding, TEXT cropped and aligned as it asks, padding."""
    inner = max(0, width - 2 * padding)
    text = text.copy()
    text.end = ""
    if text.cell_len > inner:
        text.truncate(inner, overflow=text.overflow)  # None: crop, as DataTable does
    excess = inner - text.cell_len
    if excess > 0:
        if text.justify == "right":
            text.pad_left(excess)
        elif text.justify == "center":
            text.pad_left(excess // 2)
            text.pad_right(excess - excess // 2)
        else:
            text.pad_right(excess)
    pad = Segment(" " * padding) if padding else None
    body = list(text.render(console))
    if text.style:  # render() leaves the base style to the caller
        body = list(Segment.apply_style(body, console.get_style(text.style)))
    segments = ([pad] if pad else []) + body + ([pad] if pad else [])
    return list(Segment.simplify(Segment.apply_style(segments, style, post)))


STYLES_KEPT = 65536  # styles marked with a place (with_place), cleared wholesale when full
_placed_styles: dict[tuple[Style | None, int, int], Style] = {}


def with_place(segments: list[Segment], row: int, column: int) -> list[Segment]:
    """The cell's segments marked with its place, as DataTable's mouse handling reads it from the meta."""
    # Each style marked with each place is made once: Rich's Style + merges the two metas through
    # marshal (about 25 us a cell), and a re-ranked table marks every cell of every row moved.
    # A table's cells share a few styles, so this holds about styles x rows x columns.
    placed = _placed_styles
    out = []
    for text, style, control in segments:
        marked = placed.get((style, row, column))
        if marked is None:
            if len(placed) >= STYLES_KEPT:
                placed.clear()
            place = Style.from_meta({"row": row, "column": column})
            marked = placed[style, row, column] = style + place if style else place
        out.append(Segment(text, marked, control))
    return out


class Paint(NamedTuple):
    """The table-wide inputs of one paint: part of every cached line's key."""

    style: Style
    widths: tuple[int, ...]
    width: int
    show_cursor: bool
    show_hover: bool
    simple: bool  # a row cursor and none of zebra stripes, row labels, fixed rows or columns
    header: int  # lines above the first row
    columns: tuple = ()  # the columns' keys in their order


class Column(NamedTuple):
    """One column of a FastTable: its key, its header, its width (None: fitted to the cells)."""

    key: str
    label: str | Text
    width: int | None = None


HOST_COLUMN = Column("host", "Host")  # first, over remote hosts (-H): a row's key is then HOST/NAME


class FastTable(DataTable, SteadyScrollbars):
    """DataTable with per-cell and per-row render caches (see the module docstring), and
    columns given once at construction, added before the first row whenever that comes."""

    # A row more or less is a new virtual size; the panes' boxes come from the stylesheet, so
    # that repaints the table and its scrollbar and lays nothing else out (steady.py).
    steady_virtual_size = True

    # (class-level: DataTable's __init__ already repaints rows, before ours runs)
    _pending_lines: set[int] | None = None  # rows to repaint when repainting() ends
    _new_height: tuple[int, int] | None = None  # rows came or went: the lines between the two ends (refresh)
    _tall_rows = False  # a row more than one line high was added: DataTable places the rows

    def __init__(self, *args, columns: Sequence[Column] = (), **kw) -> None:
        super().__init__(*args, **kw)
        self._columns = tuple(columns)
        self._fast_cells: dict[tuple, tuple[object, tuple, list[Segment]]] = {}
        self._fast_bodies: dict[tuple, list[Segment]] = {}  # a cell's look -> its segments (_body_of)
        self._fast_lines: dict[tuple, Strip] = {}
        self._fast_placed: dict[tuple[int, int], tuple[list[Segment], list[Segment]]] = {}  # place -> body, marked
        self._versions: dict[object, int] = {}  # row key -> bumped whenever one of its cells changes
        self._version = 0
        self._paint: Paint | None = None
        self._painted_widths: tuple[int, ...] = ()

    # ------------------------------------------------------------ columns

    @property
    def column_keys(self) -> tuple[str, ...]:
        """The keys of the columns given at construction, in their order (as a row's cells are)."""
        return tuple(column.key for column in self._columns)

    def on_mount(self) -> None:
        self._add_columns()

    def _add_columns(self) -> None:
        # From add_row too: a screen may show a snapshot in a table before the table's own
        # on_mount ran (CI once failed with 'More values provided than there are columns.').
        if not self.columns:
            for column in self._columns:
                # As Text: DataTable reads a str label as Rich markup with emoji codes, which
                # loaded rich's table of 3,600 emoji names before the first frame (issue 16).
                label = Text(column.label) if isinstance(column.label, str) else column.label
                self.add_column(label, key=column.key, width=column.width)

    # ------------------------------------------------------------ caches

    def _bump(self, row_key: object) -> None:
        self._version += 1
        self._versions[row_key] = self._version

    def _clear_caches(self) -> None:
        super()._clear_caches()
        self._fast_cells.clear()
        self._fast_bodies.clear()
        self._fast_lines.clear()
        self._fast_placed.clear()

    def notify_style_update(self) -> None:
        self._fast_cells.clear()
        self._fast_bodies.clear()
        self._fast_lines.clear()
        self._fast_placed.clear()
        super().notify_style_update()

    def render_lines(self, crop: Region) -> list[Strip]:
        # What every line needs but costs a walk over the DOM or reactives: once per paint.
        self._paint = self._paint_state()
        if self._paint.widths != self._painted_widths:
            # DataTable caches the header's line without the column widths in its key, so a
            # column widened without a table-wide update (set_cells, a fitted path column)
            # would keep an old-width header over new-width rows.
            self._painted_widths = self._paint.widths
            DataTable._clear_caches(self)
        try:
            return super().render_lines(crop)
        finally:
            self._paint = None

    def _paint_state(self) -> Paint:
        return Paint(self.rich_style, tuple(c.get_render_width(self) for c in self.ordered_columns),
                     self.size.width, self.show_cursor, self._show_hover_cursor,
                     self.cursor_type == "row" and not (self.zebra_stripes or self._should_render_row_labels
                                                        or self.fixed_rows or self.fixed_columns),
                     self.header_height if self.show_header else 0,
                     tuple(column.key for column in self.ordered_columns))

    def render_line(self, y: int) -> Strip:
        paint = self._paint or self._paint_state()
        if not paint.simple or y < paint.header:
            return super().render_line(y)
        scroll_x, scroll_y = self.scroll_offset
        return self._line(paint, y + scroll_y - paint.header, scroll_x, scroll_x + paint.width)

    def _line(self, paint: Paint, index: int, x1: int, x2: int) -> Strip:
        """A data row's line, cached by the row's own version rather than the table's."""
        if not 0 <= index < self.row_count:
            return Strip.blank(paint.width, paint.style)
        row_key = self._row_locations.get_key(index)
        cursor = self.cursor_coordinate.row == index
        hover = self.hover_coordinate.row == index
        key = (row_key, index, self._versions.get(row_key), cursor, hover, x1, x2, paint, self._pseudo_class_state)
        strip = self._fast_lines.get(key)
        if strip is None:
            strip = self._row_line(paint, index, x1, x2, cursor, hover)
            if len(self._fast_lines) >= CACHE_SIZE:
                self._fast_lines.clear()
            self._fast_lines[key] = strip
        return strip

    def _row_line(self, paint: Paint, index: int, x1: int, x2: int, cursor: bool, hover: bool) -> Strip:
        """One data row as DataTable draws it with a row cursor: its cells, then its style out to the edge."""
        segments: list[Segment] = []
        placed = self._fast_placed
        # What _cell_body looks up per cell (the row's key and cells, the reactives in the look),
        # once per row: a row whose cells are kept takes them here, only a changed one goes there.
        row_key = self._row_locations.get_key(index)
        values = None
        if row_key is not None:
            row = self.rows.get(row_key)
            if row is not None and row.height == 1:
                values = self._data.get(row_key)
        kept_cells = self._fast_cells
        look_end = (cursor, hover, paint.show_hover, paint.show_cursor, self._pseudo_class_state)
        for column_index, (column_key, width) in enumerate(zip(paint.columns, paint.widths, strict=True)):
            body = None
            if values is not None:  # (a simple paint has no fixed rows or columns: the look's first two)
                kept = kept_cells.get((row_key, column_key))
                if kept is not None and kept[0] is values.get(column_key) and \
                        kept[1] == (False, False, column_index, paint.style, width, *look_end):
                    body = kept[2]
            if body is None:
                body = self._cell_body(index, column_index, paint.style, width, cursor, hover)
            if body is None:
                segments += self._render_cell(index, column_index, paint.style, width, cursor, hover)[0]
                continue
            # A row repainted for one changed cell re-marks only that cell with its place: the
            # others' bodies are the same objects (the cell cache) at the same place.
            marked = placed.get((index, column_index))
            if marked is None or marked[0] is not body:
                if len(placed) >= CELLS_KEPT:
                    placed.clear()
                marked = placed[index, column_index] = (body, with_place(body, index, column_index))
            segments += marked[1]
        highlight, _ = self._get_styles_to_render_cell(False, False, False, hover, cursor, paint.show_cursor,
                                                       paint.show_hover, False, False)
        extend = self._beyond(paint.style + highlight, index)
        segments.append(Segment(" " * max(0, paint.width - sum(paint.widths)), extend))
        # Cells come simplified and no two cells share a style (each carries its place): no simplify().
        return Strip(line_crop(segments, x1, x2, paint.width)).adjust_cell_length(paint.width, paint.style)

    @staticmethod
    def _beyond(style: Style, index: int) -> Style:
        """STYLE marked as row INDEX's space right of the last column (made once, as in with_place)."""
        placed = _placed_styles
        marked = placed.get((style, index, -1))
        if marked is None:
            if len(placed) >= STYLES_KEPT:
                placed.clear()
            marked = placed[style, index, -1] = style + Style.from_meta(
                {"row": index, "column": 0, "out_of_bounds": True})
        return marked

    # ------------------------------------------------------------ cells

    def _render_cell(self, row_index: int, column_index: int, base_style: Style, width: int,
                     cursor: bool = False, hover: bool = False) -> list[list[Segment]]:
        body = self._cell_body(row_index, column_index, base_style, width, cursor, hover)
        if body is None:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        return [with_place(body, row_index, column_index)]

    def _cell_body(self, row_index: int, column_index: int, base_style: Style, width: int,
                   cursor: bool, hover: bool) -> list[Segment] | None:
        """A one-line cell's segments without its place (row, column) in their meta; None: not ours."""
        header = row_index == -1
        row_key = self._header_row_key if header else self._row_locations.get_key(row_index)
        column_key = self._column_locations.get_key(column_index)
        if column_index < 0 or row_key is None or column_key is None or (
                not header and self.rows[row_key].height != 1) or (header and self.header_height != 1):
            return None
        value = self.columns[column_key].label if header else self._data[row_key].get(column_key)
        paint = self._paint
        show_cursor, show_hover = (paint.show_cursor, paint.show_hover) if paint else (
            self.show_cursor, self._show_hover_cursor)
        # A changed cell holds a new object, so the object itself (kept alive here) says "same content";
        # the row's index is left out, so a row that only moved (a re-sort) is not rendered again.
        fixed = not header and (row_index < self.fixed_rows or column_index < self.fixed_columns)
        place = (row_key, column_key)
        look = (header, fixed, column_index, base_style, width, cursor, hover, show_hover, show_cursor,
                self._pseudo_class_state)
        cached = self._fast_cells.get(place)
        if cached is not None and cached[0] is value and cached[1] == look:
            return cached[2]
        component, post = self._get_styles_to_render_cell(
            header, False, fixed, hover, cursor, show_cursor, show_hover,
            self.cursor_foreground_priority == "css", self.cursor_background_priority == "css")
        text = value if isinstance(value, Text) else default_cell_formatter(
            "" if value is None else value, wrap=False, height=1)
        if not isinstance(text, Text):  # some other renderable: DataTable knows how
            return None
        body = self._body_of(text, width, base_style + component, post)
        if len(self._fast_cells) >= CELLS_KEPT:
            self._fast_cells.clear()
        self._fast_cells[place] = (value, look, body)
        return body

    def _body_of(self, text: Text, width: int, style: Style, post: Style) -> list[Segment]:
        """cell_segments, made once per look: at rest the figures that change come back (an idle
        machine's %CPU goes 0.1, 0.2, 0.1), and Rich's Text takes about 25 us to lay out a cell."""
        look = (text.plain, text.style, text.justify, text.overflow, tuple(text.spans), width, style, post)
        body = self._fast_bodies.get(look)
        if body is None:
            body = cell_segments(text, width, self.cell_padding, self.app.console, style, post)
            if len(self._fast_bodies) >= CELLS_KEPT:
                self._fast_bodies.clear()
            self._fast_bodies[look] = body
        return body

    def set_cells(self, row_key: str, changes: dict[str, object]) -> None:
        """Change some cells of one row and repaint only that row; widen a column only if it no longer fits."""
        row = self._data.get(row_key)  # type: ignore[call-overload]
        for column_key, value in changes.items():
            column = self.columns.get(column_key)  # type: ignore[call-overload]
            width = value.cell_len if isinstance(value, Text) else cell_len(str(value))
            if row is None or column is None or (column.auto_width and width > column.content_width):
                self.update_cell(row_key, column_key, value, update_width=True)
            else:
                row[column_key] = value
        self._update_count += 1
        self._bump(row_key)
        place = self._row_locations.get(row_key)  # type: ignore[arg-type]
        if place is not None:
            self.refresh_rows((place,))

    def update_cell(self, row_key, column_key, value, *, update_width: bool = False) -> None:  # type: ignore[no-untyped-def]
        self._bump(row_key)
        super().update_cell(row_key, column_key, value, update_width=update_width)

    def add_row(self, *cells, height: int | None = 1, key: str | None = None, label=None):  # type: ignore[no-untyped-def]
        self._add_columns()
        self._tall_rows = self._tall_rows or height != 1
        row_key = super().add_row(*cells, height=height, key=key, label=label)
        self._bump(row_key)  # a key used before may come back with other cells
        return row_key

    def remove_row(self, row_key) -> None:  # type: ignore[no-untyped-def]
        # Cgroups come and go for good (session scopes, transient units): forget a gone row's cells.
        for column_key in self.columns:
            self._fast_cells.pop((row_key, column_key), None)
        self._versions.pop(row_key, None)
        with self.changing_rows():  # the virtual size lays the screen out if it changed
            super().remove_row(row_key)

    def remove_rows(self, row_keys: Iterable[str]) -> None:
        """Remove the rows keyed ROW_KEYS (those there are) at once, as remove_row() each, but
        the rows' places are worked out once, not once a row: DataTable's remove_row rebuilds
        them all (a cgroup gone from 5,000 is 5,000 places), then asks for a layout and sets the
        cursor again, each time (on a busy host, a tenth of the dashboard's work at rest)."""
        gone = set(row_keys)
        before = self.row_count
        order = [self._row_locations.get_key(index) for index in range(before)]
        if not any(key is not None and key.value in gone for key in order):
            return
        self._row_locations = TwoWayDict({key: place for place, key in enumerate(
            key for key in order if key is not None and key.value not in gone)})
        for row_key in [key for key in order if key is not None and key.value in gone]:
            for column_key in self.columns:
                self._fast_cells.pop((row_key, column_key), None)
                self._updated_cells.discard(CellKey(row_key, column_key))
            self._versions.pop(row_key, None)
            del self.rows[row_key]
            del self._data[row_key]
        self._require_update_dimensions = True
        self.check_idle()
        self.cursor_coordinate = self.cursor_coordinate  # (as remove_row: kept in range, its watchers told)
        self.hover_coordinate = self.hover_coordinate
        self._update_count += 1
        # The lines from the first row gone down show another row now, or none: those, not the
        # whole table (the new virtual size, on idle, asks for no more: refresh).
        if self._tall_rows:  # (DataTable places such rows: its own whole repaint)
            with self.changing_rows():
                self.refresh(layout=True)
            return
        first = next(place for place, key in enumerate(order) if key is not None and key.value in gone)
        self.refresh_rows(range(first, before))

    def refresh_rows(self, indexes: Iterable[int]) -> None:
        """Repaint the rows at INDEXES (places, whichever rows are there now): their cells in
        view (rows here are one line high); within repainting(), once, when it ends."""
        if self._pending_lines is not None:
            self._pending_lines.update(indexes)
        else:
            self._repaint_rows(indexes)

    def refresh_row(self, row_index: int) -> Self:
        # DataTable's (the cursor and hover moving): its region spans the virtual width, the
        # scrollbar's column with it, and is placed by summing the heights of the rows above.
        if self._tall_rows or not self.is_valid_row_index(row_index):
            return super().refresh_row(row_index)
        self.refresh_rows((row_index,))
        return self

    def _watch_virtual_size(self, old: Size, new: Size) -> None:
        offset = self.scroll_offset
        super()._watch_virtual_size(old, new)
        # Rows came or went and the columns and the view stay as they were: the lines that show
        # another row are marked already (put_in_order, remove_rows), the repaint asked next can
        # be the lines between the rows' old and new end, not the whole table (every line and the
        # header through the styles, and written out again).
        if self._spare_layout and old.width == new.width and self.scroll_offset == offset and not self._tall_rows:
            self._new_height = (old.height, new.height)

    def refresh(self, *regions: Region, repaint: bool = True, layout: bool = False,
                recompose: bool = False) -> Self:
        ends, self._new_height = self._new_height, None
        if ends is not None and layout and repaint and not regions and not recompose:
            done = super().refresh(repaint=False, layout=layout)  # (the layout asked is spared: steady.py)
            header = self.header_height if self.show_header else 0
            self._repaint_rows(range(min(ends) - header, max(ends) - header))
            return done
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)

    @contextlib.contextmanager
    def repainting(self) -> Iterator[None]:
        """The rows repainted in here (cells changed, rows moved) are repainted once each, at the end."""
        if self._pending_lines is not None:
            yield  # (inside another: that one repaints)
            return
        self._pending_lines = set()
        try:
            yield
        finally:
            pending, self._pending_lines = self._pending_lines, None
            self._repaint_rows(pending)

    def _repaint_rows(self, indexes: Iterable[int]) -> None:
        """Mark the lines of the rows at INDEXES that are in view, in one refresh: the cells'
        width (not the scrollbar or the border), consecutive lines as one region."""
        if self._tall_rows:
            for index in indexes:
                DataTable.refresh_row(self, index)
            return
        header = self.header_height if self.show_header else 0
        top = int(self.scroll_y)
        width, height = self.size
        gutter = self.scrollbar_gutter  # (the size takes in the scrollbars' column and row)
        width, height = width - gutter.right, height - gutter.bottom
        regions: list[Region] = []
        for y in sorted({index - top + header for index in indexes}):
            if not header <= y < height:
                continue  # out of view (or under the header): painted when scrolled to
            if regions and regions[-1].bottom == y:
                last = regions[-1]
                regions[-1] = Region(0, last.y, width, last.height + 1)
            else:
                regions.append(Region(0, y, width, 1))
        if regions and width > 0:
            self.refresh(*regions)

    def put_in_order(self, keys: Sequence[str]) -> None:
        """Show the rows in the order of KEYS (every row's key, once each) and repaint only the
        lines that now show another row.  DataTable.sort() repaints the whole table: cgtop's
        order changes at most refreshes of a busy host, mostly a row or two trading places."""
        before = self.row_keys()
        if list(keys) == before:
            return
        by_value = {row_key.value: row_key for row_key in self._data}
        self._row_locations = TwoWayDict({by_value[key]: index for index, key in enumerate(keys)})
        self._update_count += 1  # (DataTable's own caches; ours key lines by row and place)
        # Lines out of view are painted when scrolled to (by row and place: see _line).  Even a new
        # order all over the view (a sort key; at rest, idle machines' %CPU trading places) takes
        # only its lines: a whole repaint also paints the header, the border and every row that
        # stayed, through the styles, and writes them out again.
        top = int(self.scroll_y)
        end = min(len(keys), top + self.size.height)
        self.refresh_rows([index for index in range(top, end) if index >= len(before) or before[index] != keys[index]])

    def row_keys(self) -> list[str]:
        """The rows' keys in the order shown."""
        get = self._row_locations.get_key
        return [str(key.value) for key in map(get, range(self.row_count)) if key is not None]

    def clear(self, columns: bool = False) -> FastTable:
        self._fast_cells.clear()
        self._fast_bodies.clear()
        self._fast_placed.clear()
        self._versions.clear()
        super().clear(columns)
        return self


class SelectingTable(FastTable):
    """A FastTable of keyed rows that tells its screen, once per change, which row key the
    cursor is on: each subclass names that message `Selected` (taking the key, or None)."""

    Selected: ClassVar[type[Any]]  # a Message subclass whose one argument is the key

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self._selected: str | None = None

    @property
    def selected(self) -> str | None:
        """The key of the row the cursor is on, as last announced."""
        return self._selected

    def select(self, key: str) -> None:
        """Move the cursor onto the row keyed KEY, if there is one."""
        if key in self.rows and key != self._current():
            self.move_cursor(row=self.get_row_index(key), animate=False)

    def _current(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return str(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)
        except Exception:  # noqa: BLE001 - out of range: nothing selected
            return None

    def _announce(self) -> None:
        current = self._current()
        if current != self._selected:
            self._selected = current
            # Sent by the table itself, whoever changed its rows: a Selected made while the screen
            # was the running pump (rows shown from its on_mount) would stop at the screen, as
            # Textual stops a message at its sender on the way up, and never reach the app.
            self.post_message(self.Selected(current).set_sender(self))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._announce()
