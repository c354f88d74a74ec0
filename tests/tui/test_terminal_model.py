"""The console's terminal model: same screen as pyte, faster, whole characters, keys."""

from __future__ import annotations

import pyte
from hypothesis import example, given, settings
from hypothesis import strategies as st

from nsdash.tui.console.terminal import Row, ScrollbackScreen, TerminalModel, key_to_bytes, runs_of

# Byte streams recorded from real consoles (BusyBox getty, a systemd boot, ls --color, a
# full-screen program setting margins), trimmed.
BUSYBOX_LOGIN = b"\r\nnsdash-demo: BusyBox init is up on demo\r\n\r\ndemo login: "
SYSTEMD_BOOT = (
    b"\x1b[0;1;39mWelcome to \x1b[0m\x1b[0;1;34mDebian GNU/Linux 12 (bookworm)\x1b[0m!\r\n\r\n"
    b"[\x1b[0;32m  OK  \x1b[0m] Created slice \x1b[0;1;39msystem-getty.slice\x1b[0m - Slice /system/getty.\r\n"
    b"[\x1b[0;32m  OK  \x1b[0m] Reached target \x1b[0;1;39mmulti-user.target\x1b[0m.\r\n"
    b"\r\nDebian GNU/Linux 12 debian console\r\n\r\ndebian login: "
)
LS_COLOR = b"\x1b[0m\x1b[01;34mbin\x1b[0m  \x1b[01;34metc\x1b[0m  caf\xc3\xa9  \xe6\x97\xa5\xe6\x9c\xac\r\n"
FULLSCREEN = (b"\x1b[?1049h\x1b[1;24r\x1b[H\x1b[2J" + b"".join(b"row %d\r\n" % i for i in range(40))
              + b"\x1b[5;10r\x1b[10;1H" + b"scrolled\n" * 8 + b"\x1b[r\x1b[?25l\x1b[?1h")
RECORDED = [BUSYBOX_LOGIN, SYSTEMD_BOOT, LS_COLOR, FULLSCREEN]


def pyte_screen(data: bytes, cols: int = 80, rows: int = 24) -> pyte.HistoryScreen:
    screen = pyte.HistoryScreen(cols, rows, history=10000)
    pyte.ByteStream(screen).feed(data)
    return screen


def model_of(data: bytes, cols: int = 80, rows: int = 24, chunk: int = 4096) -> TerminalModel:
    model = TerminalModel(cols, rows, history=10000)
    for i in range(0, len(data), chunk):
        model.feed(data[i : i + chunk])
    return model


def texts(screen: pyte.Screen) -> list[str]:
    # pyte's own .display trips over a wide character's stub cell moved by DCH.
    return ["".join(screen.buffer[y][x].data for x in range(screen.columns)) for y in range(screen.lines)]


def assert_same(model: TerminalModel, screen: pyte.HistoryScreen, history: bool = True) -> None:
    assert model.display() == texts(screen)
    assert (model.screen.cursor.x, model.screen.cursor.y) == (screen.cursor.x, screen.cursor.y)
    for y in range(screen.lines):
        for x in range(screen.columns):
            a, b = model.screen.buffer[y][x], screen.buffer[y][x]
            assert (a.fg, a.bg, a.bold, a.reverse) == (b.fg, b.bg, b.bold, b.reverse), (x, y)
    if not history:
        return
    ours = ["".join(r.text for r in runs_of(line, model.columns)) for line in model.screen.history]
    theirs = ["".join(line[x].data for x in range(screen.columns)) for line in screen.history.top]
    assert ours == theirs


def test_recorded_streams_match_pyte_in_any_chunking():
    for data in RECORDED:
        for chunk in (1, 2, 3, 7, 4096):
            # Rows scrolled inside a scroll region are not scrollback (pyte's
            # HistoryScreen keeps them; a terminal's scrollback does not).
            assert_same(model_of(data, chunk=chunk), pyte_screen(data), history=data is not FULLSCREEN)


def test_busybox_login_prompt_is_on_the_cursor_line():
    model = model_of(BUSYBOX_LOGIN)
    y = model.cursor[1]
    assert model.line_text(y).rstrip() == "demo login:"


def test_utf8_split_across_reads_is_kept_whole():
    model = TerminalModel(20, 2)
    data = "café 日本".encode()
    for i in range(len(data)):
        model.feed(data[i : i + 1])
    assert model.line_text(0).startswith("café 日本")
    assert "\ufffd" not in model.line_text(0)


