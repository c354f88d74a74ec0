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

Outside `changing_rows()` a new virtual size (Tree and DataTable compute it
when they next render or idle; RichLog as lines are written) asked for a layout
too: at rest, a process started or gone anywhere on the host laid out and
repainted the whole dashboard.  A box that does not depend on the virtual size
(its height and width come from the stylesheet, or an auto height already held
at its maximum before and after) needs its scrollbars told, not a layout; the
scrollbars' own visibility still asks for one when it flips.  A view opts in with
`steady_virtual_size` (the cgroup tree and the tables; FollowLog has its own
rule).  For the tables those layouts were worse than slow: between them a
horizontal scrollbar showed for a moment, the cursor was scrolled into view
above it and stayed a row too far down once it went (the 80x24 overview and
the spawn form's snapshots had captured that).

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
from textual.scrollbar import ScrollBar
from textual.widget import Widget

from nsdash.tui import rows
from nsdash.tui.widgets.cellbars import CellScrollBar

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
    _spare_layout = False  # the layout a new virtual size is about to ask for needs not be done
    # Whether a new virtual size alone skips the layout (below); on for the cgroup tree, whose
    # lines change with every process started anywhere, and the tables (cgroups churning).
    steady_virtual_size = False
    layouts_spared = 0  # layout requests made repaints (tests read it)

    @property
    def vertical_scrollbar(self) -> ScrollBar:
        """Widget's, a CellScrollBar (cellbars.py: the cells that changed repainted, not the bar)."""
        if self._vertical_scrollbar is None and rows.usable():
            bar = CellScrollBar(vertical=True, name="vertical", thickness=self.scrollbar_size_vertical)
            bar.display = False
            self._vertical_scrollbar = bar
            self.app._start_widget(self, bar)
        return super().vertical_scrollbar

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

    def _watch_virtual_size(self, old: Size, new: Size) -> None:
        # Called before Textual's reactive asks for the layout (reactive._set): if the box cannot
        # change, the scrollbars are updated here and that request becomes a repaint (refresh).
        if not self.steady_virtual_size or type(self).virtual_size is not Widget.virtual_size:
            return  # a view that declared its own virtual size handles it itself (FollowLog)
        if not self.size or self._box_follows_content(old, new):
            return
        self._scroll_update(new)  # a scrollbar shown or hidden asks for its own layout in here
        self._spare_layout = True

    def _box_follows_content(self, old: Size, new: Size) -> bool:
        """Whether the box's size may depend on the virtual size going from OLD to NEW."""
        width, height = self.styles.width, self.styles.height
        if width is not None and width.is_auto and old.width != new.width:
            return True
        if height is not None and height.is_auto and old.height != new.height:
            # An auto height held at its maximum (max-height: 100%) before and after is the same box.
            return not (old.height > self.size.height and new.height > self.size.height)
        return False

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
        spare, self._spare_layout = self._spare_layout, False
        if layout and (self._rows_changing or spare) and not recompose:
            layout = False
            self.layouts_spared += 1
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)
