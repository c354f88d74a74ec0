"""The console pane end to end in a headless app: a real ConsoleConnection reader thread
feeds the real ConsolePane from a session that plays a console stream (the
connection's attach hook, the same one the supervisor's client fills in)."""

from __future__ import annotations

import asyncio
import queue
import socket
import sys
import threading
import time

import pyte
from _consolekit import PaneApp, flooded, stub_connected, until
from textual import events
from textual.app import App

from nsdash.tui.console import connection
from nsdash.tui.console.connection import FLOOD_PARSE_SHARE, PARSE_SHARE, ConsoleConnection
from nsdash.tui.console.terminal import TerminalModel
from nsdash.tui.widgets.console_pane import FLOOD_BYTES, FLOOD_FPS, FPS, NOTE_EVERY, ConsolePane

OK = b"[\x1b[0;32m  OK  \x1b[0m] Started \x1b[0;1;39munit-%d.service\x1b[0m - Unit number %d.\r\n"
BOOT = (b"".join(OK % (i, i) for i in range(300))
        + b"\r\x1b[K[\x1b[0;31m*  \x1b[0m] A start job is running for caf\xc3\xa9 (1s / 1min 30s)\r"
        + b"\x1b[H\x1b[2J\r\nDebian GNU/Linux 12 demo tty1\r\n\r\ndemo login: ")


class PlaySession:
    """Plays DATA in 4 KiB reads, then again REPEAT times; echoes typed bytes back like a tty."""

    def __init__(self, data: bytes, repeat: int = 1) -> None:
        self.chunks = [data[i : i + 4096] for i in range(0, len(data), 4096)]
        self.count = len(self.chunks) * repeat  # reads that hand out data
        self.next = 0
        self.typed: queue.Queue[bytes] = queue.Queue()
        self.sent: list[bytes] = []
        self.done = threading.Event()
        self.handed = 0  # bytes read() has returned

    def read(self, timeout=None):
        out = b""
        while not self.typed.empty():
            out += self.typed.get()
        if self.next < self.count:
            out += self.chunks[self.next % len(self.chunks)]
            self.next += 1
        elif not out:
            self.done.set()
            time.sleep(0.01)
        self.handed += len(out)
        return out, []

    def send(self, data: bytes) -> None:
        self.sent.append(data)
        self.typed.put(data)

    def resize(self, rows: int, cols: int) -> None:
        pass

    def close(self) -> None:
        pass


def painted_text(pane: ConsolePane) -> list[str]:
    """What Textual gets from the pane for each line."""
    return ["".join(seg.text for seg in pane.render_line(y)) for y in range(pane.size.height)]


def pyte_text(data: bytes, cols: int, rows: int) -> tuple[list[str], list[str]]:
    """The screen plain pyte shows after DATA, and the lines it scrolled off the top."""
    screen = pyte.HistoryScreen(cols, rows, history=10000)
    pyte.ByteStream(screen).feed(data)

    def text(line) -> str:
        return "".join(line[x].data for x in range(cols))

    return [text(screen.buffer[y]) for y in range(rows)], [text(line) for line in screen.history.top]


async def attach_playing(pilot, session: PlaySession) -> ConsolePane:
    pane = pilot.app.query_one(ConsolePane)
    pane.focus()
    await pilot.pause()
    conn = ConsoleConnection("play", pane.model, lambda reason: None, attach=lambda name, rows, cols: session)
    pane.attach("play", conn)
    return pane


async def settle(pilot, session: PlaySession, pane: ConsolePane) -> None:
    """Until the session has handed out everything and the pane has painted all of it (the
    reader parses a share of each frame: on a loaded host the last read takes more frames)."""
    deadline = time.monotonic() + 20
    while not session.done.is_set() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    while pane.shown_bytes < session.handed and time.monotonic() < deadline:
        await asyncio.sleep(1 / FPS)
    await pilot.pause()


