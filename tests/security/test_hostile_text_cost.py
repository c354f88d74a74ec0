"""The sanitiser's work is linear in the text, whatever characters a guest chose (review20).

nsdash.system.text escaped each distinct unprintable character with a str.replace
over the whole text: a pass per distinct character.  A guest's journal line,
unit description or unit status of 40,000 distinct unprintable characters (120
KB: private-use and unassigned code points) took `nsdash journal` and the units
screen's UI thread 14 s; a unit description of 1 MB (a reply at BUS_REPLY_MAX)
would take hours.  Counted, not timed: the passes over the text are those of a
str subclass that counts them.
"""

from __future__ import annotations

from nsdash.system import text


class _Counted(str):
    """A text that counts the whole-text passes escape() makes by replace() and translate()."""

    passes = 0

    def replace(self, old, new, count=-1):  # type: ignore[override]
        _Counted.passes += 1
        return _Counted(super().replace(old, new, count))

    def translate(self, table):  # type: ignore[override]
        _Counted.passes += 1
        return _Counted(super().translate(table))


def _hostile(distinct: int) -> _Counted:
    # Private use (U+E000-U+F8FF, then plane 15's): none prints, each is escaped
    return _Counted("".join(chr(0xE000 + i) if i < 6400 else chr(0xF0000 + i) for i in range(distinct)) + "ok")


def test_many_distinct_unprintable_characters_cost_a_bounded_number_of_passes() -> None:
    for escape in (text.escape, text.escape_json):
        _Counted.passes = 0
        shown = escape(_hostile(5000))
        assert _Counted.passes <= 20, f"{escape.__name__}: {_Counted.passes} passes over the text"  # not one per character
        assert shown.endswith("ok") and shown.isascii() and shown.isprintable()
    assert text.escape(_hostile(8000)).count("\\") == 8000  # each one escaped


def test_the_result_is_the_same_either_way() -> None:
    """Few distinct characters are replaced one by one, many translated at once: the same text."""
    few = "a\x1b[31mb\u202ec\x9bd\n"
    many = few + "".join(chr(0xE000 + i) for i in range(100))
    for escape in (text.escape, text.escape_json):
        whole = escape(many)
        assert whole.startswith(escape(few)) and whole.isprintable()
    assert text.escape(few) == "a\\x1b[31mb\\u202ec\\x9bd\\n"


def test_a_unit_description_of_a_megabyte_is_a_table_cell_of_bounded_width() -> None:
    """A guest's unit file may hold a Description line of 1 MB (systemd reads lines that long):
    the units table fits its columns to their widest cell, so every row was painted a million
    cells wide.  Each cell shows at most SHOWN_FIELD_MAX characters (escaped: a few times that)."""
    from nsdash.inside.units import UnitInfo
    from nsdash.journal.entry import SHOWN_FIELD_MAX
    from nsdash.tui.screens.units import row_cells

    huge = "\x1b]0;title\x07" + "d" * (1 << 20)
    unit = UnitInfo("x.service", huge, "loaded" * 1000, "active", "running" * 1000, "", None, None)
    cells = row_cells(unit)
    assert all(c.cell_len <= 4 * SHOWN_FIELD_MAX for c in cells), [c.cell_len for c in cells]
    assert cells[4].plain.startswith("\\x1b]0;title\\x07ddd") and "\x1b" not in "".join(c.plain for c in cells)


def test_a_unit_status_with_a_line_of_a_megabyte_is_shown_bounded() -> None:
    """The units screen's status pane showed the status text whole: the Description line (and
    drop-in paths, conditions) of a guest's unit file, a megabyte painted in one Static."""
    from nsdash.journal.entry import SHOWN_MESSAGE_MAX
    from nsdash.tui.screens.units import DETAIL_LINES_MAX, detail_text

    status = "● x.service - \x1b]52;c;?\x07" + "d" * (1 << 20) + "\n" + "     Drop-In: /x\n" * 100_000
    shown = detail_text(status)
    lines = shown.plain.split("\n")
    assert len(lines) == DETAIL_LINES_MAX and max(len(line) for line in lines) <= 4 * SHOWN_MESSAGE_MAX
    assert lines[0].startswith("● x.service - \\x1b]52;c;?\\x07ddd") and "\x1b" not in shown.plain
    assert detail_text("a\nb").plain == "a\nb"  # a usual status: as it was
