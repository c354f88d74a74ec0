"""The pure terminal model behind the console pane: bytes in, screen lines out.

It wraps a pyte screen and adds what a console pane needs and pyte lacks:
- an incremental UTF-8 decoder, so a character split across two reads is kept
  whole (decoding each read on its own would mangle it);
- a fast path for plain printable ASCII runs, CR and LF, which is most of what
  a flooding console (`cat`, a verbose boot) sends.  pyte parses one
  character at a time (about 1 MB/s); the fast path writes whole runs into
  the line with one dict update and reuses per-attribute glyphs;
- a bounded scrollback of lines scrolled off the top (cheap: the line objects
  pyte drops are kept as they are);
- dirty-line tracking the widget polls at most ~30 times a second;
- the keys -> bytes table for what the user types.

No I/O and no Textual here: the widget feeds bytes and reads lines.
"""

from __future__ import annotations

import codecs
import re
from collections import deque
from dataclasses import dataclass
from typing import Any, NamedTuple

import pyte
from pyte import charsets as cs
from pyte import modes as mo
from pyte.screens import Char, StaticDefaultDict

PRINTABLE_ASCII = "".join(chr(c) for c in range(0x20, 0x7F))
# Plain ASCII with CR and LF only: the bulk of a flooding console.
_PLAIN_BLOCK = re.compile(r"[\x20-\x7e\r\n]+")
_PLAIN_PART = re.compile(r"[\x20-\x7e]+|\r|\n")
# A complete, simple CSI sequence (SGR colours, cursor moves, erases): dispatched
# straight to the screen with pyte's own parameter rules.
_CSI_SEQ = re.compile(r"\x1b\[(\?)?([0-9;]*)([@-~])")
# Non-ASCII text without controls: drawn by pyte's own (width-aware) draw().
_OTHER_TEXT = re.compile(r"[^\x00-\x1f\x7f-\x9f\x20-\x7e]+")
DECCKM = 1 << 5  # application cursor keys (private mode 1, shifted as pyte does)


@dataclass(frozen=True)
class Run:
    """A stretch of one line with the same attributes, ready to style."""

    text: str
    fg: str = "default"
    bg: str = "default"
    bold: bool = False
    italics: bool = False
    underscore: bool = False
    reverse: bool = False


class PlainRow(NamedTuple):
    """A scrollback row written by plain text in one attribute set."""

    text: str
    attrs: Char


class _ScrollbackScreen(pyte.Screen):
    """A pyte Screen that keeps the lines scrolled off the top (full-screen scrolls only)."""

    def __init__(self, columns: int, lines: int, history: int) -> None:
        self.history: deque[Any] = deque(maxlen=history)
        super().__init__(columns, lines)

    def index(self) -> None:
        if self.cursor.y == self.lines - 1 and (self.margins is None or self.margins.top == 0):
            self.history.append(self.buffer[0])
        super().index()


