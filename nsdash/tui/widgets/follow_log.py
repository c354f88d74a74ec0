"""FollowLog: a RichLog that stops following when the user scrolls up and resumes at the bottom.

The journal and trace panes both show a stream this way; the pane that holds the log
keeps a `following` reactive (its border and keys read it), which the log sets.

Every write grows the log, and Textual's `virtual_size` asks for a layout of the
whole screen on each change: tens of ms a write under a flood, one per slice of
a journal flood (journal_pane.py), for a log whose box never changes.  Here a
change lays the screen out only when it shows or hides a scrollbar (which takes
room from the box; only on an axis whose overflow is auto); otherwise the scrollbars are told the new size and the log
repaints.

A writer that writes in slices (the journal pane) holds the log's repaints
from its first slice to its last: the log is painted once for them, not once
per slice (each a repaint of every line, as a followed log scrolls).

Nor does a focus change repaint it: Textual repaints every widget that gains or
loses the focus (for a cursor), a log has no cursor, and its pane's border and
the footer show where the focus is; a flooding log's lines and scrollbar were
repainted on every Tab.  (Its tint stays the same for this reason: nsdash.tcss.)
Its scrollbar neither: Textual repaints a view's scrollbars whenever it sets their
colours on the view, changed or not, which every restyle (the focus's) does.

A write's scroll to the end waits for the next refresh (the new end is known only then),
and the user may scroll up before it runs (the wheel scrolls a log at once, a key starts an
animation): the scroll a write asks for looks again, when it runs, whether the log still
follows (follow_end), where RichLog's own pulled the user back down once.  A user's own scroll
to the end (the End key, the pane's follow) always scrolls: scroll_end is Textual's.
"""

from __future__ import annotations

from typing import Self

from rich.console import RenderableType
from textual import events
from textual.geometry import Region, Size
from textual.reactive import Reactive
from textual.scrollbar import ScrollBar
from textual.widgets import RichLog

from nsdash.tui.widgets.paint_style import PaintStyle
from nsdash.tui.widgets.steady import SteadyScrollbars


class SteadyBar(ScrollBar):
    """A scrollbar that is repainted only when what it draws changed (see the module's docstring)."""

    _drawn: tuple[object, ...] | None = None

    def _looks(self) -> tuple[object, ...]:
        view = self.parent.styles if self.parent is not None else None
        colours = view and (view.scrollbar_color, view.scrollbar_color_hover, view.scrollbar_color_active,
                            view.scrollbar_background, view.scrollbar_background_hover,
                            view.scrollbar_background_active)
        return (self.size, self.position, self.window_size, self.window_virtual_size, self.mouse_over,
                self.grabbed, self.thickness, colours)

    def render(self) -> RenderableType:
        self._drawn = self._looks()
        return super().render()

    def refresh(self, *regions: Region, repaint: bool = True, layout: bool = False,
                recompose: bool = False) -> Self:
        if repaint and not (regions or layout or recompose) and self._drawn == self._looks():
            return self  # drawn as it is
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)


