"""JSON text of nsdash's own small documents (state.json, console-log marks), without json.

Every foreground spawn writes both; importing json (its decoder imports re) is
a millisecond or more of each start, for documents of names, numbers and
flags.  encode() writes exactly what json.dumps writes for such plain values,
and hands anything else (text outside printable ASCII, floats, other types)
to json itself, so the output is always
json.dumps's.  Readers use json.
"""

from __future__ import annotations


class _NotPlain(Exception):
    """A value this module leaves to json."""


def encode(value: object, indent: int | None = None) -> str:
    """json.dumps(VALUE, indent=INDENT)."""
    try:
        return _encode(value, indent, 0)
    except _NotPlain:
        import json

        return json.dumps(value, indent=indent)


def _encode(value: object, indent: int | None, level: int) -> str:
    # In json's own order of tests: True and False are ints too.
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int) and not isinstance(value, float):
        return int.__repr__(value)  # as json writes an int (an IntEnum by its number)
    if isinstance(value, (list, tuple)):
        return _join("[", [_encode(v, indent, level + 1) for v in value], "]", indent, level)
    if isinstance(value, dict):
        pairs = []
        for k, v in value.items():
            if not isinstance(k, str):
                raise _NotPlain  # json's key conversions (numbers, None) are its own
            pairs.append(f"{_string(k)}: {_encode(v, indent, level + 1)}")
        return _join("{", pairs, "}", indent, level)
    raise _NotPlain


def _string(text: str) -> str:
    if text.isascii() and text.isprintable():  # a unit name's \x2d, a quote: escaped as json does
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise _NotPlain


def _join(opening: str, items: list[str], closing: str, indent: int | None, level: int) -> str:
    if not items:
        return opening + closing
    if indent is None:
        return opening + ", ".join(items) + closing
    inner = "\n" + " " * (indent * (level + 1))
    return opening + inner + ("," + inner).join(items) + "\n" + " " * (indent * level) + closing