async def test_pane_paints_what_pyte_shows_and_keeps_the_history():
    async with PaneApp().run_test(size=(100, 30)) as pilot:
        session = PlaySession(BOOT)
        pane = await attach_playing(pilot, session)
        await settle(pilot, session, pane)
        cols, rows = pane.size.width, pane.size.height
        screen, history = pyte_text(BOOT, cols, rows)
        assert painted_text(pane) == screen
        # A page back: the last lines that scrolled off, then the top of the screen.
        await pilot.press("shift+pageup")
        page = rows - 1
        assert painted_text(pane) == history[-page:] + screen[: rows - page]
        # ... in their colours: the OK is green, as SGR 32 said.
        ok = [seg for seg in pane.render_line(0) if seg.text.strip() == "OK"]
        assert ok and ok[0].style is not None and ok[0].style.color is not None
        assert ok[0].style.color.name == "green"
        pane.detach()


async def test_typed_keys_reach_the_machine_and_their_echo_is_painted():
    async with PaneApp().run_test(size=(100, 30)) as pilot:
        session = PlaySession(b"demo login: ")
        pane = await attach_playing(pilot, session)
        await settle(pilot, session, pane)
        session.done.clear()
        await pilot.press("r", "o", "o", "t")
        await settle(pilot, session, pane)
        assert any(line.rstrip() == "demo login: root" for line in painted_text(pane))
        pane.detach()


async def test_a_flood_is_painted_at_most_fps_times_a_second_and_keys_still_get_through():
    painted: list[float] = []

    class CountingPane(ConsolePane):
        def render_line(self, y):
            if y == 0:
                painted.append(time.monotonic())
            return super().render_line(y)

    class CountingApp(App):
        def compose(self):
            yield CountingPane()

    async with CountingApp().run_test(size=(100, 30)) as pilot:
        session = PlaySession(BOOT, repeat=500_000)  # ~10 GB: more than a second's worth, even skipped
        pane = pilot.app.query_one(CountingPane)
        pane.focus()
        conn = ConsoleConnection("flood", pane.model, lambda reason: None, attach=lambda name, rows, cols: session)
        pane.attach("flood", conn)
        await asyncio.sleep(0.3)
        painted.clear()
        start = time.monotonic()
        pilot.app.post_message(events.Key("x", "x"))
        # Painting goes on through the flood: 2 s of frames at FLOOD_FPS, however long a loaded
        # host takes to paint them (5 frames in the first second was a speed test: 4 at load 10).
        wanted = 2 * FLOOD_FPS
        while len(painted) < wanted and time.monotonic() < start + 30:
            await asyncio.sleep(0.1)
        assert len(painted) >= wanted, f"{len(painted)} frames in 30 s of flood"
        assert session.next < session.count, "the flood ended before the measurement did"
        # ... and never more than FLOOD_FPS of them in any second (and one for the key)
        most = max(sum(1 for u in painted if t <= u < t + 1.0) for t in [start, *painted])
        assert most <= FLOOD_FPS + 3, (most, [round(t - start, 3) for t in painted])
        assert session.sent == [b"x"]
        assert pane.model.bytes_fed > 1_000_000
        pane.detach()


async def test_wide_characters_take_two_cells_on_the_painted_line():
    async with PaneApp().run_test(size=(40, 8)) as pilot:
        session = PlaySession("日本 ok\r\n".encode())
        pane = await attach_playing(pilot, session)
        await settle(pilot, session, pane)
        strip = pane.render_line(0)
        assert strip.cell_length == pane.size.width
        assert "".join(seg.text for seg in strip).startswith("日本 ok")
        pane.detach()


class SlowAttach:
    """An attach hook that waits for GO, then hands out SESSION or fails."""

    def __init__(self, session: PlaySession | None) -> None:
        self.session = session
        self.go = threading.Event()
        self.closed = False

    def __call__(self, name: str, rows: int, cols: int):
        self.go.wait(10)
        if self.session is None:
            raise OSError("connection refused")
        inner = self.session
        outer = self

        class Tracked(PlaySession):
            def __init__(self) -> None:
                self.__dict__.update(inner.__dict__)

            def close(self) -> None:
                outer.closed = True

        return Tracked()