def test_flood_keeps_bounded_scrollback_and_last_screen():
    data = b"".join(b"line %06d\r\n" % i for i in range(20000))
    model = model_of(data)
    assert model.line_text(22).rstrip() == "line 019999"
    assert len(model.screen.history) == 10000
    last_hist = model.screen.history[-1]
    assert isinstance(last_hist, Row) and last_hist.text.rstrip() == "line 019976"


def test_dirty_lines_are_reported_once():
    model = TerminalModel(20, 5)
    model.take_dirty()
    model.feed(b"abc")
    assert model.take_dirty() == {0}
    assert model.take_dirty() == set()
    model.feed(b"\r\n" * 6)
    assert model.take_dirty() == set(range(5))


def test_colour_runs_carry_attributes():
    model = model_of(b"\x1b[1;31mred\x1b[0m plain")
    runs = model.line_runs(0)
    assert runs[0].text == "red" and runs[0].fg == "red" and runs[0].bold
    assert runs[1].text.startswith(" plain") and runs[1].fg == "default"


def test_resize_changes_geometry_and_marks_all_dirty():
    model = TerminalModel(80, 24)
    model.take_dirty()
    model.resize(100, 30)
    assert (model.columns, model.lines) == (100, 30)
    assert model.take_dirty() == set(range(30))


def test_sequences_pyte_chokes_on_do_not_stop_the_console():
    # pyte raises on these (bad parameter counts, an unknown erase mode, origin mode
    # without margins); a machine can send them, and the console must go on.
    for seq in (b"\x1b[1;2;3K", b"\x1b[5K", b"\x1b[7J", b"\x1b[1;2A", b"\x1b[?6h\x1b[4d"):
        model = TerminalModel(20, 3)
        model.feed(b"before " + seq + b"after")
        assert "after" in "".join(model.display()), seq


def test_keys_to_bytes():
    assert key_to_bytes("enter") == b"\r"
    assert key_to_bytes("ctrl+c") == b"\x03"
    assert key_to_bytes("ctrl+d") == b"\x04"
    assert key_to_bytes("up") == b"\x1b[A"
    assert key_to_bytes("up", application_cursor=True) == b"\x1bOA"
    assert key_to_bytes("a", "a") == b"a"
    assert key_to_bytes("eacute", "é") == "é".encode()
    assert key_to_bytes("backspace") == b"\x7f"
    assert key_to_bytes("f5") == b"\x1b[15~"
    assert key_to_bytes("ctrl+shift+nothing") is None


def test_application_cursor_mode_follows_the_stream():
    model = model_of(b"\x1b[?1h")
    assert model.key_bytes("left") == b"\x1bOD"
    model.feed(b"\x1b[?1l")
    assert model.key_bytes("left") == b"\x1b[D"


def reference(data: bytes, cols: int, rows: int) -> ScrollbackScreen:
    """Plain pyte (its own parser) with the model's scrollback rule: a scroll from the top line
    keeps that line, as xterm does."""
    screen = ScrollbackScreen(cols, rows, history=1 << 20)
    pyte.ByteStream(screen).feed(data)
    return screen


def fed_in_pieces(data: bytes, cuts: list[int], cols: int, rows: int) -> TerminalModel:
    model = TerminalModel(cols, rows, history=10000)
    bounds = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for a, b in zip(bounds, bounds[1:], strict=False):
        model.feed(data[a:b])
    return model


def assert_exactly_pyte(model: TerminalModel, ref: ScrollbackScreen) -> None:
    """Same screen as plain pyte: what the pane renders (read before anything syncs), then every cell."""
    cols, rows = ref.columns, ref.lines
    assert model.display() == texts(ref)
    assert [model.line_runs(y) for y in range(rows)] == [runs_of(ref.buffer[y], cols) for y in range(rows)]
    assert model.cursor == (min(ref.cursor.x, cols - 1), ref.cursor.y)
    assert [runs_of(line, cols) for line in model.screen.history] == [runs_of(line, cols) for line in ref.history]
    screen = model.screen
    assert (screen.cursor.x, screen.cursor.y, screen.cursor.attrs) == (ref.cursor.x, ref.cursor.y, ref.cursor.attrs)
    assert (screen.mode, screen.margins) == (ref.mode, ref.margins)
    for y in range(rows):
        assert [screen.buffer[y][x] for x in range(cols + 1)] == [ref.buffer[y][x] for x in range(cols + 1)], y


