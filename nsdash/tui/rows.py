"""A frame renders only the lines that changed, not the box around them (issue 16: at rest).

Textual's compositor (8.2.8, Compositor.render_partial_update) takes the box spanning every
region repainted since the last frame and asks each widget whose clip meets that box for
all of its lines: at rest the machine list's uptimes, cgtop's figures and the key footer's
corner are repainted each second, and their box is most of the screen, so each frame went
through ~200 lines (each through the style cache, the app's filters and a crop) to write
the ~25 that changed.  A compositor made here asks each widget only for its lines on the
rows being written, and not at all when the widgets in front already cover those rows
(the screen and the rows' containers behind the panels).  What is written is the same
ChopsUpdate over the same spans: the terminal sees the same bytes.

This overrides a private method of Textual's and reads its private names (`cuts`,
`visible_widgets`, `_dirty_regions`, `_regions_to_spans`, `ChopsUpdate`).  install() takes
it only on the Textual it was written for (PINNED) with those names present, else screens
keep Textual's own compositor; tests/tui/test_rows_frames.py fails loudly when the
installed Textual is another one, so an upgrade reads this again.
"""

from __future__ import annotations

import functools
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from itertools import pairwise

from textual._compositor import ChopsUpdate, Compositor
from textual.geometry import Region
from textual.screen import Screen
from textual.strip import Strip

PINNED = "8.2.8"  # the Textual whose render_partial_update this replaces (read it again on an upgrade)
_NAMES = ("cuts", "visible_widgets", "_regions_to_spans", "render_partial_update")


class RowsCompositor(Compositor):
    """Textual's compositor, its partial frames rendered row by row (module docstring)."""

    def render_partial_update(self) -> ChopsUpdate | None:
        regions = self._dirty_regions.copy()
        self._dirty_regions.clear()
        height = self.size.height
        spans = [span for span in self._regions_to_spans(regions) if 0 <= span[0] < height]
        if not spans:
            return None
        return ChopsUpdate(self._render_spans(spans), spans, [cut_set[1:] for cut_set in self.cuts])

    def _render_spans(self, spans: list[tuple[int, int, int]]) -> Sequence[Mapping[int, Strip | None]]:
        """The chops (a line's pieces between cuts, front widget first) on the lines of SPANS
        ((y, x1, x2), sorted), from the widgets the spans cross; other lines' chops are empty
        (ChopsUpdate reads only the spans' lines)."""
        cuts = self.cuts
        empty: dict[int, Strip | None] = {}
        chops: list[dict[int, Strip | None]] = [empty] * len(cuts)
        wanted: dict[int, list[int]] = {}  # the cuts whose pieces a span on the line covers
        for y, x1, x2 in spans:
            chops[y] = dict.fromkeys(cuts[y][:-1])
            line_cuts = cuts[y]
            wanted.setdefault(y, []).extend(cut for cut, end in pairwise(line_cuts) if cut < x2 and end > x1)
        for widget, (region, clip) in self.visible_widgets.items():  # front to back
            shown = region.intersection(clip)
            if not shown:
                continue
            first_cut, last_cut = shown.column_span
            rows = _rows_crossing(spans, shown)
            for run in _runs(rows):
                # A widget whose lines lose to the widgets in front wherever a span is is not asked.
                if all(chops[y][cut] is not None for y in run for cut in wanted[y] if first_cut <= cut < last_cut):
                    continue
                crop = Region(shown.x - region.x, run[0] - region.y, shown.width, len(run))
                for y, strip in zip(run, widget.render_lines(crop), strict=True):
                    line = chops[y]
                    final_cuts = [cut for cut in cuts[y] if last_cut >= cut >= first_cut]
                    pieces = strip.divide([cut - shown.x for cut in final_cuts[1:]])
                    for cut, piece in zip(final_cuts, pieces, strict=False):  # (the last cut ends the last piece)
                        if line[cut] is None:
                            line[cut] = piece
        return chops


def _rows_crossing(spans: list[tuple[int, int, int]], box: Region) -> list[int]:
    """The lines (ascending) on which a span of SPANS ((y, x1, x2) sorted by y) crosses BOX."""
    top, bottom, left, right = box.y, box.bottom, box.x, box.right
    start = bisect_left(spans, (top,))
    rows: list[int] = []
    for y, x1, x2 in spans[start:]:
        if y >= bottom:
            break
        if x1 < right and x2 > left and (not rows or rows[-1] != y):
            rows.append(y)
    return rows


def _runs(rows: list[int]) -> list[list[int]]:
    """ROWS (ascending) as runs of consecutive rows."""
    runs: list[list[int]] = []
    for y in rows:
        if runs and runs[-1][-1] == y - 1:
            runs[-1].append(y)
        else:
            runs.append([y])
    return runs


def pinned_installed() -> bool:
    """The installed Textual is PINNED (read from pip's record: nsdash.tui.installed)."""
    from nsdash.tui.installed import textual_version

    return textual_version() == PINNED


@functools.cache
def usable() -> bool:
    """The installed Textual is the one RowsCompositor was written for, with the names it reads."""
    return pinned_installed() and all(hasattr(Compositor, name) for name in _NAMES) \
        and "_dirty_regions" in vars(Compositor())


def install(screen: Screen) -> bool:
    """Give SCREEN (before it mounts) a RowsCompositor; False (Textual's own kept) on another Textual."""
    if not usable():
        return False
    screen._compositor = RowsCompositor()
    return True
