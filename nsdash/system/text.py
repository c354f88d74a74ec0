"""Text a guest wrote, made safe for the host's terminal: the one sanitiser.

Everything a machine writes (its journal and console, hostname, os-release,
unit descriptions, cgroup names, process command lines) is shown on the host
only through here.  A character the terminal would act on instead of print is
shown escaped, the way journalctl and systemd-cgls show unprintable bytes, and
never emitted:

- C0 controls and DEL (`\\x1b`, `\\x07`, `\\x7f`; tab, newline and carriage
  return as `\\t`, `\\n`, `\\r`), C1 controls whether they arrive as raw bytes or
  in their UTF-8 form U+0080..U+009F (`\\x9b`);
- format characters that reorder or hide text: bidi embeddings, overrides and
  isolates (U+202A..U+202E, U+2066..U+2069 as `\\u202e`), marks, zero-width
  characters, and every other Unicode "Other" or line/paragraph separator that
  str.isprintable() refuses (unassigned code points too);
- bytes that are not UTF-8 (`\\xff`), from the bytes entry point.

Escape sequences (CSI, OSC, DCS, APC, PM, SOS, ESC c) are thereby neutralised
whole: their introducer (ESC or its C1 form) and every control inside them,
BEL and ST included, is shown escaped, so what is left is plain text that no
terminal parses; an OSC 52 clipboard write shows as `\\x1b]52;c;...\\x07`.
The rule is per character, with no state, so a sequence split across two
reads, two lines or two fields is neutralised just the same.

Spaces other than U+0020 (no-break, ideographic) are kept: they print.
Backslashes are kept as they are (for display, not for parsing back).  A caller
that shows a multi-line message may keep newlines (newline=True), and tabs
(tab=True); a one-line field keeps neither.

The common case (printable text) costs one str.isprintable() call.
"""

from __future__ import annotations

TYPE_CHECKING = False  # mypy takes this as true; at run time typing stays unimported (cgls, list)
if TYPE_CHECKING:
    from typing import Any

# What a screen keeps of a guest's text (the dashboard's panes show a message on one line).  A
# guest's journal or console line is as long as the guest likes: a line of 1,000,000 wide
# characters cost the journal pane about 1.4 s of its UI thread to write (ten such lines a
# slice) and 4 MB for each line kept (5,000 kept); a table fits its columns to their widest cell.
SHOWN_MESSAGE_MAX = 4096  # characters of a message kept
SHOWN_FIELD_MAX = 256  # characters of an identifier, a unit name or a table cell kept


def shown(text: str | None, limit: int = SHOWN_MESSAGE_MAX) -> str | None:
    """TEXT as a screen keeps it: its first LIMIT characters."""
    return text[:limit] if text is not None and len(text) > limit else text


# What may need escaping: everything but printable ASCII (' ' to '~'); escape() decides per
# distinct character (most non-ASCII characters print, and are kept).  No re: set() finds the
# distinct characters as fast, and importing re costs every `nsdash cgls` a millisecond.
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}

# A replacement for each character seen: the character itself when it is safe.  Bounded: text from
# guests can hold any code point, and the table must not grow without end.
_CACHE_LIMIT = 4096
_replacements: dict[str, str] = {}


def _replacement(c: str) -> str:
    o = ord(c)
    if c.isprintable():
        return c
    if o > 0x7F:
        import unicodedata  # a C extension to load: only for a character that does not print

        if unicodedata.category(c) == "Zs":
            return c
    if c in _SHORT:
        return _SHORT[c]
    if 0xDC80 <= o <= 0xDCFF:  # a byte that was not UTF-8, kept by surrogateescape
        return f"\\x{o - 0xDC00:02x}"
    if o < 0x100:
        return f"\\x{o:02x}"
    if o < 0x10000:
        return f"\\u{o:04x}"
    return f"\\U{o:08x}"


