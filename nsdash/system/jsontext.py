"""JSON text of nsdash's own small documents (state.json, console-log marks), without json.

Every foreground spawn writes both; importing json (its decoder imports re) is
a millisecond or more of each start, for documents of names, numbers and
flags.  encode() writes exactly what json.dumps writes for such plain values,
and hands anything else (text outside printable ASCII, NaN and infinities, other types)
to json itself, so the output is always
json.dumps's.  decode() reads any JSON text as json.loads does, with the very
scanner json.loads uses (the C one in _json), only without importing json's
modules, whose regular expressions import re: `nsdash list` reads a state file
per machine and shows the result, and re was a tenth of its run.
"""

from __future__ import annotations

TYPE_CHECKING = False  # mypy takes this as true; typing stays unimported at run time
if TYPE_CHECKING:
    from collections.abc import Callable
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
    if isinstance(value, float) and value - value == 0:  # finite (inf - inf and nan are nan)
        return float.__repr__(value)  # as json writes a float
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


_WHITESPACE = " \t\n\r"  # json's WHITESPACE: what it skips around the document


class _Context:
    """What _json's scanner reads from a JSONDecoder: json.loads()'s defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}[name]


def decode(text: str, object_hook: Callable[[dict[str, Any]], Any] | None = None) -> Any:
    """json.loads(TEXT, object_hook=OBJECT_HOOK), ValueError (json's JSONDecodeError where json
    would raise one) if it is not one JSON document.  Without the C scanner (a Python built
    without _json), json.loads itself."""
    try:
        from _json import make_scanner
    except ImportError:
        import json

        return json.loads(text, object_hook=object_hook)
    start = len(text) - len(text.lstrip(_WHITESPACE))
    context: Any = _Context()  # duck-typed: the scanner reads these attributes of a JSONDecoder
    context.object_hook = object_hook
    try:
        value, end = make_scanner(context)(text, start)
    except StopIteration:
        import json  # the error path: json's own error, with its message

        return json.loads(text, object_hook=object_hook)
    if text[end:].strip(_WHITESPACE):
        import json

        return json.loads(text, object_hook=object_hook)
    return value
