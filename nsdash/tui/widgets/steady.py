"""SteadyScrollbars: a scroll view that leaves its scrollbars alone when its box did not change.

After every layout (a tree growing, a table gaining a row anywhere on the
screen) Textual hands each scroll view its geometry again, and ScrollView
then repaints its scrollbars even when nothing about them changed; painting
the dashboard's four scrollbars was the dearest part of each layout.  The
scrollbars depend only on the view's size, its container and its own virtual
size (scrolling is handled apart), so the same three values mean nothing to do.
"""

from __future__ import annotations

from textual.geometry import Size
from textual.scroll_view import ScrollView


class SteadyScrollbars(ScrollView):
    _steady_key: tuple[Size, Size, Size] | None = None

    def _size_updated(self, size: Size, virtual_size: Size, container_size: Size, layout: bool = True) -> bool:
        key = (size, self.virtual_size, container_size)
        if key == self._steady_key:
            return False
        resized = super()._size_updated(size, virtual_size, container_size, layout)
        self._steady_key = (self._size, self.virtual_size, container_size)
        return resized
