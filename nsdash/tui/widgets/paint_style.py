"""PaintStyle: a widget whose `rich_style` is worked out once per paint, not once per line.

Textual's DOMNode.rich_style walks every ancestor from the app down, blending
backgrounds and colours, each time it is read; it keeps nothing.  RichLog reads
it three times for every line it paints (twice for a blank one) and Tree once a
line: painting the empty journal log and the cgroup tree for the dashboard's
first frame read it about a hundred times, some 20 M instructions (callgrind),
and every repaint of them at rest does the same.  A paint cannot change the
styles it paints with, so within render_lines the first answer is the answer.
(FastTable keeps its own per-paint state: nsdash.tui.widgets.fast_table.Paint.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.style import Style
from textual.geometry import Region
from textual.strip import Strip

if TYPE_CHECKING:
    from textual.widget import Widget

    _Base = Widget
else:
    # A plain mixin, not a Widget subclass: Widget.__init_subclass__ would give it a can_focus
    # of its own (False, Widget's), which then shadows RichLog's and Tree's in the class made
    # from it (the log and the tree could no longer take the focus), and a place in the
    # widgets' CSS type names and DEFAULT_CSS order.
    _Base = object


class PaintStyle(_Base):
    """Put before the Textual widget class it speeds up: `class X(PaintStyle, RichLog)`."""

    _paint_style: Style | None = None  # the style of the paint under way, None between paints

    @property
    def rich_style(self) -> Style:
        painting = self._paint_style
        return painting if painting is not None else super().rich_style

    def render_lines(self, crop: Region) -> list[Strip]:
        self._paint_style = super().rich_style
        try:
            return super().render_lines(crop)
        finally:
            self._paint_style = None
