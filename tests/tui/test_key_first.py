"""A key's own frame comes before the flood's work (nsdash.tui.keyfirst; issue 15: keys
within 100 ms while a machine floods).

Not timed: the order of what the UI thread did (the journal's slices, the app's
frames, the key's arrival and its binding) is recorded, and the gate's clock is ours.
"""

from __future__ import annotations

from _consolekit import GatedApp, flooded
from test_console_pane import _SimulatedFlood
from test_flood_repaints import SIZE
from tuikit import machine_screen, sample_app, ticks

from nsdash.tui import keyfirst
from nsdash.tui.console import connection
from nsdash.tui.console.connection import ConsoleConnection
from nsdash.tui.console.terminal import TerminalModel
from nsdash.tui.keyfirst import HOLD_MOST, KeyFirst
from nsdash.tui.widgets.console_pane import ConsolePane
from nsdash.tui.widgets.follow_log import FollowLog
from nsdash.tui.widgets.journal_pane import KEEP, WRITE_SLICE, JournalPane


async def test_no_slice_of_the_journal_is_written_between_a_key_and_its_frame(monkeypatch):
    """A key that arrives while the journal pane writes a round (p's rewrite of every kept
    line: KEEP // WRITE_SLICE slices) is drawn before the next slice: the writer took a
    turn between every two of the key's hops through Textual, 100-200 ms of slices on a
    loaded host before the key's frame."""
    # The gate's clock stands still: on a loaded host HOLD_MOST (real time) passed between the
    # key and its frame now and then, the gate gave the key up as it should, and a slice came first.
    monkeypatch.setattr(keyfirst, "_clock", lambda: 1000.0)
    app = sample_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await machine_screen(app, pilot)
        pane = screen.query_one(JournalPane)
        log = screen.query_one(FollowLog)
        pane.show(("demo-debian",), ticks(KEEP, priority=5), reset=False)
        await pane.written()
        await pilot.pause()
        gate = app.key_first
        order: list[str] = []
        for name in ("arrived", "handled", "frame"):
            real = getattr(gate, name)

            def recorded(*a, real=real, name=name):
                order.append(name)
                return real(*a)

            setattr(gate, name, recorded)
        real_write = log.write

        def write(content, *a, **kw):
            order.append("slice")
            if order.count("slice") == 3:  # a key comes in the middle of the round (as the app says:
                gate.arrived()  # NsdashApp.on_event), its binding runs a turn later and changes a border
                app.call_later(key_binding)
            return real_write(content, *a, **kw)

        def key_binding() -> None:
            screen.query_one(ConsolePane).border_subtitle = "a key's effect"
            gate.handled(app)

        log.write = write
        pane.action_cycle_priority()  # ≤notice: the KEEP notices written again
        await pane.written()
        await pilot.pause()
        assert order.count("slice") >= KEEP // WRITE_SLICE  # the round was written ...
        key = order.index("arrived")
        handled = order.index("handled", key)
        frame = order.index("frame", handled)
        assert "slice" not in order[key:frame], order[key - 1:frame + 2]  # ... none of it before the key's frame
        assert gate.holds >= 1
        assert order[frame + 1:].count("slice") > 0  # and the rest after it


async def test_a_flooding_console_takes_no_frame_while_a_key_waits_for_its_own(monkeypatch):
    """The console pane's flood frame (46 lines) waits while another key's frame is due:
    until the first frame after the key's binding ran, or HOLD_MOST after the key came
    (a key no one hands back).  A frame for the pane's own key is never held."""
    gate_clock = [1000.0]  # the gate's own: the pane's advances a flood frame interval per frame_taken()
    monkeypatch.setattr(keyfirst, "_clock", lambda: gate_clock[0])
    app = GatedApp()
    async with flooded(app, monkeypatch) as flood:
        gate = app.key_first
        assert flood.frame_taken()  # no key: the flood's frame
        gate.arrived()
        assert not flood.frame_taken()  # a key came: held ...
        gate.handled(app)
        assert not flood.frame_taken()  # ... while its frame is not drawn ...
        gate.frame()
        assert flood.frame_taken()  # ... and taken after it
        gate.arrived()
        assert not flood.frame_taken()
        gate_clock[0] += HOLD_MOST
        assert flood.frame_taken()  # a key that never came back holds it HOLD_MOST at most
        gate.arrived()
        flood.pane._tick(key=True)  # the pane's own key (its echo)
        assert not flood.conn.changed.is_set()
        gate.arrived()
        await flood.pilot.press("x")  # a key for the guest (the pane has the focus): nothing waits for it
        assert not gate.waiting and not gate.holding()
        gate.handled(app)  # a key that changed nothing on screen: no frame comes for it ...
        await flood.pilot.pause()
        assert not gate.waiting  # ... and the screen's refresh says so (the clock stood still)


