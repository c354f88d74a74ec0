"""Screen rows the console's fast path writes without one pyte Char per cell.

A flooding console scrolls thousands of lines a second past a 24-line screen;
building a pyte Char for every cell of a line that is gone before the next
frame is most of the cost.  A Row keeps a line as (text, attrs) segments
from column 0 instead: writing a run of text at the end of a line is one
list extend.  A segment's text may be empty (a run that starts or ends with an
SGR, or two SGRs in a row): it holds no cell, and `end`, never the list's
truth, says whether a Row holds any.
It becomes a pyte row (`materialize`) only when pyte itself must work on the
screen, and is rendered (`runs_of`) straight from its segments.

A segment whose attrs is None stands for cells nothing wrote (the cursor
jumped past them): pyte has no key there, which matters to pyte's
erase_in_display (it rewrites only the cells a row holds).  Likewise pyte's
buffer holds only the rows something touched, and delete_lines moves only
those: an empty Row is in pyte's buffer only if `held`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyte.screens import Char, StaticDefaultDict

DEFAULT = Char(" ")


class Row(list[Any]):
    """One screen line as segments covering columns 0 .. end, flat: text, attrs, text, attrs ...

    Flat rather than (text, attrs) tuples: a flood makes millions of segments,
    and every container that outlives a garbage collection is work for the
    next one (tuples made them pause the UI for tens of ms).
    """

    __slots__ = ("end", "held")

    def __init__(self, segs: list[Any] | tuple[()] = (), end: int = 0) -> None:
        """A Row holding flat segments SEGS from column 0 that cover END cells."""
        # Not list.__init__: the list is new and empty, and a flood makes a Row a line.
        self += segs
        self.end = end
        self.held = False

    def put(self, x: int, text: str, attrs: Char) -> None:
        """Write TEXT at column X; cells take ATTRS with their character."""
        self.write(x, [text, attrs], len(text))

    def write(self, x: int, segs: list[Any], width: int) -> None:
        """Write SEGS (flat: text, attrs, ...; WIDTH cells in all) at column X."""
        end = self.end
        if x >= end:
            if x > end:
                self += (" " * (x - end), None)
            self += segs
            self.end = x + width
            return
        stop = x + width
        if x == 0 and stop >= end:  # over every cell the row holds (an erased line, a redrawn one)
            self[:] = segs
            self.end = stop
            return
        last, last_attrs = self[-2], self[-1]
        start = end - len(last)
        if x >= start and stop <= end:  # within the last segment (a line being redrawn over its erased tail)
            pieces: list[Any] = [last[: x - start], last_attrs] if x > start else []
            pieces += segs
            if stop < end:
                pieces += (last[stop - start :], last_attrs)
            self[-2:] = pieces
            return
        out = _cut(self, 0, x)
        out += segs
        if stop < end:
            out += _cut(self, stop, end)
        else:
            self.end = stop
        self[:] = out

    def blank(self, attrs: Char) -> None:
        """pyte's erase_in_display on this row: every cell it holds becomes a blank in ATTRS."""
        self[0::2] = [" " * len(t) for t in self[0::2]]
        self[1::2] = [None if a is None else attrs for a in self[1::2]]
        self.held = True

    def segments(self) -> zip[tuple[str, Char | None]]:
        return zip(self[0::2], self[1::2], strict=True)

    @property
    def text(self) -> str:
        return "".join(self[0::2])


def erase(row: Any, start: int, stop: int, attrs: Char) -> None:
    """pyte's erase_in_line on cells start .. stop of a Row or a pyte row."""
    if type(row) is Row:
        if stop > start:
            row.put(start, " " * (stop - start), attrs)
        else:
            row.held = True  # pyte looked the row up all the same
    else:
        row.update(dict.fromkeys(range(start, stop), attrs))


def _cut(row: Row, a: int, b: int) -> list[Any]:
    """The flat segments of ROW that cover columns a .. b."""
    return cut(row, a, b)