# What consoles send: text (ASCII, Latin, box drawing, wide, combining), CR/LF, SGR
# (reset, bold, 16/256/24-bit colours, reverse), cursor moves, erases, margins, modes
# (autowrap, LNM, insert, cursor keys, cursor visibility), charsets, OSC titles,
# ESC 7/8, reverse index, C1 CSI, tabs, backspace, an unterminated CSI.  (Not origin
# mode: pyte itself fails an assertion on it without margins.)
_pieces = st.sampled_from([
    b"hello", b"world ", b"x" * 85, b"[  OK  ] Started ", "ünïcode ● ─┤".encode(), "日本".encode(),
    "e\u0301".encode(), b"\r\n", b"\n", b"\r", b"\t", b"\x08", b"\x07", b"\x0b", b"\x00", b"\x7f",
    b"\x1b[0;32m", b"\x1b[0m", b"\x1b[m", b"\x1b[0;1;39m", b"\x1b[1;31m", b"\x1b[7m", b"\x1b[27m",
    b"\x1b[44m", b"\x1b[38;5;208m", b"\x1b[48;2;10;20;30m", b"\x1b[4;9;5;3m", b"\x1b[;m",
    b"\x1b[H", b"\x1b[5;3H", b"\x1b[99;99H", b"\x1b[2A", b"\x1b[B", b"\x1b[3C", b"\x1b[D", b"\x1b[10G",
    b"\x1b[4d", b"\x1b[2E", b"\x1b[F", b"\x1b[2`", b"\x1b[5a", b"\x1b[3e", b"\x1b[1;2f",
    b"\x1b[K", b"\x1b[0K", b"\x1b[1K", b"\x1b[2K", b"\x1b[J", b"\x1b[1J", b"\x1b[2J", b"\x1b[3J", b"\x1b[2;5J",
    b"\x1b[3;8r", b"\x1b[2;6r", b"\x1b[1;4r", b"\x1b[r", b"\x1b[?7l", b"\x1b[?7h", b"\x1b[4h", b"\x1b[4l",
    b"\x1b[20h", b"\x1b[20l", b"\x1b[?1h", b"\x1b[?25l",
    b"\x1b(0", b"\x0e", b"\x0f", b"\x1b]0;title\x07", b"\x1b7", b"\x1b8", b"\x1bM", b"\x1bD", b"\x1bE",
    b"\x1b[2L", b"\x1b[M", b"\x1b[3P", b"\x1b[2@", b"\x1b[4X", b"\xc2\x9b1m", b"\x1b[", b"12", b";",
    b"\x1b[?5h", b"\x1b[?5l", b"\x1bc",
])


def _stream(pieces: list[bytes]) -> bytes:
    return b"".join(pieces)


@settings(max_examples=400, deadline=None)
@given(st.lists(_pieces, max_size=80), st.lists(st.integers(0, 10_000), max_size=12),
       st.sampled_from([(30, 6), (12, 3), (80, 24)]))
@example([b"\x1b[", b"\x1b["], [], (30, 6))  # a CSI cut short by another ESC, then plain "["
def test_random_streams_match_pyte_cell_for_cell(pieces, cuts, size):
    data = _stream(pieces)
    cols, rows = size
    assert_exactly_pyte(fed_in_pieces(data, cuts, cols, rows), reference(data, cols, rows))