class FollowLog(PaintStyle, RichLog, SteadyScrollbars):
    """A RichLog whose parent pane learns, through its `following` attribute, whether it follows."""

    virtual_size: Reactive[Size] = Reactive(Size(0, 0), layout=False)  # see the module's docstring
    _held = False
    _held_from = Size(0, 0)  # the virtual size when the hold began
    repaints = 0  # repaints of the whole log asked of Textual (tests read it)
    _end_pending = False  # a follow_end waits for the next refresh

    @property
    def vertical_scrollbar(self) -> ScrollBar:
        """Widget's, a SteadyBar."""
        if self._vertical_scrollbar is None:
            self._vertical_scrollbar = bar = SteadyBar(vertical=True, name="vertical",
                                                       thickness=self.scrollbar_size_vertical)
            bar.display = False
            self.app._start_widget(self, bar)
        return self._vertical_scrollbar

    def hold(self) -> None:
        """Writes from here on change the log without painting it, until release()."""
        if not self._held:
            self._held = True
            self._held_from = self.virtual_size

    def release(self) -> None:
        """Paint, once, what changed since hold()."""
        if self._held:
            self._held = False
            self.watch_virtual_size(self._held_from, self.virtual_size)

    def write(self, content: RenderableType | object, width: int | None = None, expand: bool = False,
              shrink: bool = True, scroll_end: bool | None = None, animate: bool = False) -> Self:
        """RichLog's, but a write that follows the log scrolls through follow_end (see the
        module's docstring).  An explicit scroll_end=True still scrolls whatever happens."""
        # (before the log's size is known, RichLog keeps writes and makes them again through here)
        if scroll_end is None and self._size_known and not animate:
            follows = self.auto_scroll
            super().write(content, width, expand, shrink, False, animate)
            if follows:
                self.follow_end()
            return self
        return super().write(content, width, expand, shrink, scroll_end, animate)

    def resume(self) -> None:
        """Follow again from the end (the panes' End key, the app's journal key): the pane
        learns it at once, as watch_scroll_y would tell it once the scroll has run."""
        self.scroll_end(animate=False)
        self._following(True)

    def follow_end(self) -> None:
        """Scroll to the end after the next refresh if the log still follows then: the user may
        scroll up in between, and a write's scroll must not undo that.  Calls before it runs
        share it (each would scroll to the same end)."""
        if not self._end_pending:
            self._end_pending = self.call_after_refresh(self._end_if_following)  # False: not running

    def refresh(self, *regions: Region, repaint: bool = True, layout: bool = False,
                recompose: bool = False) -> Self:
        if self._held and not (layout or recompose):
            return self  # release() paints it all
        if repaint and not regions:
            self.repaints += 1
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)

    def watch_virtual_size(self, old: Size, new: Size) -> None:
        if self._held:
            return  # release() looks at the size the hold began with
        if self._bar_flips(old, new):
            self.refresh(layout=True)  # a scrollbar comes or goes
        else:
            self._scroll_update(new)
            self.refresh()

    def watch_show_horizontal_scrollbar(self, shown: bool) -> None:
        # The bar takes a line of the box, so the end moves a line down: a following log that
        # scrolled before the layout that shows it would sit a line short of its end for good.
        # Once the layout is done, and only if it still follows then: the user may have scrolled
        # up in between.
        if shown and self.auto_scroll:
            self.call_after_refresh(self._end_if_following)  # its own: a write's pending one may run before this layout

    def _end_if_following(self) -> None:
        self._end_pending = False
        if self.auto_scroll and not self._on_its_way_up():
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def _on_its_way_up(self) -> bool:
        """Whether an animated scroll up (a key's: page-up) has begun but not yet moved the log
        (so it still reads as following); scrolling to the end would stop it where it aims."""
        return self.app.animator.is_being_animated(self, "scroll_y") and self.scroll_target_y < self.scroll_y

    def _bar_flips(self, old: Size, new: Size) -> bool:
        """Whether a virtual size going from OLD to NEW shows or hides a scrollbar: only on an
        axis whose overflow is auto.  RichLog's vertical bar is always there (overflow-y:
        scroll), so p taking the log from thousands of lines to none and back laid out the
        whole screen for a bar that stayed (issue 15)."""
        box, styles = self.container_size, self.styles
        return ((styles.overflow_y == "auto" and (old.height > box.height) != (new.height > box.height))
                or (styles.overflow_x == "auto" and (old.width > box.width) != (new.width > box.width)))

    def _on_focus(self, event: events.Focus) -> None:
        event.prevent_default()  # Widget's own handler: the same, and a repaint (see the module's docstring)
        self.has_focus = True
        if self.parent is not None:
            self.parent.post_message(events.DescendantFocus(self))

    def _on_blur(self, event: events.Blur) -> None:
        event.prevent_default()
        self.has_focus = False
        if self.parent is not None:
            self.parent.post_message(events.DescendantBlur(self))

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        following = new >= self.max_scroll_y - 1
        if following != self.auto_scroll:
            self._following(following)

    def _following(self, following: bool) -> None:
        """Follow or not, and tell the pane that holds the log (its `following`)."""
        self.auto_scroll = following
        pane = self.parent
        if pane is not None and hasattr(pane, "following"):
            pane.following = following
