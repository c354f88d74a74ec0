"""JSON text of nsdash's own small documents (state.json, console-log marks), without json.

Every foreground spawn writes both; importing json (its decoder imports re) is
a millisecond or more of each start, for documents of names, numbers and
flags.  encode() writes exactly what json.dumps writes for such plain values,
and hands anything else (text outside printable ASCII, floats, other types)
to json itself, so the output is always
json.dumps's.  decode() reads such documents back as json.loads does, and
hands anything else (a float, a \\u escape, text outside printable ASCII,
malformed text) to json, so its answer, or its ValueError, is json's.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing stays off the path of the verbs that read state files
if TYPE_CHECKING:
    from typing import Any


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


_WS = " \t\n\r"
_CONSTANTS = {"true": True, "false": False, "null": None}


# A state file read by hand costs about 36 us, by json 4.5 us after an import of about 3 ms:
# past this many in one process, json is imported.
HAND_READS = 32
_hand_reads = 0


def decode(text: str) -> Any:
    """json.loads(TEXT).

    Where json is already imported (the dashboard), its C decoder, several times faster
    than this module's: the hand reading only saves the import, for verbs that read a
    state file or two and exit."""
    global _hand_reads
    loaded = sys.modules.get("json")
    if loaded is None and _hand_reads >= HAND_READS:
        import json as loaded  # many files (cgtop over 100 machines): the import pays for itself
    if loaded is not None:
        return loaded.loads(text)
    _hand_reads += 1
    return decode_plain(text)


def decode_plain(text: str) -> Any:
    """json.loads(TEXT), read here; json itself only for what is not plain (and errors)."""
    try:
        value, end = _value(text, _skip(text, 0))
        if _skip(text, end) != len(text):
            raise _NotPlain
        return value
    except (_NotPlain, IndexError, ValueError):  # ValueError: str.index found no closing quote
        import json

        return json.loads(text)


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def _value(text: str, i: int) -> tuple[object, int]:
    c = text[i]
    if c == '"':
        return _string_at(text, i + 1)
    if c == "{":
        return _object(text, _skip(text, i + 1))
    if c == "[":
        return _array(text, _skip(text, i + 1))
    for word, value in _CONSTANTS.items():
        if text.startswith(word, i):
            return value, i + len(word)
    j = i + 1 if c == "-" else i
    end = j
    while end < len(text) and text[end].isdigit():
        end += 1
    digits = text[j:end]
    # An int as json reads one: digits only, no leading zero; a fraction or an exponent is json's.
    if not digits.isascii() or (digits[:1] == "0" and len(digits) > 1) or text[end:end + 1] in (".", "e", "E"):
        raise _NotPlain
    if not digits:
        raise _NotPlain
    return int(text[i:end]), end


def _string_at(text: str, i: int) -> tuple[str, int]:
    end = text.index('"', i)
    raw = text[i:end]
    if "\\" in raw:
        # Only the escapes encode() writes (a quote, a backslash); a \\u and the rest are json's.
        out, k = [], i
        while True:
            end = text.index('"', k)
            slash = text.find("\\", k, end)
            if slash < 0:
                out.append(text[k:end])
                raw = "".join(out)
                break
            escaped = text[slash + 1]
            if escaped not in '"\\/':
                raise _NotPlain
            out.append(text[k:slash] + escaped)
            k = slash + 2
    if not (raw.isascii() and raw.isprintable()):
        raise _NotPlain
    return raw, end + 1


def _object(text: str, i: int) -> tuple[dict[str, object], int]:
    out: dict[str, object] = {}
    if text[i] == "}":
        return out, i + 1
    while True:
        if text[i] != '"':
            raise _NotPlain
        key, i = _string_at(text, i + 1)
        i = _skip(text, i)
        if text[i] != ":":
            raise _NotPlain
        out[key], i = _value(text, _skip(text, i + 1))
        i = _skip(text, i)
        if text[i] == "}":
            return out, i + 1
        if text[i] != ",":
            raise _NotPlain
        i = _skip(text, i + 1)


def _array(text: str, i: int) -> tuple[list[object], int]:
    out: list[object] = []
    if text[i] == "]":
        return out, i + 1
    while True:
        value, i = _value(text, i)
        out.append(value)
        i = _skip(text, i)
        if text[i] == "]":
            return out, i + 1
        if text[i] != ",":
            raise _NotPlain
        i = _skip(text, i + 1)