async def test_the_app_tells_the_gate_when_a_key_arrives_and_when_its_binding_has_run():
    """NsdashApp.on_event: a key from the terminal arrives, and comes back after bubbling, when
    its binding runs (p: the journal pane's filter); the next frame is its own."""
    app = sample_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await machine_screen(app, pilot)
        pane = screen.query_one(JournalPane)
        screen.set_focus(screen.query_one(FollowLog))
        await pilot.pause()
        gate = app.key_first
        seen: list[str] = []
        for name in ("arrived", "handled"):
            real = getattr(gate, name)

            def recorded(*a, real=real, name=name):
                seen.append(f"{name} {pane.filter.max_priority}")
                return real(*a)

            setattr(gate, name, recorded)
        await pilot.press("p")
        await pilot.pause()
        assert seen == ["arrived None", "handled 5"]  # before the binding, and once after it
        assert not gate.waiting  # its frame was drawn


def test_the_console_reader_parses_nothing_while_a_key_waits_for_its_frame(monkeypatch):
    """Not timed: the reader's clock is simulated (parsing costs it 1 s a megabyte), and the
    key waits from 1.0 to 2.0 on it.  Meanwhile the reader parses nothing (it held the GIL
    the UI thread needs for the key's frame); before and after, it parses as it did."""
    clock = [0.0]
    monkeypatch.setattr(connection, "_clock", lambda: clock[0])
    model = TerminalModel(80, 24)
    started: list[float] = []
    real_feed = model.feed

    def feed(data: bytes) -> None:
        started.append(clock[0])
        real_feed(data)
        clock[0] += len(data) / 1e6

    monkeypatch.setattr(model, "feed", feed)
    conn = ConsoleConnection("flood", model, lambda reason: None)
    conn.hold = lambda: 1.0 <= clock[0] < 2.0
    conn._pump(_SimulatedFlood(clock, end=3.0))
    assert [t for t in started if 1.0 <= t < 2.0] == []
    assert any(t < 1.0 for t in started) and any(t >= 2.0 for t in started)


def test_a_key_after_one_that_never_came_back_waits_its_own_bound(monkeypatch):
    """A key a widget kept (no `handled`, no frame) and nothing asking `waiting` until its bound
    ran out: the next key still holds the flood back, from its own arrival (on main it found the
    stale start and held nothing)."""
    clock = [1000.0]
    monkeypatch.setattr(keyfirst, "_clock", lambda: clock[0])
    gate = KeyFirst()
    gate.arrived()  # kept by a widget: never handled
    clock[0] += 5 * HOLD_MOST  # no flood meanwhile: nobody asked
    gate.arrived()
    assert gate.waiting and gate.holding()
    clock[0] += HOLD_MOST / 2
    assert gate.waiting
    clock[0] += HOLD_MOST
    assert not gate.waiting and not gate.holding()


async def test_the_flood_waits_at_most_its_bound_when_no_frame_ever_comes():
    """painted() ends on its own timer (not when something else looks): a key whose frame never
    comes holds the journal's writer HOLD_MOST, then lets it go, and the gate is released."""
    import asyncio

    gate = KeyFirst()
    gate.arrived()
    await asyncio.wait_for(gate.painted(), timeout=60)  # a hang here would be the bug: 60 s, not a timing
    assert gate.holds == 1 and not gate.waiting and gate._since is None


async def test_a_woken_writer_does_not_end_a_newer_keys_wait(monkeypatch):
    """The writer held for a key whose bound ran out while the loop was busy: a new key arrives
    before the writer's timer ran (arrived() gives the old key up, waking the writer).  The
    writer, running at last, must not release the new key's hold too."""
    import asyncio

    clock = [1000.0]
    monkeypatch.setattr(keyfirst, "_clock", lambda: clock[0])
    gate = KeyFirst()
    gate.arrived()
    writer = asyncio.ensure_future(gate.painted())
    await asyncio.sleep(0)  # the writer waits (its timer: HOLD_MOST of the real loop's time)
    clock[0] += 2 * HOLD_MOST  # the loop was busy past the old key's bound
    gate.arrived()  # a new key, before the writer's timer ran
    await asyncio.wait_for(writer, timeout=60)
    assert gate.waiting  # the new key still holds the flood back


