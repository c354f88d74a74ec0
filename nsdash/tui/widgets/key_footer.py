"""The key footer: the active keys of the focused widget and its screen, drawn as one line of text.

Textual's own Footer is a container of one widget per key, and it recomposes all of them
whenever the screen's bindings change, that is on every focus move: tens of widgets
unmounted, mounted and styled, 70-260 ms at rest on this machine and seconds while a
machine floods its console.  This footer is one widget whose `render` returns one Text;
a change of bindings recomputes a small tuple and repaints only if the tuple differs.
No children, no layout (its size is fixed: one docked row).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from rich.style import Style
from rich.text import Text
from textual import events
from textual.strip import Strip
from textual.widget import Widget

if TYPE_CHECKING:
    from textual.screen import Screen

PALETTE_EDGE = "▏"  # Textual's footer sets the palette key off with a left "vkey" border


class ShownKey(NamedTuple):
    """One key as the footer shows it."""

    key: str  # the key as Textual names it, pressed again when the entry is clicked
    display: str  # as shown ("^p", "tab", "a")
    description: str
    enabled: bool


class FooterLine(NamedTuple):
    """Everything the footer draws: the keys on the left, the command palette's key on the right."""

    keys: tuple[ShownKey, ...]
    palette: ShownKey | None


def footer_line(screen: Screen) -> FooterLine:
    """The keys SCREEN's focus chain offers, as Textual's Footer picks them: those with `show`,
    the first key of each action, in binding order; the palette's key apart."""
    app = screen.app
    active = screen.active_bindings
    seen: set[str] = set()
    keys: list[ShownKey] = []
    for _node, binding, enabled, _tooltip in active.values():
        if not binding.show or binding.action in seen:
            continue
        seen.add(binding.action)
        keys.append(ShownKey(binding.key, app.get_key_display(binding), binding.description, enabled))
    palette = None
    if app.ENABLE_COMMAND_PALETTE and app.COMMAND_PALETTE_BINDING in active:
        _node, binding, enabled, _tooltip = active[app.COMMAND_PALETTE_BINDING]
        palette = ShownKey(binding.key, app.get_key_display(binding), binding.description, enabled)
        keys = [k for k in keys if k.key != binding.key]
    return FooterLine(tuple(keys), palette)


def entry(item: ShownKey, key_style: Style, description_style: Style, compact: bool = False) -> Text:
    """One key: ' KEY ' in the key style, then 'Description ' (Textual's Footer spacing); COMPACT
    (the palette's key, as Textual draws it): 'KEY Description'."""
    dim = Style(dim=not item.enabled)
    # meta carries the key to press on a click (on_mouse_down reads it back from the style under the mouse)
    meta = Style.from_meta({"footer_key": item.key})
    text = Text.assemble((item.display if compact else f" {item.display} ", key_style + dim + meta))
    if item.description:
        shown = f" {item.description}" if compact else f"{item.description} "
        text.append(shown, description_style + dim + meta)
    return text


def render_line(line: FooterLine, width: int, key_style: Style, description_style: Style,
                edge_style: Style) -> Text:
    """LINE as one Text of WIDTH cells: keys from the left, the palette's key at the right edge.

    The keys are cut at the right (never wrapped) where the line is too narrow, as the footer
    row is one cell high."""
    text = Text(no_wrap=True, overflow="crop", end="")
    for item in line.keys:
        text.append_text(entry(item, key_style, description_style))
    if line.palette is None:
        text.truncate(width)
        return text
    palette = Text(PALETTE_EDGE, style=edge_style, end="")
    palette.append_text(entry(line.palette, key_style, description_style, compact=True))
    palette.append(" ")  # the palette key's right padding
    room = max(0, width - palette.cell_len)
    text.truncate(room, pad=True)
    text.append_text(palette)
    text.truncate(width)
    return text


class KeyFooter(Widget, can_focus=False):
    """One row at the bottom of a screen: its active keys, repainted only when they change."""

    ALLOW_SELECT = False
    COMPONENT_CLASSES = {"key-footer--key", "key-footer--description", "key-footer--edge"}
    DEFAULT_CSS = """
    KeyFooter {
        dock: bottom;
        height: 1;
        width: 1fr;
        color: $footer-foreground;
        background: $footer-background;
        & > .key-footer--key {
            color: $footer-key-foreground;
            background: $footer-key-background;
            text-style: bold;
        }
        & > .key-footer--description {
            color: $footer-description-foreground;
            background: $footer-description-background;
        }
        & > .key-footer--edge {
            color: $foreground 20%;
        }
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.line = FooterLine((), None)
        self.updates = 0  # repaints asked for because the keys changed (tests read it)

    def on_mount(self) -> None:
        # immediate: in the focus move itself, so the frame a key draws at once (nsdash.tui.keyfirst)
        # shows the new keys; otherwise the footer learnt of them a turn of the loop later
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed, immediate=True)
        self._bindings_changed(self.screen)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def render(self) -> Text:
        return render_line(self.line, self.size.width, self.get_component_rich_style("key-footer--key"),
                           self.get_component_rich_style("key-footer--description"),
                           self.get_component_rich_style("key-footer--edge"))

    def render_line(self, y: int) -> Strip:
        # The row's segments straight from render()'s Text, under the widget's style, as RichLog
        # paints a line: Widget's own way takes the Text through Textual's visual (measured,
        # wrapped, padded, styled again), most of the footer's cost in the first frame (issue 16).
        width = self.size.width
        style = self.rich_style
        if y:
            return Strip.blank(width, style)
        return Strip(self.render().render(self.app.console), width).apply_style(style)

    def _bindings_changed(self, screen: Screen) -> None:
        if not self.is_attached or screen is not self.screen:
            return
        line = footer_line(screen)
        if line != self.line:  # a focus move between widgets with the same keys repaints nothing
            self.line = line
            self.updates += 1
            self.refresh()  # no layout: one docked row whatever it says

    def on_mouse_down(self, event: events.MouseDown) -> None:
        # on the press, as Textual's footer does
        key = event.style.meta.get("footer_key")
        if key:
            event.stop()
            self.app.simulate_key(key)