_boot_pieces = st.sampled_from([
    b"[\x1b[0;32m  OK  \x1b[0m] Started \x1b[0;1;39mdbus.service\x1b[0m - D-Bus System Message Bus.\r\n",
    b"[\x1b[0;1;31mFAILED\x1b[0m] Failed to start \x1b[0;1;39mfoo.service\x1b[0m.\r\n",
    b"\r\x1b[K[\x1b[0;31m*     \x1b[0m] A start job is running for /dev/sda (3s / 1min 30s)\r",
    b"\r\x1b[K", b"\x1b[H\x1b[2J", b"\x1b[1A\x1b[2K", b"\x1b[12G", "  ● ünïcode\r\n".encode(),
    b"x" * 79, b"y" * 80, b"\r\n", b"\x1b[0;1;39m", b"\x1b[0m",
    # Runs the fast path writes whole: longer than a line (they wrap, colours and all), starting
    # or ending in an SGR, SGRs with no text between, after a cursor jump (a gap), over a line.
    b"[\x1b[0;32m  OK  \x1b[0m] Started \x1b[0;1;39msystemd-udevd.service\x1b[0m - Rule-based Manager for "
    b"Device Events and Files.\r\n",
    b"\x1b[0;1;31m\x1b[0m\x1b[1m", b"\x1b[7mx\x1b[0m" * 30, b"\x1b[5C\x1b[32mgreen\x1b[0m", b"\x1b[3Dab",
    b"\x1b[?7l", b"\x1b[?7h", b"\x1b[44m" + b"z" * 100 + b"\x1b[0m", "\x1b[1mr\u00e9seau \u25cf\x1b[0m".encode(),
])


@settings(max_examples=300, deadline=None)
@given(st.lists(_boot_pieces, max_size=120), st.lists(st.integers(0, 20_000), max_size=20))
def test_boot_like_streams_match_pyte_cell_for_cell(pieces, cuts):
    data = _stream(pieces)
    assert_exactly_pyte(fed_in_pieces(data, cuts, 80, 24), reference(data, 80, 24))


def test_screen_read_midway_then_fed_on_matches_pyte():
    # Reading the screen hands the rows back to pyte; the fast path takes them again.
    data = (b"[\x1b[0;32m  OK  \x1b[0m] Started x\r\n" * 30 + b"\x1b[44mblue\x1b[K\r\x1b[3Cab")
    model = TerminalModel(30, 6, history=10000)
    for i in range(0, len(data), 5):
        model.feed(data[i : i + 5])
        model.screen  # noqa: B018 - the property syncs pyte's buffer
    assert_exactly_pyte(model, reference(data, 30, 6))


@settings(max_examples=100, deadline=None)
@given(st.lists(_boot_pieces, max_size=40), st.lists(_boot_pieces, max_size=40),
       st.tuples(st.integers(5, 100), st.integers(2, 30)))
def test_resize_between_reads_matches_pyte(before, after, size):
    # The pane resizes the model when its window changes, Rows and all.
    model = TerminalModel(80, 24, history=10000)
    ref = ScrollbackScreen(80, 24, history=1 << 20)
    stream = pyte.ByteStream(ref)
    for part in (_stream(before), None, _stream(after)):
        if part is None:
            model.resize(*size)
            ref.resize(lines=size[1], columns=size[0])
        else:
            model.feed(part)
            stream.feed(part)
    assert_exactly_pyte(model, ref)


def test_scrollback_takes_what_scrolls_off_the_top_only():
    # A region from the top (apt's progress bar below it) scrolls its top line into the
    # history; a line feed below the region scrolls nothing, and keeps nothing.
    model = model_of(b"a\r\nb\r\nc\x1b[1;3r\x1b[6;1Hbar\n", cols=20, rows=6)
    assert model.history_length == 0
    model.feed(b"\x1b[3;1H\n\n")
    assert [line.rstrip() for line in model.display()[:3]] == ["c", "", ""]
    history = [model.history_runs_at(i) for i in range(model.history_length)]
    assert ["".join(r.text for r in runs).rstrip() for runs in history] == ["a", "b"]


