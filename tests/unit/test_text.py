"""The one sanitiser for guest text (nsdash/system/text.py): every control class, C1 in UTF-8,
bidi, split sequences, markup."""

from __future__ import annotations

import dataclasses
import re

import pytest

from nsdash.system.text import escape, escape_bytes, escape_fields

# Anything a terminal acts on: C0 but the three with short forms, DEL, C1 (as characters).
CONTROLS = [chr(c) for c in (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0))]
# The bidi embeddings, overrides, isolates and marks, and other format characters that reorder or hide text.
FORMAT = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069",
          "\u200e", "\u200f", "\u061c", "\u200b", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u2028", "\u2029",
          "\U000e0001"]
# The sequences of the issue: titles, clipboard, DCS passthrough, reset, queries that make the terminal answer.
SEQUENCES = [
    "\x1b]0;owned\x07", "\x1b]2;owned\x1b\\", "\x1b]52;c;aGVsbG8=\x07", "\x1b]52;c;?\x07",
    "\x1b]10;?\x07", "\x1b]11;?\x1b\\", "\x1bPtmux;\x1b\x1b]2;x\x07\x1b\\", "\x1bc", "\x1b[c", "\x1b[>c",
    "\x1b[6n", "\x1b[5n", "\x1b_apc\x1b\\", "\x1b^pm\x1b\\", "\x1bXsos\x1b\\", "\x1b[2J\x1b[H",
    "\x1b[8;10;10t", "\u009b>c", "\u009d0;owned\u009c", "\u0090q\u009c", "\x1b[?1049h", "\x1b[?1000h",
]
# What a terminal treats as the start of a control function: these must never survive.
RAW = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")


@pytest.mark.parametrize("c", CONTROLS, ids=lambda c: f"U+{ord(c):04X}")
def test_each_control_is_shown_escaped(c):
    out = escape(f"a{c}b")
    assert not RAW.search(out)
    expected = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}.get(c, f"\\x{ord(c):02x}")
    assert out == f"a{expected}b"


@pytest.mark.parametrize("c", FORMAT, ids=lambda c: f"U+{ord(c):04X}")
def test_format_characters_that_reorder_or_hide_text_are_escaped(c):
    out = escape(f"abc{c}def")
    assert c not in out
    o = ord(c)
    spelled = f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"
    assert out == f"abc{spelled}def"


@pytest.mark.parametrize("seq", SEQUENCES, ids=repr)
def test_escape_sequences_are_neutralised_whole(seq):
    out = escape(f"x{seq}y")
    assert not RAW.search(out)
    assert out.startswith("x") and out.endswith("y")
    # Every printable part of the sequence is still there to read, the controls spelled out.
    assert out.count("\\x1b") == seq.count("\x1b")


def test_c1_controls_as_utf8_bytes_and_as_raw_bytes():
    # U+009B (CSI) and U+009D (OSC) as UTF-8, and the same codes as bare bytes (not UTF-8).
    assert escape_bytes(b"\xc2\x9b>c\xc2\x9d0;t\xc2\x9c") == "\\x9b>c\\x9d0;t\\x9c"
    assert escape_bytes(b"\x9b>c\x9d0;t\x9c") == "\\x9b>c\\x9d0;t\\x9c"
    assert escape_bytes(b"ok \xff\xfe \xe2\x80\xae") == "ok \\xff\\xfe \\u202e"


def test_printable_text_is_returned_as_is():
    for s in ("", "plain ascii [bold] \\x1b", "héllo wörld", "中文字符", "emoji 😀", "no\u00a0break", "ideo\u3000space"):
        assert escape(s) == s
    s = "unchanged object"
    assert escape(s) is s


def test_newline_and_tab_per_caller():
    text = "one\ttwo\nthree\r\n"
    assert escape(text) == "one\\ttwo\\nthree\\r\\n"
    assert escape(text, newline=True) == "one\\ttwo\nthree\\r\n"
    assert escape(text, tab=True) == "one\ttwo\\nthree\\r\\n"
    assert escape(text, newline=True, tab=True) == "one\ttwo\nthree\\r\n"
    # Keeping newlines never keeps anything else.
    assert escape("a\n\x1b[c\n", newline=True) == "a\n\\x1b[c\n"


