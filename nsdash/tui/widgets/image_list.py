"""The image list: one row per image, keyed by name, cells changed in place."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from rich.text import Text
from textual.message import Message

from nsdash.system.text import escape
from nsdash.tui import format as fmt
from nsdash.tui.messages import ImageRow
from nsdash.tui.widgets.fast_table import SelectingTable

HOST_COLUMN = ("host", "Host")  # first, over remote hosts (-H): the row's key is then HOST/IMAGE
COLUMNS = (("name", "Image"), ("type", "Type"), ("ro", "RO"), ("size", "Size"), ("mtime", "Modified (UTC)"),
           ("used", "Running"), ("os", "OS"))


def modified(ts: float) -> str:
    """The modification time in UTC, as `nsdash list-images` prints it (and the same on every host)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def cells_of(row: ImageRow, hosts: bool = False) -> tuple[str, ...]:
    """The row's cells as plain text; guest-written ones (the OS name) escaped.  HOSTS: the
    host first, then the image's own name (its key is HOST/IMAGE)."""
    name = row.name.partition("/")[2] if hosts and row.host else row.name
    cells = (escape(name), row.type, "yes" if row.read_only else "no", fmt.size(row.size),
             modified(row.mtime), escape(", ".join(row.used_by)) or "-", escape(row.os))
    return (escape(row.host or "-"), *cells) if hosts else cells


class ImageList(SelectingTable):
    """Every image with its type, read-only flag, size, modification time and its running machines."""

    class Selected(Message):
        """The cursor moved onto an image (or the list emptied: None)."""

        def __init__(self, image: str | None) -> None:
            super().__init__()
            self.image = image

    def __init__(self, hosts: bool = False, **kw) -> None:
        super().__init__(cursor_type="row", **kw)
        self.hosts = hosts
        self._columns = (HOST_COLUMN, *COLUMNS) if hosts else COLUMNS
        self._rows: dict[str, tuple[str, ...]] = {}
        self.images: dict[str, ImageRow] = {}

    def on_mount(self) -> None:
        self._add_columns()

    def _add_columns(self) -> None:
        # Also from the first update: a screen may show rows before this table's on_mount ran.
        if not self.columns:
            for key, label in self._columns:
                self.add_column(label, key=key)

    # ------------------------------------------------------------ public

    def update_images(self, rows: Sequence[ImageRow]) -> None:
        self._add_columns()
        self.images = {r.name: r for r in rows}
        for r in rows:
            cells = cells_of(r, self.hosts)
            old = self._rows.get(r.name)
            if old is None:
                # Text, never str: DataTable reads a str cell as markup
                self.add_row(*(Text(c) for c in cells), key=r.name)
            elif old != cells:
                self.set_cells(r.name, {col: Text(new) for (col, _), new, was
                                        in zip(self._columns, cells, old, strict=True) if new != was})
            self._rows[r.name] = cells
        for gone in set(self._rows) - set(self.images):
            del self._rows[gone]
            self.remove_row(gone)
        self._announce()

    @property
    def selected(self) -> str | None:
        return self._selected

    def select(self, name: str) -> None:
        if name in self._rows and name != self._current():
            self.move_cursor(row=self.get_row_index(name), animate=False)

    # ------------------------------------------------------------ helpers

