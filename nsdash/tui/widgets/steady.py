"""SteadyScrollbars: a scroll view that leaves its scrollbars and the screen's layout alone
when its box did not change.

After every layout (a tree growing, a table gaining a row anywhere on the
screen) Textual hands each scroll view its geometry again, and ScrollView
then repaints its scrollbars even when nothing about them changed; painting
the dashboard's four scrollbars was the dearest part of each layout.  The
scrollbars depend only on the view's size, its container and its own virtual
size (scrolling is handled apart), so the same three values mean nothing to do.

Tree asks the screen for a layout on every node added or removed, DataTable on
every row removed, and a layout arranges and repaints every pane.  Our panes'
boxes are set by the stylesheet; what rows and nodes change is the virtual
size, and Textual's virtual_size asks for a layout itself when it is computed
anew (the line count, the widest line).  So inside `changing_rows()` those
requests are repaints: a process coming or going in an open cgroup, a cgroup
replaced by another, no longer repaint the whole screen.

`set_titles` is the same rule for a border's titles: Textual repaints every
line of a widget when either is set, equal or not, and the journal and trace
panes set them with each batch of lines (several a second under a flood).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from typing import Self

from rich.text import Text
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.widget import Widget

_titles: weakref.WeakKeyDictionary[Widget, tuple[Text, Text]] = weakref.WeakKeyDictionary()


def set_titles(widget: Widget, title: Text, subtitle: Text) -> bool:
    """Give WIDGET's border TITLE and SUBTITLE (Text: never read as markup) unless it shows
    them already; True if it did (and so repaints)."""
    if _titles.get(widget) == (title, subtitle):
        return False
    _titles[widget] = (title, subtitle)
    widget.border_title = title
    widget.border_subtitle = subtitle
    return True


class SteadyScrollbars(ScrollView):
    _steady_key: tuple[Size, Size, Size] | None = None
    _rows_changing = 0
    layouts_spared = 0  # layout requests made repaints (tests read it)

    def _size_updated(self, size: Size, virtual_size: Size, container_size: Size, layout: bool = True) -> bool:
        key = (size, self.virtual_size, container_size)
        if key == self._steady_key:
            resized = False
        else:
            resized = super()._size_updated(size, virtual_size, container_size, layout)
            self._steady_key = (self._size, self.virtual_size, container_size)
        return resized

    def watch_show_vertical_scrollbar(self, shown: bool) -> None:
        # A view scrolled before its scrollbar was shown (the cursor put on a row before the
        # first layout) left the new bar's thumb at the top: Textual moves the thumb only
        # while the bar is shown.
        if shown and self.vertical_scrollbar.position != self.scroll_y:
            self.vertical_scrollbar.position = self.scroll_y

    @contextlib.contextmanager
    def changing_rows(self) -> Iterator[None]:
        """Rows or nodes added and removed in here ask for a repaint, not a layout."""
        self._rows_changing += 1
        try:
            yield
        finally:
            self._rows_changing -= 1

    def refresh(self, *regions: Region, repaint: bool = True, layout: bool = False,
                recompose: bool = False) -> Self:
        if layout and self._rows_changing and not recompose:
            layout = False
            self.layouts_spared += 1
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)
