"""The merged journal pane stays in time order when a far host's history comes late.

flaky25 saw it under load: far2's ssh took longer than HISTORY_WAIT, far1's lines went out,
then far2's older history was appended after them, 30 s out of order.  The history that
comes late is marked so (nsdash.tui.remote_journal; tests/unit/test_remote_journal.py makes
a host slow on purpose) and the pane merges it into place.  Here the slow transport is the
test posting the batches as the poller would, far2's history after far1's live lines.  Not
timed: these read the lines written and count the re-renders.
"""

from __future__ import annotations

import pytest
from tuikit import feed_sample, sample_app

from nsdash.tui import sample_data as sd
from nsdash.tui.messages import JournalLine, JournalLines
from nsdash.tui.widgets import journal_pane
from nsdash.tui.widgets.journal_pane import JournalPane

KEYS = ("far1/m", "far2/m")


@pytest.fixture(autouse=True)
def free_writes(monkeypatch):
    monkeypatch.setattr(journal_pane, "_slice_clock", lambda: 0.0)


def line(host: str, seconds: int, text: str, late: bool = False) -> JournalLine:
    return JournalLine(int((sd.T0 + seconds) * 1e6), f"{host}/m", 6, "app", None, text, late=late)


async def _post(app, pilot, pane: JournalPane, lines: tuple[JournalLine, ...], reset: bool = False) -> list[str]:
    app.post_message(JournalLines(KEYS, lines, reset=reset))
    await pilot.pause()
    await pane.written()
    return [s.rsplit(": ", 1)[-1] for s in pane.visible_text()]


async def test_late_history_is_written_in_place_and_live_lines_are_only_appended():
    app = sample_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed_sample(app, pilot)
        pane = app.screen.query_one(JournalPane)
        renders = 0
        real_render_all = pane._render_all

        def render_all() -> None:
            nonlocal renders
            renders += 1
            real_render_all()

        pane._render_all = render_all  # type: ignore[method-assign]
        # HISTORY_WAIT passed without far2: far1's history goes out alone, then a live line of far1
        assert await _post(app, pilot, pane, (line("far1", 0, "one-0"), line("far1", 40, "one-40")),
                           reset=True) == ["one-0", "one-40"]
        assert await _post(app, pilot, pane, (line("far1", 60, "one-60"),)) == ["one-0", "one-40", "one-60"]
        assert renders == 1  # the reset's; the live line was appended
        # far2's history, 30 s older than far1's last lines, comes now: in place, by time
        shown = await _post(app, pilot, pane, (line("far2", 10, "two-10", late=True),
                                               line("far2", 50, "two-50", late=True)))
        assert shown == ["one-0", "two-10", "one-40", "two-50", "one-60"]
        assert renders == 2
        stamps = [x.realtime for x in pane.lines]
        assert stamps == sorted(stamps)
        # live lines again: appended, nothing written twice
        shown = await _post(app, pilot, pane, (line("far2", 70, "two-70"), line("far1", 80, "one-80")))
        assert shown == ["one-0", "two-10", "one-40", "two-50", "one-60", "two-70", "one-80"]
        assert renders == 2
        # late lines newer than everything shown (a slow host's history that is all new) are appended too
        assert (await _post(app, pilot, pane, (line("far2", 90, "two-90", late=True),)))[-1] == "two-90"
        assert renders == 2