def _boot_like(size: int) -> bytes:
    """A verbose, coloured systemd boot as a serial console shows it (the console bench's stream)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    try:
        from bench_console import boot_stream
    finally:
        sys.path.pop(0)
    return boot_stream(size)


def test_coloured_boot_stream_matches_pyte_at_any_width():
    # The console bench's coloured boot (lines wrap at 80 columns and not at 132; ephemeral lines
    # redrawn over their erased tail; the screen cleared), fed in PTY-sized reads.
    data = _boot_like(96 << 10)
    for cols, rows in ((80, 24), (132, 40), (41, 9)):
        model = fed_in_pieces(data, list(range(0, len(data), 4096)), cols, rows)
        assert_exactly_pyte(model, reference(data, cols, rows))


# Whole lines at the bottom of the screen go to the fast path's line writer (_scroll_lines):
# lines of every width around the screen's (wrapping into one row, two, or exactly filling
# them), SGRs anywhere in them (at a wrap point, at the end, none), empty lines, and what turns
# the writer off or cuts a block (no autowrap, scroll margins, LNM, a bare CR or LF, an erase),
# from the start or midway.
_line_parts = st.one_of(
    st.integers(0, 25).map(lambda n: b"abcdefghijklmnopqrstuvwxyz"[:n]),
    st.sampled_from([b"\x1b[0;32m", b"\x1b[0m", b"\x1b[m", b"\x1b[0;1;39m", b"\x1b[7m", b"\x1b[44m",
                     "é─●".encode(), b"\r", b"\r\x1b[K"]),  # a line redrawn over itself
)
_whole_line = st.lists(_line_parts, max_size=6).map(lambda parts: b"".join(parts) + b"\r\n")
_block_lines = st.one_of(
    _whole_line,
    _whole_line,
    st.lists(_line_parts, max_size=3).map(lambda parts: b"".join(parts) + b"\n"),  # LF mid-line
    st.sampled_from([b"\r\n", b"\r", b"\r\x1b[K", b"\x1b[?7l", b"\x1b[?7h", b"\x1b[1;2r", b"\x1b[r",
                     b"\x1b[H", b"\x1b[20h", b"\x1b[20l"]),
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([b"", b"\x1b[?7l", b"\x1b[20h", b"\x1b[1;2r"]), st.lists(_block_lines, max_size=60),
       st.lists(st.integers(0, 3_000), max_size=8), st.sampled_from([(10, 3), (7, 2), (13, 1), (80, 24)]),
       st.sampled_from([3, 10000]))
@example(b"", [b"abcdefghij\r\n"] * 4 + [b"abcdefghijk\x1b[7m\r\n", b"\r\n", b"abcdefghijklmnopqrst\r\n"], [],
         (10, 3), 3)
@example(b"\x1b[?7l", [b"a\r\n"] * 4 + [b"abcdefghijklmnop\r\n", b"xy\r\n"], [], (10, 3), 3)
@example(b"", [b"a\r\n"] * 4 + [b"abc\n", b"xy\r\n"], [], (10, 3), 3)
@example(b"", [b"abcdef\rabcde\r\n", b"\x1b[7mabcdefgh\x1b[0m\rabcdefg\r\n"], [], (10, 3), 3)
def test_whole_lines_at_the_bottom_match_pyte_cell_for_cell(mode, lines, cuts, size, history):
    data = mode + b"".join(lines)
    cols, rows = size
    model = TerminalModel(cols, rows, history=history)
    bounds = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for a, b in zip(bounds, bounds[1:], strict=False):
        model.feed(data[a:b])
    ref = ScrollbackScreen(cols, rows, history=history)
    pyte.ByteStream(ref).feed(data)
    assert_exactly_pyte(model, ref)


# A full-screen program's state: a scroll region, reverse video, insert mode, no autowrap, the
# cursor hidden, DEC line drawing in G0 and G1 with G1 shifted in; undone by bytes a gap skips.
PROGRAM_STATE = b"\x1b[3;6r\x1b[7m\x1b[4h\x1b[?7l\x1b[?25l\x1b(0\x1b)0\x0e" + b"drawn\r\n" * 3


def test_what_follows_a_gap_is_drawn_as_in_a_fresh_terminal_where_the_last_bytes_left_it():
    """The bytes a skip leaves out may hold the end of a program's state (GAP_RESET): after
    the gap, text is plain ASCII, scrolls the whole screen and wraps, the cursor shows and
    stays where it was; nothing already drawn changes.  Exactly as pyte draws the bytes
    before, the reset, and the bytes after."""
    from nsdash.machines.consolelog import GAP_RESET

    after = b"tail-marker-qx " * 2 + b"\r\n" + b"line\r\n" * 3
    model = model_of(PROGRAM_STATE, 20, 8)
    drawn, (x, y) = model.display(), model.cursor
    model.skip(5000)
    assert model.display() == drawn and model.cursor == (x, y)
    model.feed(after)
    assert_exactly_pyte(model, reference(PROGRAM_STATE + GAP_RESET + after, 20, 8))
    screen = model.screen
    assert screen.margins is None and model.cursor_visible
    assert any(line.startswith("tail-marker-qx tail-") for line in model.display()), model.display()  # wrapped
    assert not any(screen.buffer[y][x].reverse for y in range(8) for x in range(20) if screen.buffer[y][x].data == "q")
