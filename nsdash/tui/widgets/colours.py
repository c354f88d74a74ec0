"""A component class's colours as a widget's own text style."""

from __future__ import annotations

from rich.style import Style
from textual.widget import Widget


def text_style(widget: Widget, component: str, background: bool = False) -> Style:
    """COMPONENT's colour and text style, with its background only if BACKGROUND.

    Taken in full first: a colour with alpha ($text, $text-muted) is blended over
    the widget's background.  get_component_rich_style(partial=True) drops the
    alpha instead, and such a colour comes out plain white, unreadable on a light
    theme.  Leaving the background out keeps the cursor line's own.
    """
    full = widget.get_component_rich_style(component)
    if background:
        return full
    return Style(color=full.color, bold=full.bold, italic=full.italic, underline=full.underline)