def test_detach_puts_the_gil_switch_interval_back_when_the_last_console_goes():
    before = sys.getswitchinterval()
    ends: list[str] = []
    a = ConsoleConnection("a", TerminalModel(), ends.append, attach=lambda n, r, c: PlaySession(b"a"))
    b = ConsoleConnection("b", TerminalModel(), ends.append, attach=lambda n, r, c: PlaySession(b"b"))
    a.start()
    b.start()
    assert sys.getswitchinterval() <= 0.001
    a.close()
    assert sys.getswitchinterval() <= 0.001  # b still reads
    b.close()
    b.close()  # twice: no harm
    assert sys.getswitchinterval() == before
    assert ends == []


def test_a_console_closed_while_attaching_closes_its_session_and_reports_nothing():
    for session in (PlaySession(b"late"), None):  # attached after the close; failed after it
        ends: list[str] = []
        hook = SlowAttach(session)
        conn = ConsoleConnection("slow", TerminalModel(), ends.append, attach=hook)
        conn.start()
        conn.close()  # the user moved on to another machine
        hook.go.set()
        assert conn._thread is not None
        conn._thread.join(5)
        assert not conn._thread.is_alive()
        assert ends == []  # a late failure must not end the console the pane shows now
        assert hook.closed == (session is not None)



async def test_the_cursor_is_painted_on_its_cell_after_wide_characters():
    async with PaneApp().run_test(size=(40, 8)) as pilot:
        session = PlaySession("日本 ok\r\n日本\x1b[1C".encode())  # the cursor: cell 5 of line 1
        pane = await attach_playing(pilot, session)
        await settle(pilot, session, pane)
        assert pane.has_focus and pane.model.cursor == (5, 1)
        cells = [(seg.text, bool(seg.style and seg.style.reverse)) for seg in pane.render_line(1)]
        at = 0
        reversed_at = []
        for text, rev in cells:
            for ch in text:
                if rev:
                    reversed_at.append(at)
                at += 2 if ch in "日本" else 1
        assert reversed_at == [5]
        pane.detach()


def test_detach_does_not_wait_for_the_readers_poll_timeout():
    # The real client session over a socket whose other end (the supervisor) stays quiet:
    # the reader sits in poll(); closing must wake it, not leave the UI waiting ~0.5 s.
    from nsdash.machines import client
    from nsdash.machines import protocol as proto

    ours, supervisor = socket.socketpair()
    control = client.Control.__new__(client.Control)
    control.sock, control.lines, control.name = ours, proto.LineReader(), "quiet"
    session = client.ConsoleSession(control)
    ends: list[str] = []
    conn = ConsoleConnection("quiet", TerminalModel(), ends.append, attach=lambda n, r, c: session)
    conn.start()
    time.sleep(0.2)  # the reader is in poll() now
    start = time.monotonic()
    conn.close()
    took = time.monotonic() - start
    supervisor.close()
    assert conn._thread is not None and not conn._thread.is_alive()
    assert took < 0.1, f"detach took {took:.3f} s"
    assert ends == []


async def test_every_sgr_colour_paints():
    # pyte names SGR 93/103 'brightbrown' and SGR 105 'bfightmagenta' (sic); Rich knows neither,
    # and one such cell stopped the app in render_line.
    codes = [*range(30, 38), *range(40, 48), *range(90, 98), *range(100, 108)]
    data = b"".join(b"\x1b[%dm%d " % (c, c) for c in codes) + b"\x1b[0m\r\n"
    async with PaneApp().run_test(size=(120, 8)) as pilot:
        session = PlaySession(data)
        pane = await attach_playing(pilot, session)
        await settle(pilot, session, pane)
        styles = {seg.text.strip(): seg.style for y in range(2) for seg in pane.render_line(y) if seg.text.strip()}
        assert styles["93"].color.name == "bright_yellow"
        assert styles["103"].bgcolor.name == "bright_yellow"
        assert styles["105"].bgcolor.name == "bright_magenta"
        assert styles["33"].color.name == "yellow"
        assert pilot.app.is_running
        pane.detach()