class _StoppedTimer:
    """A screen's update timer that never ticks: Textual's own way to a frame is shut."""

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass

    def reset(self) -> None:
        pass


def _text_of(update) -> str:
    """What a frame writes to the terminal (Textual's ChopsUpdate), as text with its escapes."""
    from rich.console import Console

    return update.render_segments(Console(width=SIZE[0], force_terminal=True))


async def _frames_of_a_key(app, pilot, screen, key: str, seen) -> list:
    """Press KEY with SCREEN's update timer stopped; SEEN() at every frame the app wrote."""
    frames: list = []
    shown = app._display

    def display(on, renderable) -> None:
        frames.append((*seen(), _text_of(renderable)))
        shown(on, renderable)

    real_timer = screen._update_timer
    app._display = display
    screen._Screen__update_timer = _StoppedTimer()  # (Screen's own name for it)
    try:
        await pilot.press(key)
    finally:
        screen._Screen__update_timer = real_timer
        del app._display
        real_timer.resume()
    return frames


async def test_a_keys_frame_is_drawn_once_its_binding_has_run_not_at_the_next_timer_tick():
    """Not timed: the screen's update timer (Textual's 1/60 s clock, resumed a few hops after a
    change) is stopped, so only the key's own path draws.  p (a binding the app runs when the
    key comes back) and ctrl+] (the console pane keeps it; the machine screen moves the focus)
    each draw their effect in the frame written when their binding has run."""
    app = sample_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await machine_screen(app, pilot)
        pane = screen.query_one(JournalPane)
        log = screen.query_one(FollowLog)
        screen.set_focus(log)
        await pane.written()
        await pilot.pause()
        frames = await _frames_of_a_key(app, pilot, screen, "p",
                                        lambda: (pane.filter.max_priority, str(pane.border_subtitle)))
        assert frames, "no frame after p: it waited for the update timer"
        assert frames[0][0] == 5 and "notice" in frames[0][1]  # the frame shows p's effect ...
        assert "≤notice" in frames[0][2]  # ... on the terminal (the pane's bottom edge)
        assert app.key_first.immediate == 1

        screen.set_focus(screen.query_one(ConsolePane))
        await pilot.pause()
        footer = screen.query_one("KeyFooter")
        frames = await _frames_of_a_key(app, pilot, screen, "ctrl+right_square_bracket",
                                        lambda: (screen.focused, footer.line))
        assert frames, "no frame after ctrl+]: it waited for the update timer"
        focused, line, _written = frames[0]
        assert focused is log and any(k.description == "Priority" for k in line.keys)
        assert app.key_first.immediate == 2


async def test_a_key_no_widget_takes_runs_its_binding_where_it_arrives():
    """p with the journal's log focused: no node between the log and the screen handles keys
    itself, so the app runs p's binding as the key arrives (keyfirst.at_once), instead of
    sending it down to the log and letting it bubble back up a node per turn of the loop
    (the flood's work ran between every two).  A key a widget does take (the search box's
    text) still goes to it."""
    from textual import events
    from textual.widgets import Input

    dispatched: list[tuple[str, bool]] = []

    def hook(message) -> None:
        if isinstance(message, events.Key):
            dispatched.append((message.key, message.is_forwarded))

    app = sample_app()
    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        screen = await machine_screen(app, pilot)
        pane = screen.query_one(JournalPane)
        screen.set_focus(screen.query_one(FollowLog))
        await pilot.pause()
        dispatched.clear()
        await pilot.press("p")
        await pilot.pause()
        assert pane.filter.max_priority == 5
        # (the hook sees the app's own dispatches: on main p also came back to it, forwarded)
        assert dispatched == [("p", False)]  # the app's, once: never forwarded to the log
        await pilot.press("slash")  # the search box takes the focus ...
        await pilot.pause()
        box = screen.query_one("#journal-query", Input)
        assert screen.focused is box
        await pilot.press("x")  # ... and its text (forwarded to it, as Textual does)
        await pilot.pause()
        assert box.value == "x"
