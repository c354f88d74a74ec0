"""FollowLog: a RichLog that stops following when the user scrolls up and resumes at the bottom.

The journal and trace panes both show a stream this way; the pane that holds the log
keeps a `following` reactive (its border and keys read it), which the log sets.
"""

from __future__ import annotations

from textual.widgets import RichLog

from nsdash.tui.widgets.steady import SteadyScrollbars


class FollowLog(RichLog, SteadyScrollbars):
    """A RichLog whose parent pane learns, through its `following` attribute, whether it follows."""

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        following = new >= self.max_scroll_y - 1
        if following != self.auto_scroll:
            self.auto_scroll = following
            pane = self.parent
            if pane is not None and hasattr(pane, "following"):
                pane.following = following