def _json_spelling(c: str) -> str:
    """C as a JSON string escape (UTF-16 units), for JSON text shown on a terminal."""
    o = ord(c)
    if 0xDC80 <= o <= 0xDCFF:
        o -= 0xDC00  # the byte it was; JSON has no bytes, this is the closest honest spelling
    if o < 0x10000:
        return f"\\u{o:04x}"
    o -= 0x10000
    return f"\\u{0xD800 + (o >> 10):04x}\\u{0xDC00 + (o & 0x3FF):04x}"


def _spelled(c: str, table: dict[str, str], json: bool) -> str:
    r = table.get(c)
    if r is None:
        r = _replacement(c)
        if json and r != c:
            r = _json_spelling(c)
        if len(table) >= _CACHE_LIMIT:
            table.clear()
        table[c] = r
    return r


_json_replacements: dict[str, str] = {}


def escape(text: str, *, newline: bool = False, tab: bool = False) -> str:
    """TEXT with every character a terminal would act on shown escaped (see the module docstring).

    NEWLINE, TAB: keep those as they are (a multi-line message); by default they are
    escaped too (a one-line field: a table cell, a name, a title).
    """
    if text.isprintable():
        return text
    changes = {}
    for c in set(text):
        if " " <= c <= "~":
            continue
        if (c == "\n" and newline) or (c == "\t" and tab):
            continue
        r = _spelled(c, _replacements, False)
        if r != c:
            changes[c] = r
    return _replaced(text, changes)


# Up to this many distinct characters to escape, one str.replace each (C-fast, and the text
# usually holds one or two: ESC, a newline); past it, one str.translate.  A replace per
# distinct character is a pass over the whole text each: a guest's line of 40,000 distinct
# unprintable characters (120 KB) took 14 s, a unit description of 1 MB would take hours.
_REPLACE_MAX = 16


def _replaced(text: str, changes: dict[str, str]) -> str:
    """TEXT with each character in CHANGES replaced by its spelling, in time linear in TEXT.
    Replacements are printable ASCII, never changed themselves, so the order does not matter."""
    if len(changes) <= _REPLACE_MAX:
        for c, r in changes.items():
            text = text.replace(c, r)
        return text
    return text.translate({ord(c): r for c, r in changes.items()})


def escape_json(line: str) -> str:
    """One line of JSON text made safe for a terminal and still the same JSON: what escape() would
    escape is spelled as a JSON `\\uXXXX` escape (JSON encoders leave DEL, C1 and bidi characters raw)."""
    if line.isprintable():
        return line
    changes = {}
    for c in set(line):
        if " " <= c <= "~":
            continue
        r = _spelled(c, _json_replacements, True)
        if r != c:
            changes[c] = r
    return _replaced(line, changes)


def escape_bytes(data: bytes, *, newline: bool = False, tab: bool = False) -> str:
    """DATA (as a guest wrote it) decoded as UTF-8 and escaped; bytes that are not UTF-8 show as `\\xNN`."""
    return escape(data.decode("utf-8", "surrogateescape"), newline=newline, tab=tab)


def escape_fields(record: Any) -> Any:
    """A copy of a RECORD (Frozen or dataclass) whose text fields (str, and tuples of str) are escaped
    as one-line fields.

    For records read from a guest (a unit's status, a process) before a pure
    formatter lays them out, so the layout's own colours stay and the guest's go.
    """
    from nsdash.system.frozen import Frozen

    if isinstance(record, Frozen):
        names: tuple[str, ...] = record._fields
    else:
        import dataclasses  # only here: it costs inspect and ast, and nsdash's own records are Frozen

        if not dataclasses.is_dataclass(record) or isinstance(record, type):
            raise TypeError(f"not a record: {type(record).__name__}")
        names = tuple(f.name for f in dataclasses.fields(record))
    changes: dict[str, Any] = {}
    for name in names:
        value = getattr(record, name)
        if isinstance(value, str):
            safe = escape(value)
            if safe != value:
                changes[name] = safe
        elif isinstance(value, tuple) and value and all(isinstance(v, str) for v in value):
            safe_all = tuple(escape(v) for v in value)
            if safe_all != value:
                changes[name] = safe_all
    if not changes:
        return record
    if isinstance(record, Frozen):
        return record._replace(**changes)
    import dataclasses

    return dataclasses.replace(record, **changes)