def cut(segs: list[Any], a: int, b: int) -> list[Any]:
    """The part of flat segments SEGS (text, attrs, ...) that covers cells a .. b of them."""
    out: list[Any] = []
    pos = 0
    for i in range(0, len(segs), 2):
        text = segs[i]
        end = pos + len(text)
        if end > a and pos < b:
            out += (text[max(a - pos, 0) : b - pos], segs[i + 1])
        pos = end
        if pos >= b:
            break
    return out


def split_at(segs: list[Any], n: int) -> tuple[list[Any], list[Any]]:
    """Flat segments SEGS cut at cell N: those before it and those from it (one pass)."""
    pos = 0
    for i in range(0, len(segs), 2):
        text = segs[i]
        end = pos + len(text)
        if end >= n:
            k = n - pos
            head = segs[:i]
            head += (text[:k], segs[i + 1])
            tail = [text[k:], segs[i + 1]]
            tail += segs[i + 2 :]
            return head, tail
        pos = end
    return segs, []


class Glyphs(dict[str, Char]):
    """Character -> Char in one attribute set, made on first use and kept."""

    def __init__(self, attrs: Char) -> None:
        super().__init__()
        self.attrs = attrs

    def __missing__(self, char: str) -> Char:
        glyph = self[char] = self.attrs._replace(data=char)
        return glyph


class GlyphCache:
    """Glyphs per attribute set, keyed by identity: hashing a Char costs more than the lookup saves."""

    def __init__(self) -> None:
        self._tables: dict[int, Glyphs] = {}

    def __call__(self, attrs: Char) -> Glyphs:
        table = self._tables.get(id(attrs))
        if table is None or table.attrs is not attrs:
            if len(self._tables) > 512:
                self._tables.clear()
            table = self._tables[id(attrs)] = Glyphs(attrs)
        return table


def materialize(row: Row, default: Char, glyphs: GlyphCache) -> StaticDefaultDict[int, Char]:
    """The pyte row holding what ROW shows (cells nothing wrote stay absent)."""
    line = StaticDefaultDict[int, Char](default)
    pos = 0
    for text, attrs in row.segments():
        n = len(text)
        if attrs is not None:
            line.update(zip(range(pos, pos + n), map(glyphs(attrs).__getitem__, text), strict=True))
        pos += n
    return line


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


def _key(ch: Char) -> tuple:
    return (ch.fg, ch.bg, ch.bold, ch.italics, ch.underscore, ch.reverse)


def runs_of(line: Any, columns: int) -> list[Run]:
    """Group a screen line (a Row or a pyte row) into runs of equal attributes, COLUMNS wide."""
    pairs: list[tuple[str, tuple]] = []
    if isinstance(line, Row):
        pos = 0
        for text, attrs in line.segments():
            if pos >= columns:
                break
            if text:  # a run's texts may be empty (between two SGRs): no cells, no run
                pairs.append((text[: columns - pos], _key(attrs or DEFAULT)))
                pos += len(text)
        if pos < columns:
            pairs.append((" " * (columns - pos), _key(DEFAULT)))
    else:
        default = getattr(line, "default", DEFAULT)
        pairs = [(ch.data, _key(ch)) for ch in (line.get(x, default) for x in range(columns))]
    runs: list[Run] = []
    texts: list[str] = []
    key: tuple | None = None
    for text, k in pairs:
        if k != key:
            if texts and key is not None:
                runs.append(Run("".join(texts), *key))
            texts = []
            key = k
        texts.append(text)
    if texts and key is not None:
        runs.append(Run("".join(texts), *key))
    return runs


def row_text(line: Any, columns: int) -> str:
    """The characters of a screen line, COLUMNS wide."""
    if isinstance(line, Row):
        return line.text[:columns].ljust(columns)
    default = getattr(line, "default", DEFAULT)
    return "".join(line.get(x, default).data for x in range(columns))
