"""The image list: one row per image, keyed by name, cells changed in place."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.message import Message

from nsdash.system.text import escape
from nsdash.system.utctime import utc
from nsdash.tui import format as fmt
from nsdash.tui.messages import ImageRow
from nsdash.tui.widgets.fast_table import HOST_COLUMN, Column, SelectingTable

COLUMNS = (Column("name", "Image"), Column("type", "Type"), Column("ro", "RO"), Column("size", "Size"),
           Column("mtime", "Modified (UTC)"), Column("used", "Running"), Column("os", "OS"))


def modified(ts: float) -> str:
    """The modification time in UTC, as `nsdash list-images` prints it (and the same on every host)."""
    return utc(ts, "%Y-%m-%d %H:%M")


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
        super().__init__(cursor_type="row", columns=(HOST_COLUMN, *COLUMNS) if hosts else COLUMNS, **kw)
        self.hosts = hosts
        self._rows: dict[str, tuple[str, ...]] = {}
        self.images: dict[str, ImageRow] = {}

    # ------------------------------------------------------------ public

    def update_images(self, rows: Sequence[ImageRow]) -> None:
        self.images = {r.name: r for r in rows}
        for r in rows:
            cells = cells_of(r, self.hosts)
            old = self._rows.get(r.name)
            if old is None:
                # Text, never str: DataTable reads a str cell as markup
                self.add_row(*(Text(c) for c in cells), key=r.name)
            elif old != cells:
                self.set_cells(r.name, {col: Text(new) for col, new, was
                                        in zip(self.column_keys, cells, old, strict=True) if new != was})
            self._rows[r.name] = cells
        for gone in set(self._rows) - set(self.images):
            del self._rows[gone]
            self.remove_row(gone)
        self._announce()

    # ------------------------------------------------------------ helpers

