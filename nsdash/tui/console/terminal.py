"""The pure terminal model behind the console pane: bytes in, screen lines out.

It keeps pyte's screen as the reference and adds what a console pane needs:
- an incremental UTF-8 decoder, so a character split across two reads is kept
  whole (decoding each read on its own would mangle it);
- a fast path for what a flooding console (`cat`, a verbose boot) sends:
  runs of single-width text, CR, LF, SGR colours, cursor moves and erase in
  line.  pyte parses one character at a time (well under 1 MB/s here); the
  fast path takes one regex token at a time (and the whole lines that follow a
  scroll at the bottom of the screen in one match), writes lines as Row
  segments (rows.py) and gets each SGR's result from pyte once per (attrs, params).
  Anything else (other escapes, wide or combining characters, scroll
  margins, insert mode) goes to pyte's own stream after the rows are turned
  back into pyte rows, so the screen is always what pyte would show;
- a bounded scrollback of lines scrolled off the top;
- dirty-line tracking the widget polls at most ~30 times a second;
- the keys -> bytes table for what the user types.

No I/O and no Textual here: the widget feeds bytes and reads lines.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections import deque
from typing import Any

import pyte
from pyte import charsets as cs
from pyte import modes as mo
from pyte.screens import Char
from wcwidth import wcwidth

from nsdash.machines.consolelog import GAP_RESET
from nsdash.tui.console.rows import (
    DEFAULT,
    GlyphCache,
    Row,
    Run,
    erase,
    materialize,
    row_text,
    runs_of,
    split_at,
)

__all__ = ["Row", "Run", "TerminalModel", "key_to_bytes", "runs_of"]

_GAP_RESET = GAP_RESET.decode("ascii")

DECCKM = 1 << 5  # application cursor keys (private mode 1, shifted as pyte does)


def _narrow_class() -> str:
    """A regex class of the characters pyte draws into exactly one cell."""
    ranges: list[list[int]] = [[0x20, 0x7E]]
    for c in range(0xA0, 0x3000):
        if wcwidth(chr(c)) == 1:
            if ranges[-1][1] == c - 1:
                ranges[-1][1] = c
            else:
                ranges.append([c, c])
    return "".join(re.escape(chr(a)) + ("-" + re.escape(chr(b)) if b > a else "") for a, b in ranges)


_NARROW = _narrow_class()
# One token of the fast path.  Groups: 1 a run of text and SGRs, 2 a CR LF right
# after it (a whole line in one match), 3 CR LF, 4/5 another CSI's parameters
# and final byte, 6 CR, 7 LF.  No possessive repeats (`++`): the re of Debian 12's
# Python 3.11.2 gets those wrong (CPython gh-106052, fixed in 3.11.5).  Greedy
# ones match the same here, since what follows the run (an optional CR LF) cannot
# fail; the run is written unrolled, a character or SGR and then text (SGR text)*,
# because a repeat of `(?:text+|SGR)` costs the engine a saved state per piece
# (a quarter slower on boot output than the possessive form; unrolled, even).
_SGR = "\x1b\\[[0-9;]*m"
_RUN = f"(?:[{_NARROW}]|{_SGR})[{_NARROW}]*(?:{_SGR}[{_NARROW}]*)*"
_TOKEN = re.compile(
    f"({_RUN})(\r\n)?"
    r"|(\r\n)"
    r"|\x1b\[([0-9;]*)([@-~])"
    r"|(\r)"
    r"|(\n)"
)
# Whole lines (runs, or nothing, each ending in CR LF): what a flood at the bottom of the
# screen sends between two other tokens, written in one go (_scroll_lines).  Here what
# follows a run can fail; the engine then backtracks through the last line only.
_LINES = re.compile(f"(?:(?:{_RUN})?\r\n)+")
# Splits a run into text, SGR parameters, text, ...
_SGR_SPLIT = re.compile(r"\x1b\[([0-9;]*)m")
# A CSI cut off by the end of a read: kept for the next read rather than handed to pyte.
_PARTIAL = re.compile(r"\x1b(?:\[[0-9;]{0,32})?\Z")
# What pyte gets in one piece when the fast path stops: a run of other characters.
_OTHER = re.compile(f"[^{_NARROW}\x1b\r\n]+")
# CSI final bytes whose pyte handlers move only the cursor, with the handlers' names.
_CURSOR_ONLY = {final: name for final, name in pyte.Stream.csi.items() if name.startswith("cursor_")}


# Characters one cell holds: its own and the combining marks drawn onto it (xterm keeps 2
# marks, no script stacks 16).  pyte NFC-normalises a cell's whole text at each mark, so a
# guest's console of N marks on one cell cost O(N^2): 32 KB of U+0301 took 4 s of CPU in the
# reader's thread (which shares the GIL with the UI), and the cell grew unbounded.
CELL_MAX = 16


def _is_mark(c: str) -> bool:
    """What pyte combines with the previous cell (zero width and a combining class)."""
    return wcwidth(c) == 0 and unicodedata.combining(c) != 0


class ScrollbackScreen(pyte.Screen):
    """A pyte Screen that keeps the lines scrolled off the top of the screen.

    As xterm does, a scroll region that starts at the top line counts (a
    progress bar kept below it); a line feed that scrolls nothing keeps nothing.
    Combining marks past CELL_MAX characters in a cell are dropped.
    """

    def __init__(self, columns: int, lines: int, history: int) -> None:
        self.history: deque[Any] = deque(maxlen=history)
        super().__init__(columns, lines)

    def index(self) -> None:
        top, bottom = self.margins or (0, self.lines - 1)
        if self.cursor.y == bottom and top == 0:
            self.history.append(self.buffer[0])
        super().index()

    def draw(self, data: str) -> None:
        if not data.isascii() and any(_is_mark(c) for c in data):
            data = self._capped(data)
        super().draw(data)

    def _capped(self, data: str) -> str:
        """DATA without the marks that would take a cell past CELL_MAX characters: the cell a
        leading mark joins is the one pyte would join it to (before the cursor, or the previous
        line's last), a later mark the cell of the character drawn before it."""
        x, y = self.cursor.x, self.cursor.y
        if x:
            held = len(self.buffer[y][min(x, self.columns) - 1].data)
        else:
            held = len(self.buffer[y - 1][self.columns - 1].data) if y else 0
        kept = []
        for c in data:
            if _is_mark(c):
                if held >= CELL_MAX:
                    continue
                held += 1
            elif wcwidth(c) > 0:
                held = 1
            kept.append(c)
        return "".join(kept)


class TerminalModel:
    """A terminal of COLUMNS x LINES fed with bytes; see the module docstring."""

    def __init__(self, columns: int = 80, lines: int = 24, history: int = 5000) -> None:
        self._screen = ScrollbackScreen(columns, lines, history)
        self.stream = pyte.Stream(self._screen)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._glyphs = GlyphCache()
        self._sgr: dict[tuple[int, str], tuple[Char, Char]] = {}
        self._interned: dict[Char, Char] = {DEFAULT: DEFAULT}
        # (id(attrs), a run's SGR parameters joined by "m") -> (attrs, the attrs of each of its texts)
        self._chains: dict[tuple[int, str], tuple[Char, tuple[Char, ...]]] = {}
        self._partial = ""  # the start of a CSI the last read ended in
        # While _mine, _rows (Rows and pyte rows) is the screen and pyte's buffer is stale.
        self._rows: list[Any] = []
        self._mine = False
        self._scrolled = False  # since _own: pyte would hold every row but the bottom one
        self.bytes_fed = 0  # bytes of the console's output consumed: fed, or skipped
        self.bytes_skipped = 0

    # ------------------------------------------------------------ geometry

    @property
    def columns(self) -> int:
        return self._screen.columns

    @property
    def lines(self) -> int:
        return self._screen.lines

    @property
    def screen(self) -> pyte.Screen:
        """pyte's screen, brought up to date (every row a pyte row)."""
        self._release()
        return self._screen

    def resize(self, columns: int, lines: int) -> None:
        if (columns, lines) != (self.columns, self.lines):
            self._release()
            self._screen.resize(lines=max(1, lines), columns=max(1, columns))
            self._screen.dirty.update(range(self._screen.lines))

    # ------------------------------------------------------------ input

    def feed(self, data: bytes) -> None:
        """Feed raw bytes from the console."""
        self.bytes_fed += len(data)
        text = self._decoder.decode(data)
        if text:
            self.feed_text(text)

    def skip(self, nbytes: int) -> None:
        """NBYTES of the console's output are left out (a flood the pane cannot keep up
        with); what comes next starts in the terminal's ground state, so a character or
        sequence cut by the skip must not swallow it, nor modes the skipped bytes would have
        undone draw it (GAP_RESET, as `nsdash login` writes it to a terminal)."""
        self.bytes_fed += nbytes
        self.bytes_skipped += nbytes
        self._decoder.reset()
        self._partial = ""
        if not self.stream._taking_plain_text:
            self.stream._initialize_parser()
        # Straight to pyte, the rows kept: the reset moves no cell (its DECSTBM is between
        # DECSC and DECRC), so the fast path's rows stay the screen.
        self._pyte_feed(_GAP_RESET)

    def feed_text(self, text: str) -> None:
        stream = self.stream
        if self._partial:
            text = self._partial + text
            self._partial = ""
        n = len(text)
        pos = 0
        while pos < n:
            if stream._taking_plain_text and self._fast_ok():
                pos = self._fast(text, pos)
                if pos >= n:
                    break
                if _PARTIAL.match(text, pos):
                    # Feeding pyte half a sequence would make it take the rows back for nothing.
                    self._partial = text[pos:]
                    break
            pos = self._via_pyte(text, pos)

    # ------------------------------------------------------------ output

    def take_dirty(self) -> set[int]:
        """The lines changed since the last call (and forget them)."""
        s = self._screen
        dirty = {y for y in s.dirty if 0 <= y < s.lines}
        s.dirty.clear()
        return dirty

    def _row(self, y: int) -> Any:
        return self._rows[y] if self._mine else self._screen.buffer[y]

    def line_text(self, y: int) -> str:
        return row_text(self._row(y), self.columns)

    def display(self) -> list[str]:
        return [self.line_text(y) for y in range(self.lines)]

    def line_runs(self, y: int) -> list[Run]:
        return runs_of(self._row(y), self.columns)

    @property
    def history_length(self) -> int:
        return len(self._screen.history)

    @property
    def history_limit(self) -> int:
        """The most lines the history keeps (older ones go)."""
        return self._screen.history.maxlen or 0

    def history_runs_at(self, index: int) -> list[Run]:
        return runs_of(self._screen.history[index], self.columns)

    @property
    def cursor(self) -> tuple[int, int]:
        return (min(self._screen.cursor.x, self.columns - 1), self._screen.cursor.y)

    @property
    def cursor_visible(self) -> bool:
        return mo.DECTCEM in self._screen.mode

    @property
    def application_cursor_keys(self) -> bool:
        return DECCKM in self._screen.mode

    def key_bytes(self, key: str, character: str | None = None) -> bytes | None:
        return key_to_bytes(key, character, application_cursor=self.application_cursor_keys)

    # ------------------------------------------------------------ rows

    def _own(self) -> list[Any]:
        """Take the screen's rows for the fast path."""
        if not self._mine:
            buffer = self._screen.buffer
            self._rows = [buffer[y] if y in buffer else Row() for y in range(self._screen.lines)]
            self._mine = True
            self._scrolled = False
        return self._rows

    def _release(self) -> None:
        """Hand the rows back to pyte, every Row made a pyte row."""
        if self._mine:
            s = self._screen
            # pyte's index() leaves every row but the bottom one in its buffer.
            held = s.lines - 1 if self._scrolled else 0
            for y, row in enumerate(self._rows):
                if type(row) is not Row:
                    s.buffer[y] = row
                elif row.end or row.held or y < held:
                    s.buffer[y] = materialize(row, s.default_char, self._glyphs)
                else:
                    s.buffer.pop(y, None)
            self._rows = []
            self._mine = False

    # ------------------------------------------------------------ pyte's path

    def _fast_ok(self) -> bool:
        s = self._screen
        # Reverse screen (DECSCNM) changes the default cell, which Rows take as plain.
        # pyte's resize leaves the cursor where it was, possibly off the smaller
        # screen, until something moves it: pyte's own rules then.
        return (s.charset == 0 and s.g0_charset is cs.LAT1_MAP
                and mo.IRM not in s.mode and mo.DECSCNM not in s.mode
                and s.cursor.y < s.lines and s.cursor.x <= s.columns)

    def _via_pyte(self, text: str, pos: int) -> int:
        """Feed pyte one token (or run of other characters) and then the rest of any sequence it is in."""
        self._release()
        stream = self.stream
        n = len(text)
        if stream._taking_plain_text:
            m = _TOKEN.match(text, pos) or _OTHER.match(text, pos)
            end = m.end() if m is not None else pos + 1
            self._pyte_feed(text[pos:end])
            pos = end
        while pos < n and not stream._taking_plain_text:
            self._pyte_feed(text[pos])
            pos += 1
        return pos

    def _pyte_feed(self, text: str) -> None:
        # pyte's handlers choke on some parameter lists (ESC[1;2;3K, ESC[5K) and
        # assert margins exist for ESC[d in origin mode; it resets its parser, and a
        # terminal ignores such a sequence.  The console must not stop over one.
        try:
            self.stream.feed(text)
        except (TypeError, NameError, AssertionError):
            cur, s = self._screen.cursor, self._screen
            cur.x, cur.y = min(max(cur.x, 0), s.columns), min(max(cur.y, 0), s.lines - 1)

    # ------------------------------------------------------------ fast path

    def _sgr_after(self, attrs: Char, params: str) -> Char:
        """The cursor's attributes after SGR PARAMS, as pyte computes them (cached by identity)."""
        cursor = self._screen.cursor
        cursor.attrs = attrs
        self._screen.select_graphic_rendition(*[min(int(p or 0), 9999) for p in params.split(";")])
        if len(self._sgr) > 1024:
            self._sgr.clear()
            self._chains.clear()
            self._interned = {DEFAULT: DEFAULT}
        after = self._interned.setdefault(cursor.attrs, cursor.attrs)
        self._sgr[(id(attrs), params)] = (attrs, after)
        return after

    def _chain(self, attrs: Char, params: list[str]) -> tuple[Char, tuple[Char, ...]]:
        """The attrs of each text of a run that starts in ATTRS and has SGRs PARAMS between
        its texts: ATTRS, then the attrs after each SGR (cached by identity, with ATTRS)."""
        seq = [attrs]
        now = attrs
        for p in params:
            if p == "0" or not p:
                now = DEFAULT
            else:
                hit = self._sgr.get((id(now), p))
                now = hit[1] if hit is not None and hit[0] is now else self._sgr_after(now, p)
            seq.append(now)
        if len(self._chains) > 1024:
            self._chains.clear()
        entry = self._chains[(id(attrs), "m".join(params))] = (attrs, tuple(seq))
        return entry

    def _segments(self, run: str, attrs: Char) -> tuple[list[Any], int, Char]:
        """RUN (text and SGRs) as flat segments (text, attrs, text, attrs ...) from ATTRS:
        its texts, each in the attrs the SGRs before it give (looked up once for the run's
        SGRs); with the cells it covers and the attrs after it."""
        if "\x1b" not in run:
            return [run, attrs], len(run), attrs
        segs = _SGR_SPLIT.split(run)  # text, SGR parameters, text, ...
        params = segs[1::2]
        sig = "m".join(params)  # each SGR is ESC [ params m: the run's cells are the rest
        hit = self._chains.get((id(attrs), sig))
        seq = hit[1] if hit is not None and hit[0] is attrs else self._chain(attrs, params)[1]
        segs.append(None)
        segs[1::2] = seq
        return segs, len(run) - len(sig) - 2 * len(params) - 1, seq[-1]

    def _scroll_lines(self, block: str, attrs: Char, rows: list[Any]) -> Char:
        """Write BLOCK (whole lines, see _LINES) from the start of the bottom row, a new one;
        return the attrs after it.

        As pyte draws it with autowrap and no margins: a line of W cells fills
        max(1, ceil(W / columns)) rows (the last one's CR LF, not a wrap, moves on)
        and each row scrolls the screen by one, the top rows going to the history;
        the cursor ends at the start of a new bottom row.  One Row per row, made
        whole, instead of a token, a write and a scroll each.
        """
        cols = self._screen.columns
        new: list[Any] = []
        add = new.append
        segments = self._segments
        for line in block.split("\r\n")[:-1]:
            segs, width, attrs = segments(line, attrs)
            while width > cols:
                head, segs = split_at(segs, cols)
                add(Row(head, cols))
                width -= cols
            add(Row(segs, width))
        add(Row())
        rows[-1:] = new
        off = len(new) - 1
        self._screen.history.extend(rows[:off])
        del rows[:off]
        return attrs

    def _fast(self, text: str, pos: int) -> int:
        """Run the fast path from POS; return where it stopped (a token only pyte handles, or the end).

        Keeps the cursor in locals and writes it back at the end.  The rules
        are pyte's: a character drawn in the last column leaves the cursor
        past it (x == columns) and the next one wraps first; without
        autowrap further characters overwrite the last column; LF at the
        bottom scrolls the whole screen (the fast path steps aside when
        scroll margins are set); erase in line writes the cursor's attrs.
        """
        s = self._screen
        rows = self._own()
        cur = s.cursor
        x, y, attrs = cur.x, cur.y, cur.attrs
        # One object per attribute set, so that caches keyed by identity hit.
        attrs = self._interned.get(attrs) or self._interned.setdefault(attrs, attrs)
        cols, last = s.columns, s.lines - 1
        autowrap = mo.DECAWM in s.mode
        lnm = mo.LNM in s.mode
        full = s.margins is None
        bulk = autowrap  # whole lines at the bottom go to _scroll_lines (a line feed in margins is pyte's)
        history = s.history.append
        dirty = s.dirty.add
        glyphs = self._glyphs
        segments = self._segments
        match = _TOKEN.match
        lines = _LINES.match
        n = len(text)
        scrolled = False

        def place(row: Any, x: int, segs: list[Any], width: int) -> None:
            """Write flat segments SEGS (WIDTH cells) at X of a Row or a pyte row."""
            if type(row) is Row:
                row.write(x, segs, width)
                return
            for t, a in zip(segs[0::2], segs[1::2], strict=True):
                row.update(zip(range(x, x + len(t)), map(glyphs(a).__getitem__, t), strict=True))
                x += len(t)

        while pos < n:
            m = match(text, pos)
            if m is None:
                break
            k = m.lastindex or 0
            if k <= 2:  # text and SGRs, maybe then CR LF
                before = attrs
                segs, width, attrs = segments(m.group(1), attrs)
                if x + width <= cols:
                    place(rows[y], x, segs, width)
                    x += width
                elif not full:
                    attrs = before
                    break  # it may wrap inside scroll margins: pyte's (from the run's start)
                elif autowrap:
                    # As pyte draws: the cells that fit, then (at the next cell) a new line.
                    done = 0
                    rest = segs  # what is left to write
                    while done < width:
                        if x >= cols:
                            dirty(y)
                            x = 0
                            if y == last:
                                history(rows.pop(0))
                                rows.append(Row())
                                scrolled = True
                            else:
                                y += 1
                        take = min(width - done, cols - x)
                        if take == width - done:
                            piece = rest
                        else:
                            piece, rest = split_at(rest, take)
                        place(rows[y], x, piece, take)
                        x += take
                        done += take
                else:  # no autowrap: what does not fit overwrites the last column, one cell at a time
                    for t, a in zip(segs[0::2], segs[1::2], strict=True):
                        if not t:
                            continue
                        if x < cols:
                            fits = t[: cols - x]
                            place(rows[y], x, [fits, a], len(fits))
                            x += len(fits)
                            t = t[len(fits) :]
                        if t:
                            place(rows[y], cols - 1, [t[-1], a], 1)
                if not scrolled:  # else every line is dirty at the end
                    dirty(y)
                if k == 1:
                    pos = m.end()
                    continue
                if not full:
                    pos = m.start(2)
                    break
            elif k == 6:  # CR
                x = 0
                pos = m.end()
                continue
            elif k != 3 and k != 7:  # another CSI
                final = m.group(5)
                params = m.group(4)
                args = [min(int(p or 0), 9999) for p in params.split(";")] if params else [0]
                if final in _CURSOR_ONLY:
                    cur.x, cur.y = x, y
                    try:
                        getattr(s, _CURSOR_ONLY[final])(*args)
                        x, y = cur.x, cur.y
                    except (TypeError, AssertionError):  # as in _pyte_feed: the cursor stays
                        cur.x, cur.y = x, y
                elif final == "K" and len(args) <= 2 and args[0] in (0, 1, 2):
                    how = args[0]
                    erase(rows[y], x if how == 0 else 0, x + 1 if how == 1 else cols, attrs)
                    dirty(y)
                elif final == "J" and args[0] in (0, 1, 2, 3):
                    # pyte blanks the cells the rows hold, then erases in line for 0 and 1.
                    how = args[0]
                    for yy in range(y + 1, last + 1) if how == 0 else range(y) if how == 1 else range(last + 1):
                        row = rows[yy]
                        if type(row) is Row:
                            row.blank(attrs)
                        else:
                            row.update(dict.fromkeys(row, attrs))
                        dirty(yy)
                    if how < 2:
                        erase(rows[y], x if how == 0 else 0, x + 1 if how == 1 else cols, attrs)
                        dirty(y)
                else:
                    break
                pos = m.end()
                continue
            elif not full:
                break
            # A line feed: CR LF (after a run, or alone) or LF.
            pos = m.end()
            if k != 7 or lnm:
                x = 0
            if y < last:
                y += 1
                continue
            history(rows.pop(0))
            rows.append(Row())
            scrolled = True
            if x == 0 and bulk:
                block = lines(text, pos)
                if block is not None:
                    attrs = self._scroll_lines(block.group(), attrs, rows)
                    pos = block.end()
        cur.x, cur.y, cur.attrs = x, y, attrs
        if scrolled:
            self._scrolled = True
            s.dirty.update(range(s.lines))
        return pos


# ---------------------------------------------------------------- keys -> bytes

_CSI = "\x1b["
KEY_BYTES: dict[str, str] = {
    "enter": "\r",
    "tab": "\t",
    "shift+tab": _CSI + "Z",
    "backspace": "\x7f",
    "ctrl+h": "\x08",
    "escape": "\x1b",
    "space": " ",
    "home": _CSI + "H",
    "end": _CSI + "F",
    "insert": _CSI + "2~",
    "delete": _CSI + "3~",
    "pageup": _CSI + "5~",
    "pagedown": _CSI + "6~",
    "f1": "\x1bOP",
    "f2": "\x1bOQ",
    "f3": "\x1bOR",
    "f4": "\x1bOS",
    "f5": _CSI + "15~",
    "f6": _CSI + "17~",
    "f7": _CSI + "18~",
    "f8": _CSI + "19~",
    "f9": _CSI + "20~",
    "f10": _CSI + "21~",
    "f11": _CSI + "23~",
    "f12": _CSI + "24~",
}
_ARROWS = {"up": "A", "down": "B", "right": "C", "left": "D"}


def key_to_bytes(key: str, character: str | None = None, application_cursor: bool = False) -> bytes | None:
    """The bytes a VT220-ish terminal sends for a key (Textual key names), or None."""
    if key in _ARROWS:
        return (("\x1bO" if application_cursor else _CSI) + _ARROWS[key]).encode()
    if key in KEY_BYTES:
        return KEY_BYTES[key].encode()
    if key.startswith("ctrl+") and len(key) == 6 and key[5].isalpha():
        return bytes([ord(key[5].lower()) - ord("a") + 1])
    if key.startswith("alt+") and character is None and len(key) == 5:
        return b"\x1b" + key[4].encode()
    if character is not None and character.isprintable():
        return character.encode()
    return None
