"""Scrollbars that repaint the cells whose look changed, not the whole bar (issue 16: at rest).

Textual repaints a scrollbar whole whenever its widget's virtual size or scroll offset
changes: at rest the cgroup tree gains or loses a process line every walk, and its
vertical bar (every line of it, through the styles and the compositor) was a fifth of
the lines the dashboard rendered a second, though the thumb moved by an eighth of a cell.
A CellScrollBar works out the bar as it will be drawn (Textual's own ScrollBarRender,
its styles and meta included: a click above or below the thumb scrolls that way) and
repaints only the cells that differ from the bar last drawn; a change of its size or of
its style (focus, hover, grab, theme) repaints it whole, as before.

The cgroup tree and the tables take them through steady.SteadyScrollbars, which makes the
vertical bar as Textual's Widget.vertical_scrollbar does (its private `_vertical_scrollbar`
and the app's `_start_widget`, as FollowLog's SteadyBar does; only on the Textual that
nsdash.tui.rows.PINNED names, else Textual's own ScrollBar).
"""

from __future__ import annotations

from rich.color import Color
from textual.geometry import Region
from textual.scrollbar import ScrollBar, ScrollBarRender

_BACK, _BAR = Color.parse("#000000"), Color.parse("#ffffff")  # the thumb's place only: colours are in the style


class CellScrollBar(ScrollBar):
    """A ScrollBar that repaints the cells that changed (module docstring)."""

    _drawn: tuple | None = None  # (size, style, thickness), and the bar's cells as last drawn

    def refresh(self, *regions: Region, repaint: bool = True, layout: bool = False,
                recompose: bool = False) -> CellScrollBar:
        if regions or not repaint or layout or recompose or not self.is_mounted:
            if not regions:
                self._drawn = None
            return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)
        before, self._drawn = self._drawn, self._look()
        if before is None or self._drawn is None or before[0] != self._drawn[0]:
            return super().refresh()
        changed = [i for i, (was, now) in enumerate(zip(before[1], self._drawn[1], strict=True)) if was != now]
        if not changed:
            return self
        width, height = self.size
        return super().refresh(*(Region(0, i, width, 1) if self.vertical else Region(i, 0, 1, height)
                                 for i in changed))

    def _look(self) -> tuple | None:
        """What the bar will be drawn as: its size and style, and each cell's segment (None
        where that cannot be told: the bar is then repainted whole)."""
        if self.parent is None or not self.size:
            return None
        shown = self.render()
        if not isinstance(shown, ScrollBarRender) or not hasattr(shown, "virtual_size"):
            return None
        size = self.size.height if self.vertical else self.size.width
        bar = shown.render_bar(size=size, virtual_size=shown.virtual_size, window_size=shown.window_size,
                               position=shown.position, thickness=shown.thickness, vertical=shown.vertical,
                               back_color=_BACK, bar_color=_BAR)
        return (self.size, shown.style, shown.thickness), tuple(bar.segments[:size])
