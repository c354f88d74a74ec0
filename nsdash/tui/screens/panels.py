"""PanelScreen: a screen made of panels, any of which can be maximised and restored."""

from __future__ import annotations

from textual.screen import Screen


class PanelScreen(Screen):
    """A screen of `.panel` widgets.  Subclasses bind the key (`f`) where their footer wants it."""

    def action_toggle_maximize(self) -> None:
        if self.maximized is not None:
            self.minimize()
            return
        focused = self.focused
        while focused is not None and not focused.has_class("panel"):
            focused = focused.parent  # type: ignore[assignment]
        if focused is not None:
            self.maximize(focused)
