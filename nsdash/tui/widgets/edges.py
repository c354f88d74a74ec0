"""FocusEdges: a panel whose focus mark (its top and bottom edges, nsdash.tcss) is repainted
alone, not with every line of the panel.

A style change makes Textual repaint every line of the widget it touches, and each
line of a bordered widget is drawn with its content (the left and right edges sit on
every line).  A focus move restyles the pane the focus leaves and the one it
reaches: with a border whose four edges changed colour, Tab repainted every line
of the console pane and of the journal pane, queued behind a flooding console's
frames (issue 15).  The focus mark is therefore the top and bottom edges only (the
title sits on the top one), and a focus restyle (`restyling`, which the panel
screen wraps around Textual's) that changes nothing but those repaints those two
lines.  Textual asks for a whole repaint per rule it sets, and also per rule it
clears that was never set, so the repaints asked during the restyle are held and
the rules compared after it.

FocusMarkScreen puts the focus mark on the panel as a class (FOCUSED), not as a
`.panel:focus-within` rule: a node one `:focus-within` rule matches makes Textual
restyle every node under it on each focus move (Screen._update_focus_styles walks the
outermost such ancestor's children), so a Tab restyled the journal pane's log, its
hidden query Input and their scrollbars for a mark drawn on the pane's own edges.  The
class is set without Textual's restyle of the descendants and the panel alone is
restyled: no rule in styles/*.tcss may select a panel's descendants by FOCUSED.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any, Self

from rich.text import Text
from textual.geometry import Region
from textual.screen import Screen
from textual.widget import Widget

from nsdash.tui.widgets.steady import set_titles

# The class of a panel (`.panel`) that holds the focus, itself or a descendant.
FOCUSED = "-focused"

# What the focus mark changes (styles/nsdash.tcss, `.panel.-focused`): all drawn on the
# top and bottom lines.
EDGE_RULES = frozenset(("border_top", "border_bottom", "border_title_color", "border_title_style",
                        "border_title_background", "border_subtitle_color", "border_subtitle_style",
                        "border_subtitle_background", "auto_border_title_color",
                        "auto_border_subtitle_color"))


class FocusEdges(Widget):
    """Mix in before the widget class: a focus restyle of the edges alone repaints two lines."""

    _restyling = False
    _repaint_held = False
    edge_repaints = 0  # focus restyles that repainted the edges alone (tests read it)

    def refresh(self, *regions: Region, repaint: bool = True, layout: bool = False,
                recompose: bool = False) -> Self:
        if self._restyling and repaint and not (regions or layout or recompose):
            self._repaint_held = True  # `restyling` decides what to repaint
            return self
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)

    def _restyled(self, before: dict[str, Any]) -> None:
        after = dict(self.styles.get_render_rules())
        changed = {rule for rule in before.keys() | after.keys() if before.get(rule) != after.get(rule)}
        if not changed:
            return
        if changed <= EDGE_RULES:
            self.edge_repaints += 1
            self._repaint_edges()
        else:
            super().refresh()

    def _repaint_edges(self) -> None:
        """Repaint the top and bottom lines alone (the whole, if the panel has no two lines)."""
        # the panel's outer lines: `size` is its content's (within the border), a line short each side
        width, height = self.outer_size
        if height < 2:
            super().refresh()
            return
        left, top = self.content_offset  # regions are given from the content's corner
        super().refresh(Region(-left, -top, width, 1), Region(-left, height - 1 - top, width, 1))

    def set_edge_titles(self, title: Text, subtitle: Text) -> bool:
        """steady.set_titles for the panel: the titles sit on its top and bottom edges, so those two
        lines are repainted, not every line of the panel (Textual's border_title does that: p's
        new filter in the journal's subtitle drew the whole pane, log and all, in the key's frame)."""
        if not self.is_mounted:
            return set_titles(self, title, subtitle)
        outer, held = self._restyling, self._repaint_held  # (inside a focus restyle: its own, kept)
        self._restyling, self._repaint_held = True, False
        try:
            changed = set_titles(self, title, subtitle)
        finally:
            self._restyling = outer
        if self._repaint_held:
            self.edge_repaints += 1
            self._repaint_edges()
        self._repaint_held = held
        return changed


@contextlib.contextmanager
def restyling(widgets: Iterable[Widget]) -> Iterator[None]:
    """Around a restyle of the focus: the FocusEdges among WIDGETS (and their ancestors)
    repaint afterwards what the restyle changed, their edges alone if only those."""
    panes: dict[FocusEdges, dict[str, Any]] = {}
    for widget in widgets:
        for node in widget.ancestors_with_self:
            if isinstance(node, FocusEdges) and node not in panes and node.is_mounted:
                panes[node] = dict(node.styles.get_render_rules())
                node._restyling, node._repaint_held = True, False
    try:
        yield
    finally:
        for pane, before in panes.items():
            pane._restyling = False
            if pane._repaint_held:
                pane._restyled(before)


def panels_of(widget: Widget | None) -> set[Widget]:
    """The panels (class `panel`) WIDGET is in, itself included."""
    if widget is None:
        return set()
    return {node for node in widget.ancestors_with_self if isinstance(node, Widget) and node.has_class("panel")}


class FocusMarkScreen(Screen):
    """A screen whose panels wear FOCUSED while they hold the focus (see the module's docstring)."""

    def _update_focus_styles(self, focused: Widget | None = None, blurred: Widget | None = None) -> None:
        # The panes' focus mark is their top and bottom edges: repaint those, not every
        # line (FocusEdges).
        with restyling(w for w in (focused, blurred) if w is not None):
            holding = panels_of(self.focused)
            moved = [panel for panel in panels_of(focused) | panels_of(blurred)
                     if panel.has_class(FOCUSED) != (panel in holding)]
            for panel in moved:
                panel.set_class(panel in holding, FOCUSED, update=False)  # not its descendants ...
            # ... the panel alone, unless it is the widget gaining or losing the focus: its
            # Focus or Blur event restyles it (has_focus) and takes the class with it.  Not so
            # a panel Textual's auto-focus gave the focus (Screen._update_auto_focus sets its
            # has_focus before this, so its Focus event changes nothing): restyled here.
            restyle = [panel for panel in moved
                       if (panel is not focused or panel.has_focus) and panel is not blurred]
            if restyle:
                self.app.stylesheet.update_nodes(restyle, animate=True)
            super()._update_focus_styles(focused, blurred)  # rules of Textual's own widgets