async def test_a_flood_is_painted_flood_fps_times_a_second_but_a_keys_frame_is_not_held(monkeypatch):
    """Not timed: the pane's clock is ours.  Past FLOOD_BYTES since the last frame, a frame
    waits until 1/FLOOD_FPS after it; a key's frame and a trickle do not wait."""
    async with flooded(PaneApp(), monkeypatch) as flood:
        pane, conn = flood.pane, flood.conn

        def output(n: int) -> None:
            pane.model.feed(b"y\r\n" * (n // 3))
            conn.changed.set()

        output(FLOOD_BYTES * 2)
        pane._tick()
        assert not conn.changed.is_set() and pane.shown_bytes == pane.model.bytes_fed  # the first frame
        flood.clock += 1 / FPS
        output(FLOOD_BYTES * 2)
        pane._tick()
        assert conn.changed.is_set() and pane.shown_bytes < pane.model.bytes_fed  # held: a flood, too soon
        pane._tick(key=True)
        assert not conn.changed.is_set() and pane.shown_bytes == pane.model.bytes_fed  # a key's frame goes
        flood.clock += 1 / FPS
        output(30)
        pane._tick()
        assert not conn.changed.is_set()  # a trickle is painted at FPS
        flood.clock += 1 / FPS
        output(FLOOD_BYTES * 2)
        pane._tick()
        assert conn.changed.is_set()
        flood.clock += 1 / FLOOD_FPS
        pane._tick()
        assert not conn.changed.is_set() and pane.shown_bytes == pane.model.bytes_fed


async def test_keys_after_the_leave_key_are_the_screens_never_the_guests():
    """ctrl+] then Escape typed at once: the Escape may reach the pane before the screen has
    moved the focus (seen in tmux under load, where the guest got '^['); it must not be sent,
    and goes on to the screen's bindings.  Focus back on the pane, keys are the guest's again."""
    escapes: list[str] = []

    class LeavingApp(PaneApp):
        BINDINGS = [("escape", "note_escape")]

        def action_note_escape(self) -> None:
            escapes.append("escape")

    async with LeavingApp().run_test(size=(100, 30)) as pilot:
        session = PlaySession(b"login: ")
        pane = await attach_playing(pilot, session)
        await settle(pilot, session, pane)
        await pilot.press("ctrl+right_square_bracket", "escape", "x")  # nobody moves the focus here
        await pilot.pause()
        assert session.sent == [] and escapes == ["escape"]
        pane.blur()
        await pilot.pause()
        pane.focus()
        await pilot.pause()
        await pilot.press("x")
        await pilot.pause()
        assert session.sent == [b"x"]
        pane.detach()


async def test_a_frame_repaints_only_lines_that_read_otherwise_than_in_the_last_frame(monkeypatch):
    """pyte calls every line dirty when the screen scrolls; a flood of like lines (`yes`)
    scrolls the screen without changing what it shows, and its frame repaints only the
    cursor's line, while a line that does change is repainted, with its new text."""
    async with PaneApp().run_test(size=(100, 30)) as pilot:
        pane, conn = await stub_connected(pilot)
        refreshed: list[tuple] = []
        real_refresh = pane.refresh

        def refresh(*regions, **kw):
            refreshed.append(regions)
            return real_refresh(*regions, **kw)

        monkeypatch.setattr(pane, "refresh", refresh)

        def frame(data: bytes) -> list[int]:
            """The rows the frame after DATA repaints (every row: the whole pane)."""
            refreshed.clear()
            pane.model.feed(data)
            conn.changed.set()
            pane._tick(key=True)
            assert pane.model.take_dirty() == set()  # the frame took all of pyte's dirty lines
            if () in refreshed:
                return list(range(pane.model.lines))
            return sorted(region.y for regions in refreshed for region in regions if region.height == 1)

        last = pane.model.lines - 1  # the cursor's line, at the bottom
        assert frame(b"y\r\n" * 200) == list(range(last + 1))  # the first frame: every line is new
        assert frame(b"y\r\n" * 200) == [last]  # 200 lines scrolled by: only the cursor's line
        assert frame(b"y\r\nn\r\n") == [last - 1, last]  # scrolled by two: the line above now reads 'n'
        assert [line.rstrip() for line in painted_text(pane)[last - 3 : last + 1]] == ["y", "y", "n", ""]
        pane.connection = None


async def test_the_borders_flood_figure_changes_at_most_every_note_every_seconds(monkeypatch):
    """Not timed: the pane's clock is ours.  A new border repaints the whole pane; a flood
    skips several times a second, and the border says so once a second, the first skip at
    once and the last one too, when the flood has stopped."""
    async with flooded(PaneApp(), monkeypatch) as flood:
        pane, conn = flood.pane, flood.conn
        pane.attached = "flood"
        subtitles: list[str] = []

        def skip_and_frame(n: int) -> None:
            pane.model.skip(n)
            pane.model.feed(b"y\r\n")
            conn.changed.set()
            pane._tick(key=True)
            subtitles.append(str(pane.border_subtitle))

        skip_and_frame(1_000_000)
        assert "1.0 MB of a flood skipped" in subtitles[-1]  # the first skip: at once
        for _ in range(9):  # nine more skips within the second: the border stays as it was
            flood.clock += 0.1 * (NOTE_EVERY - 0.01)
            skip_and_frame(1_000_000)
        assert len(set(subtitles)) == 1
        flood.clock += NOTE_EVERY
        skip_and_frame(1_000_000)
        assert "11.0 MB of a flood skipped" in subtitles[-1]
        pane.model.skip(500_000)  # the flood's last skip, then no more output
        pane._tick()
        assert "11.0 MB" in str(pane.border_subtitle)  # held back ...
        flood.clock += NOTE_EVERY
        pane._tick()
        assert "11.5 MB of a flood skipped" in str(pane.border_subtitle)  # ... until NOTE_EVERY has passed


class _SimulatedFlood:
    """A console session on a simulated clock: every read hands out CHUNK bytes of `yes`
    (it costs the clock its timeout, and 10 µs) until the clock reaches END."""

    CHUNK = 16 * 1024

    def __init__(self, clock: list[float], end: float) -> None:
        self.clock, self.end = clock, end

    def read(self, timeout=None):
        if self.clock[0] >= self.end:
            return None
        self.clock[0] += (timeout or 0.0) + 1e-5
        return b"y\r\n" * (self.CHUNK // 3), []

    def send(self, data: bytes) -> None:
        pass

    def resize(self, rows: int, cols: int) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_flooding_reader_parses_flood_parse_share_of_the_time(monkeypatch):
    """Not timed: the reader's clock is simulated, parsing costs it 1 s a megabyte.  Behind
    (a burst) the reader parses PARSE_SHARE of each frame; once it skips (a flood),
    FLOOD_PARSE_SHARE: what it would parse beyond that only scrolls by between the pane's
    frames, and the parser holds the GIL the UI thread needs for keys and frames."""
    assert FLOOD_PARSE_SHARE < PARSE_SHARE / 2
    clock = [0.0]
    rate = 1e6
    monkeypatch.setattr(connection, "_clock", lambda: clock[0])
    model = TerminalModel(80, 24)
    fed: list[tuple[float, int]] = []  # (when, bytes parsed)
    real_feed = model.feed

    def feed(data: bytes) -> None:
        real_feed(data)
        clock[0] += len(data) / rate
        fed.append((clock[0], len(data)))

    monkeypatch.setattr(model, "feed", feed)
    conn = ConsoleConnection("flood", model, lambda reason: None)
    conn._pump(_SimulatedFlood(clock, end=5.0))
    assert model.bytes_skipped > 0
    flooding = sum(n for when, n in fed if 1.0 <= when < 5.0)
    share = flooding / rate / 4.0  # of the clock's seconds, parsing
    assert FLOOD_PARSE_SHARE * 0.5 < share < FLOOD_PARSE_SHARE + 0.05, share
    assert conn.max_backlog <= connection.BEHIND


def test_after_a_key_the_reader_takes_the_flood_to_its_tail_at_once(monkeypatch):
    """Not timed: the reader's clock is simulated, parsing costs it 1 s a megabyte.  Under a
    flood a key's echo comes behind up to BEHIND unparsed bytes, parsed at FLOOD_PARSE_SHARE
    of each frame; after a key the reader skips to KEEP and parses at once, so what it read
    after the key (the echo) is consumed within two slices' parse, not a frame or more later;
    then it parses its share again."""
    clock = [0.0]
    rate = 1e6
    monkeypatch.setattr(connection, "_clock", lambda: clock[0])
    model = TerminalModel(80, 24)
    conn = ConsoleConnection("flood", model, lambda reason: None)
    keys: list[float] = []  # when each key was sent (after the read it came in)
    consumed: list[float] = []  # when what was read after it was all parsed or skipped
    real_feed, real_skip = model.feed, model.skip

    def check() -> None:
        if len(consumed) < len(keys) and conn._echo_end is not None and model.bytes_fed >= conn._echo_end:
            consumed.append(clock[0])

    def feed(data: bytes) -> None:
        real_feed(data)
        clock[0] += len(data) / rate
        check()

    def skip(n: int) -> None:
        real_skip(n)
        check()

    monkeypatch.setattr(model, "feed", feed)
    monkeypatch.setattr(model, "skip", skip)
    flood = _SimulatedFlood(clock, end=3.0)
    conn._session = flood
    real_read = flood.read

    def read(timeout=None):
        got = real_read(timeout)
        if 1.0 + 0.25 * len(keys) <= clock[0] < 2.6 and len(consumed) == len(keys):
            conn.send(b"x")  # the UI thread's send, as this read returns
            keys.append(clock[0])
        return got

    flood.read = read
    conn._pump(flood)
    assert len(keys) == 7 and len(consumed) == 7
    waits = [done - sent for sent, done in zip(keys, consumed, strict=False)]
    assert max(waits) < 2 * connection.SLICE / rate + 0.002, waits  # two slices' parse, not a frame
    assert not conn.echo_pending  # the window is over: the reader parses its share again
    assert conn.max_backlog <= connection.BEHIND


async def test_a_keys_frame_waits_for_the_bytes_read_after_the_key():
    """The key's frame (ECHO_WAIT after it) is taken once the reader has parsed what came
    after the key; taken before, it would not show the echo, and the next flood frame is
    1/FLOOD_FPS away."""
    async with PaneApp().run_test(size=(100, 30)) as pilot:
        pane, conn = await stub_connected(pilot)
        conn.echo_pending = True
        pane.model.feed(b"y\r\n" * FLOOD_BYTES)
        conn.changed.set()
        pane._soon_tick()
        assert pane._soon is not None and conn.changed.is_set()  # no frame: the echo is not parsed yet
        pane._soon.stop()
        conn.echo_pending = False
        pane._soon_tick()
        assert pane._soon is None and not conn.changed.is_set()  # the key's frame
        assert pane.shown_bytes == pane.model.bytes_fed
        pane.connection = None


def test_keys_typed_while_the_console_opens_are_sent_once_it_is_open_in_order():
    # A far console's session takes an ssh connection to open (seconds on a loaded host): what
    # the user typed meanwhile was dropped (the multihost test's first Enter, after a fixed wait).
    opened = threading.Event()
    session = PlaySession(b"demo login: ")

    def slow_attach(name, rows, cols):
        assert opened.wait(10)
        return session

    ends: list[str] = []
    conn = ConsoleConnection("slow", TerminalModel(), ends.append, attach=slow_attach)
    conn.start()
    try:
        conn.send(b"ro")
        conn.send(b"ot")
        assert session.sent == []  # nothing to send them to yet
        opened.set()
        assert until(lambda: session.sent), "the early keys were not sent"
        conn.send(b"\r")
        assert until(lambda: b"".join(session.sent) == b"root\r"), session.sent
        assert session.sent[0] == b"root"  # the early keys, in one send
    finally:
        conn.close()
    assert ends == []


def test_a_key_never_waits_for_the_keys_typed_while_the_console_opened():
    """The sender sends the keys typed while the session opened (a far console's ssh: the send
    can take a while); a key typed meanwhile is kept for after them, and send() returns at
    once on the UI thread: it waited for that send under the lock (and a send that failed
    called on_end, which waits for the UI thread, under it: the dashboard hung)."""
    opened, release, early_sending = threading.Event(), threading.Event(), threading.Event()

    class SlowFirstSend(PlaySession):
        def send(self, data: bytes) -> None:
            if not self.sent:
                early_sending.set()
                assert release.wait(20)
            super().send(data)

    session = SlowFirstSend(b"demo login: ")
    conn = ConsoleConnection("slow", TerminalModel(), [].append,
                             attach=lambda name, rows, cols: session if opened.wait(20) else None)
    conn.start()
    typed = threading.Event()
    ui = threading.Thread(target=lambda: (conn.send(b"\r"), typed.set()), daemon=True)
    try:
        conn.send(b"root")
        opened.set()
        assert early_sending.wait(20), "the early keys were not sent"
        ui.start()  # the UI thread types Enter while they are being sent
        assert typed.wait(20), "send() waited for the early keys' send"
        assert session.sent == []
        release.set()
        assert until(lambda: len(session.sent) >= 2), session.sent
        conn.send(b"x")
        assert until(lambda: b"".join(session.sent) == b"root\rx"), session.sent  # in the order typed
    finally:
        release.set()
        conn.close()


def test_a_gap_the_supervisor_skipped_is_counted_and_what_comes_after_starts_clean():
    """The supervisor skipped ahead for this reader (a `skipped` event, `at` its place in the
    read): what the reader held from before the gap is left out with it, the gap is counted as
    skipped, and what follows is parsed from the ground state (a sequence cut by the gap does
    not swallow it)."""
    before = b"held-before-the-gap \x1b[1"  # ends inside a CSI sequence
    lost, after = b"cut-by-gap", b"\r\nAFTER THE GAP\r\n"
    reads = [(before, []), (lost + after, [{"event": "skipped", "bytes": 5000, "at": len(lost)}])]

    class Scripted(PlaySession):
        def read(self, timeout=None):
            return reads.pop(0) if reads else None

    ended = threading.Event()
    model = TerminalModel(40, 5)
    conn = ConsoleConnection("gap", model, lambda reason: ended.set(),
                             attach=lambda name, rows, cols: Scripted(b""))
    conn.start()
    try:
        assert ended.wait(20), "the reader did not end with the session"
    finally:
        conn.close()
    assert model.bytes_fed == len(before) + len(lost) + len(after) + 5000
    assert model.bytes_skipped >= len(lost) + 5000
    screen = model.display()
    assert any(line.startswith("AFTER THE GAP") for line in screen), screen
    assert not any("cut-by-gap" in line for line in screen), screen


async def test_a_key_the_console_does_not_take_rings_the_bell_and_is_counted_on_the_border():
    """The connection dropped it (SEND_MAX bytes of keys wait: the machine stopped reading), as
    a full tty input queue drops: the user hears it and the border says how many."""
    async with PaneApp().run_test(size=(100, 30)) as pilot:
        pane, conn = await stub_connected(pilot)
        pane.attached = "stuck"
        bells: list[int] = []
        pilot.app.bell = lambda: bells.append(1)
        pane.focus()
        await pilot.press("a")
        assert conn.sent == b"a" and pane.dropped_keys == 0 and not bells
        conn.send = lambda data: False
        await pilot.press("b", "c")
        assert pane.dropped_keys == 2 and len(bells) == 2
        assert "2 keys dropped: the console is not reading" in str(pane.border_subtitle)
        pane.connection = None