class TerminalModel:
    """A terminal of COLUMNS x LINES fed with bytes; see the module docstring."""

    def __init__(self, columns: int = 80, lines: int = 24, history: int = 5000) -> None:
        self.screen = _ScrollbackScreen(columns, lines, history)
        self.stream = pyte.Stream(self.screen)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._glyphs: dict[Char, dict[str, Char]] = {}
        self.bytes_fed = 0

    # ------------------------------------------------------------ geometry

    @property
    def columns(self) -> int:
        return self.screen.columns

    @property
    def lines(self) -> int:
        return self.screen.lines

    def resize(self, columns: int, lines: int) -> None:
        if (columns, lines) != (self.columns, self.lines):
            self.screen.resize(lines=max(1, lines), columns=max(1, columns))
            self.screen.dirty.update(range(self.screen.lines))

    # ------------------------------------------------------------ input

    def feed(self, data: bytes) -> None:
        """Feed raw bytes from the console."""
        self.bytes_fed += len(data)
        text = self._decoder.decode(data)
        if text:
            self.feed_text(text)

    def feed_text(self, text: str) -> None:
        screen = self.screen
        stream = self.stream
        n = len(text)
        off = 0
        while off < n:
            # pyte's parser keeps its own state inside an escape sequence; only
            # when it is back to plain text may we bypass it.
            if not stream._taking_plain_text:
                stream.feed(text[off])
                off += 1
                continue
            if self._fast_ok():
                m = _PLAIN_BLOCK.match(text, off)
                if m is not None:
                    block = m.group()
                    if "\n" not in block and "\r" not in block:
                        self._draw_ascii(block)
                    elif screen.margins is None and mo.DECAWM in screen.mode:
                        self._feed_plain_block(block)
                    else:
                        self._feed_plain_slowly(block)
                    off = m.end()
                    continue
            ch = text[off]
            if ch == "\x1b":
                m = _CSI_SEQ.match(text, off)
                if m is not None:
                    self._dispatch_csi(*m.groups())
                    off = m.end()
                    continue
            m = _OTHER_TEXT.match(text, off)
            if m is not None:
                screen.draw(m.group())
                off = m.end()
            else:
                stream.feed(ch)
                off += 1

    # ------------------------------------------------------------ output

    def take_dirty(self) -> set[int]:
        """The lines changed since the last call (and forget them)."""
        dirty = {y for y in self.screen.dirty if 0 <= y < self.screen.lines}
        self.screen.dirty.clear()
        return dirty

    def line_text(self, y: int) -> str:
        line = self.screen.buffer[y]
        return "".join(line[x].data for x in range(self.columns))

    def display(self) -> list[str]:
        return [self.line_text(y) for y in range(self.lines)]

    def line_runs(self, y: int) -> list[Run]:
        return runs_of(self.screen.buffer[y], self.columns)

    def history_runs_at(self, index: int) -> list[Run]:
        return runs_of(self.screen.history[index], self.columns)

    def history_runs(self) -> list[list[Run]]:
        return [runs_of(line, self.columns) for line in self.screen.history]

    @property
    def cursor(self) -> tuple[int, int]:
        return (min(self.screen.cursor.x, self.columns - 1), self.screen.cursor.y)

    @property
    def cursor_visible(self) -> bool:
        return mo.DECTCEM in self.screen.mode

    @property
    def application_cursor_keys(self) -> bool:
        return DECCKM in self.screen.mode

    def key_bytes(self, key: str, character: str | None = None) -> bytes | None:
        return key_to_bytes(key, character, application_cursor=self.application_cursor_keys)

    # ------------------------------------------------------------ fast path

    def _fast_ok(self) -> bool:
        s = self.screen
        return s.charset == 0 and s.g0_charset is cs.LAT1_MAP and mo.IRM not in s.mode

    def _glyph_table(self, attrs: Char) -> dict[str, Char]:
        table = self._glyphs.get(attrs)
        if table is None:
            if len(self._glyphs) > 256:
                self._glyphs.clear()
            table = {c: attrs._replace(data=c) for c in PRINTABLE_ASCII}
            self._glyphs[attrs] = table
        return table

    def _dispatch_csi(self, private: str | None, params: str, final: str) -> None:
        # pyte: every ';'-separated field is an int (empty is 0), capped at 9999.
        args = [min(int(p or 0), 9999) for p in params.split(";")]
        name = pyte.Stream.csi.get(final)
        handler = getattr(self.screen, name) if name else self.screen.debug
        if private:
            handler(*args, private=True)
        else:
            handler(*args)

    def _feed_plain_slowly(self, block: str) -> None:
        """Plain text with CR/LF when scroll margins or no-autowrap rule out the block path."""
        screen = self.screen
        for m in _PLAIN_PART.finditer(block):
            part = m.group()
            if part == "\n":
                screen.linefeed()
            elif part == "\r":
                screen.cursor.x = 0
            else:
                self._draw_ascii(part)

    def _feed_plain_block(self, block: str) -> None:
        """Draw plain text with CR/LF, scrolling once at the end of the block.

        pyte shifts every row of its buffer on each LF at the bottom and builds
        each cell separately.  Here rows made during the block are plain
        strings (one attribute set: the cursor's, which plain text cannot
        change); a LF at the bottom appends one.  At the end the rows still on
        screen become pyte rows and the rest go to the scrollback as they are.
        Needs autowrap on and no scroll margins.  (Cells skipped over on a
        fresh row, after a bare LF, take the cursor's attributes rather than
        the default ones: invisible unless a background colour is set.)
        """
        s = self.screen
        lines, cols = s.lines, s.columns
        buffer = s.buffer
        fresh: list[str] = []  # rows made during this block
        first_y = cy = s.cursor.y
        x = s.cursor.x
        attrs = s.cursor.attrs
        glyph = self._glyph_table(attrs).__getitem__
        lnm = mo.LNM in s.mode
        for k, piece in enumerate(block.split("\n")):
            if k:
                cy += 1
                if cy >= lines + len(fresh):
                    fresh.append("")
                if lnm:
                    x = 0
            for j, seg in enumerate(piece.split("\r") if "\r" in piece else (piece,)):
                if j:
                    x = 0
                i, n = 0, len(seg)
                while i < n:
                    if x >= cols:  # pending wrap
                        x = 0
                        cy += 1
                        if cy >= lines + len(fresh):
                            fresh.append("")
                    take = seg[i : i + cols - x]
                    end = x + len(take)
                    if cy < lines:
                        buffer[cy].update(zip(range(x, end), map(glyph, take), strict=True))
                    else:
                        f = cy - lines
                        row = fresh[f]
                        if x == 0 and len(row) <= end:
                            fresh[f] = take
                        else:
                            fresh[f] = row[:x].ljust(x) + take + row[end:]
                    x = end
                    i += len(take)
        start = len(fresh)
        if start:
            rows: list[Any] = [buffer[y] for y in range(lines)]
            rows += [PlainRow(text, attrs) for text in fresh]
            s.history.extend(rows[:start])
            for y in range(lines):
                row = rows[start + y]
                s.buffer[y] = self._to_pyte_row(row) if isinstance(row, PlainRow) else row
            s.dirty.update(range(lines))
        else:
            s.dirty.update(range(first_y, cy + 1))
        s.cursor.x = x
        s.cursor.y = cy - start

    def _to_pyte_row(self, row: PlainRow) -> StaticDefaultDict[int, Char]:
        line = StaticDefaultDict[int, Char](self.screen.default_char)
        glyph = self._glyph_table(row.attrs).__getitem__
        line.update(zip(range(len(row.text)), map(glyph, row.text), strict=True))
        return line

    def _draw_ascii(self, run: str) -> None:
        """What pyte's draw() does for width-1 characters, a line segment at a time."""
        s = self.screen
        cur = s.cursor
        cols = s.columns
        glyph = self._glyph_table(cur.attrs).__getitem__
        i, n = 0, len(run)
        while i < n:
            if cur.x >= cols:
                if mo.DECAWM in s.mode:
                    s.dirty.add(cur.y)
                    s.carriage_return()
                    s.linefeed()
                else:
                    # No autowrap: every further character lands in the last column.
                    s.buffer[cur.y][cols - 1] = glyph(run[-1])
                    s.dirty.add(cur.y)
                    cur.x = cols
                    return
            x = cur.x
            seg = run[i : i + cols - x]
            s.buffer[cur.y].update(zip(range(x, x + len(seg)), map(glyph, seg), strict=True))
            cur.x = x + len(seg)
            s.dirty.add(cur.y)
            i += len(seg)


def runs_of(line: Any, columns: int) -> list[Run]:
    """Group a pyte line (or a scrollback PlainRow) into runs of equal attributes."""
    if isinstance(line, PlainRow):
        a = line.attrs
        return [Run(line.text[:columns].ljust(columns), a.fg, a.bg, a.bold, a.italics, a.underscore, a.reverse)]
    runs: list[Run] = []
    text: list[str] = []
    key: tuple | None = None
    default = getattr(line, "default", Char(" "))
    for x in range(columns):
        ch = line.get(x, default)
        k = (ch.fg, ch.bg, ch.bold, ch.italics, ch.underscore, ch.reverse)
        if k != key:
            if text and key is not None:
                runs.append(Run("".join(text), *key))
            text = []
            key = k
        text.append(ch.data)
    if text and key is not None:
        runs.append(Run("".join(text), *key))
    return runs


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