def test_split_sequences_stay_neutral():
    """A sequence cut across two reads, lines or fields: each part alone is escaped as well."""
    whole = "\x1b]52;c;?\x07\x1b[>c\u009b6n"
    for cut in range(len(whole) + 1):
        left, right = escape(whole[:cut]), escape(whole[cut:])
        assert not RAW.search(left + right)
        assert left + right == escape(whole)
    data = "\x1b]0;t\x07 \u202e".encode()
    for cut in range(len(data) + 1):  # also inside a UTF-8 character: its bytes show, never the character
        joined = escape_bytes(data[:cut]) + escape_bytes(data[cut:])
        assert not RAW.search(joined)


def test_escaped_text_is_inert_in_rich_and_markup_is_not_parsed():
    from rich.console import Console
    from rich.text import Text

    hostile = "[bold]x[/bold] [@click=app.quit]quit[/] \x1b]0;t\x07"
    text = Text(escape(hostile))
    console = Console(width=200, color_system=None, force_terminal=True, legacy_windows=False)
    with console.capture() as cap:
        console.print(text)
    out = cap.get()
    assert "[@click=app.quit]quit[/]" in out and "[bold]" in out  # shown, not interpreted
    assert "\x1b" not in out
    assert not text.spans


def test_escape_fields_on_records():
    @dataclasses.dataclass(frozen=True)
    class Unit:
        name: str
        description: str
        docs: tuple[str, ...]
        pid: int | None

    u = Unit("a.service", "evil\x1b]2;t\x07\u202e", ("man:x\x1b[c", "ok"), 5)
    safe = escape_fields(u)
    assert safe == Unit("a.service", "evil\\x1b]2;t\\x07\\u202e", ("man:x\\x1b[c", "ok"), 5)
    plain = Unit("a", "b", (), None)
    assert escape_fields(plain) is plain
    with pytest.raises(TypeError):
        escape_fields("not a record")


def test_every_code_point_of_the_control_planes_is_decided():
    """Exhaustive over the BMP's Other and separator characters: none comes out raw."""
    import unicodedata

    for o in range(0x10000):
        c = chr(o)
        if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp"):
            assert c not in escape(c), f"U+{o:04X}"


def _printed(mode: str, terminal: bool, message: bytes, **fields: bytes) -> str:
    import io

    from nsdash.journal.entry import Entry
    from nsdash.journal.format import Printer

    out = io.StringIO()
    entry = Entry(1_700_000_000_000_000, {"MESSAGE": message, "_HOSTNAME": b"host", "SYSLOG_IDENTIFIER": b"app",
                                          **fields})
    Printer(out, mode, terminal=terminal).write(entry)
    return out.getvalue()


def test_journal_formats_escape_on_a_terminal_and_keep_exact_text_in_pipes():
    import json

    bidi = "ok \u202eevil \x7f\u0085".encode()
    # short: journalctl leaves out what holds controls ("blob data"); the rest is escaped everywhere.
    assert _printed("short", False, bidi).endswith("app: [14B blob data]\n")
    assert _printed("short", False, "ok \u202eevil".encode()).endswith("app: ok \\u202eevil\n")
    assert "\u202e" not in _printed("short", False, b"x", SYSLOG_IDENTIFIER="a\u202eb".encode())
    assert "\x1b" not in _printed("short", False, b"\x1b]0;t\x07")
    # cat: exact into a pipe, escaped on a terminal.
    assert _printed("cat", False, b"\x1b]0;t\x07 \xe2\x80\xae") == "\x1b]0;t\x07 \u202e\n"
    assert _printed("cat", True, b"\x1b]0;t\x07 \xe2\x80\xae\tx\ny") == "\\x1b]0;t\\x07 \\u202e\tx\ny\n"
    # json: the same JSON either way; on a terminal, no raw character a terminal would act on.
    piped, shown = _printed("json", False, "a\u202eb".encode()), _printed("json", True, "a\u202eb".encode())
    assert "\u202e" in piped and not RAW.search(shown.rstrip("\n"))
    assert json.loads(piped) == json.loads(shown)


def test_escape_json_keeps_the_same_json():
    import json

    from nsdash.system.text import escape_json

    value = {"M": "a\u202eb\x7f\u0085 \U000e0001 é 中 \udcff"}
    line = json.dumps(value, ensure_ascii=False)
    shown = escape_json(line)
    assert not RAW.search(shown) and "\U000e0001" not in shown
    assert "é 中" in shown  # printable text stays readable
    assert json.loads(shown) == {"M": "a\u202eb\x7f\u0085 \U000e0001 é 中 \u00ff"}  # an undecodable byte: U+00FF
