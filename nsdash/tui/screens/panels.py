"""PanelScreen: a screen made of panels, any of which can be maximised, restored and resized."""

from __future__ import annotations

from textual.binding import Binding
from textual.css.scalar import Unit
from textual.dom import DOMNode
from textual.reactive import Reactive
from textual.widget import Widget

from nsdash.tui import rows
from nsdash.tui.widgets.edges import FocusMarkScreen

# Sizes are shares (fr) of the row or column, changed in half-share steps within these bounds.
STEP, SMALLEST, LARGEST = 0.5, 0.5, 8.0


def resized(share: float, step: float) -> float:
    """A panel's new share after STEP, kept within SMALLEST..LARGEST."""
    return max(SMALLEST, min(LARGEST, share + step))


def breakpoint_class(width: int, breakpoints: list[tuple[int, str]]) -> str | None:
    """The class Textual's Screen gives a screen WIDTH cells wide: the widest breakpoint it reaches."""
    return next((name for least, name in sorted(breakpoints, reverse=True) if width >= least), None)


class PanelScreen(FocusMarkScreen):
    """A screen of `.panel` widgets.  Subclasses bind the key (`f`) where their footer wants it.

    < and > make the focused panel narrower or wider against its neighbours in the row;
    [ and ] make its row shorter or taller.  The sizes are the screen's own (inline
    styles over styles/nsdash.tcss) and last until the dashboard quits.  They apply
    to the side-by-side layout only: on a narrow terminal (the app's -narrow
    breakpoint) the panels stack as the style sheet says, and come back at the
    chosen sizes when the terminal is wide again.
    """

    # Textual's Screen.focused repaints the whole screen on every focus move.  The widgets that
    # gain and lose the focus repaint themselves (Widget._on_focus/_on_blur), and so does every
    # panel whose focus mark (edges.FOCUSED) changes (the restyle refreshes it), so the
    # whole-screen render buys nothing: it drew the console pane's and the log's every line
    # again, the dearest part of a Tab while a machine floods (tests/tui/test_key_footer.py).
    focused: Reactive[Widget | None] = Reactive(None, repaint=False)

    BINDINGS = [
        Binding("less_than_sign", "resize('width', -1)", "Narrower", show=False),
        Binding("greater_than_sign", "resize('width', 1)", "Wider", show=False),
        Binding("left_square_bracket", "resize('height', -1)", "Shorter", show=False),
        Binding("right_square_bracket", "resize('height', 1)", "Taller", show=False),
    ]

    def __init__(self, *args, **kw) -> None:
        # Born with the breakpoint class (-narrow/-wide) of the terminal's width: else the first
        # Resize adds it and every widget is styled a second time (issue 16: first frame).
        born = breakpoint_class(self.app.size.width, self.app.HORIZONTAL_BREAKPOINTS or [])
        kw["classes"] = " ".join(filter(None, (kw.get("classes"), born)))
        super().__init__(*args, **kw)
        rows.install(self)  # frames render the lines that changed, not the box around them (rows.py)
        self._shares: dict[Widget, dict[str, float]] = {}

    def _focused_panel(self) -> Widget | None:
        node: DOMNode | None = self.focused
        while isinstance(node, Widget):
            if node.has_class("panel"):
                return node
            node = node.parent
        return None

    def action_toggle_maximize(self) -> None:
        if self.maximized is not None:
            self.minimize()
            return
        panel = self._focused_panel()
        if panel is not None:
            self.maximize(panel)

    def action_resize(self, axis: str, direction: int) -> None:
        panel = self._focused_panel()
        if panel is None or self.maximized is not None:
            return
        if self.has_class("-narrow"):
            self.notify("The panels are stacked on a narrow terminal: f maximises one", timeout=3)
            return
        # Widths are shared between the panels of a row; heights between the rows of the screen
        # (or, where a panel is alone in a column, between the panels of that column).
        target: Widget = panel
        if axis == "height" and isinstance(panel.parent, Widget) and panel.parent.has_class("row"):
            target = panel.parent
        scalar = getattr(target.styles, axis)
        share = scalar.value if scalar is not None and scalar.unit == Unit.FRACTION else 1.0
        self._shares.setdefault(target, {})[axis] = resized(share, STEP * direction)
        self._apply_shares()

    def on_resize(self) -> None:
        # Runs after Screen._on_resize has set the breakpoint classes for the new size.
        self._apply_shares()

    def _apply_shares(self) -> None:
        narrow = self.has_class("-narrow")
        for target, sizes in self._shares.items():
            for axis, share in sizes.items():
                setattr(target.styles, axis, None if narrow else f"{share:g}fr")
