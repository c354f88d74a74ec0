"""D-Bus values as JSON and back, losslessly: how a supervisor hands a bus reply to the CLI.

A reply body, as nsdash.system.dbuswire returns it (variants unwrapped), holds
str (strings, object paths, signatures), int (every integer type and 'h'),
bool, float, bytes ('ay'), list (arrays, structs), tuple (structs that were
inside a variant) and dict (a{..}).  JSON has all of them but bytes, tuples
and dicts whose keys are not strings, so those travel as tagged one-key
objects whose key starts with NUL, which no D-Bus string may hold:

    bytes                    {"\\u0000b": "<hex>"}
    tuple                    {"\\u0000t": [value, ...]}
    dict, keys not all str   {"\\u0000d": [[key, value], ...]}

A str-keyed dict whose keys include one starting with NUL cannot come from a
bus, but is still sent as pairs, so a decoded dict never looks like a tag by
accident.  decode_hook() is the object hook that restores them: pass it to
nsdash.system.jsontext.decode.  Pure: no I/O, no imports.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing stays unimported at run time (the CLI's fast path)
if TYPE_CHECKING:
    from typing import Any

BYTES_TAG = "\0b"
DICT_TAG = "\0d"
TUPLE_TAG = "\0t"


class NotEncodable(TypeError):
    """A value with no D-Bus type (an object a bus client cannot have returned)."""


_PLAIN = frozenset({str, int, bool, float, type(None)})  # values JSON has as they are


def encode(value: Any) -> Any:
    """VALUE with bytes and non-string-keyed dicts replaced by their tagged objects (JSON-able).

    The exact built-in types are taken by their type first: a supervisor encodes every bus-call's
    answer (a GetAll's hundreds of properties) and a call per plain value was most of it."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is list:
        return [v if type(v) in _PLAIN else encode(v) for v in value]
    if kind is dict:
        plain: dict[str, Any] = {}
        for k, v in value.items():
            if type(k) is not str or k.startswith("\0"):
                return _encode(value)  # (tagged pairs: decided from all the keys, as below)
            plain[k] = v if type(v) in _PLAIN else encode(v)
        return plain
    return _encode(value)


def _encode(value: Any) -> Any:
    """encode() for any value: subclasses of the built-in types too, by isinstance."""
    if isinstance(value, str | bool | int | float) or value is None:
        return value
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, tuple):
        return {TUPLE_TAG: [encode(v) for v in value]}
    if isinstance(value, bytes | bytearray):
        return {BYTES_TAG: bytes(value).hex()}
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("\0") for k in value):
            return {k: encode(v) for k, v in value.items()}
        return {DICT_TAG: [[encode(k), encode(v)] for k, v in value.items()]}
    raise NotEncodable(f"no JSON form for a {type(value).__name__}")


def decode_hook(obj: dict[str, Any]) -> Any:
    """The object hook for the JSON scanner: tagged objects back to bytes and dicts."""
    if len(obj) == 1:
        if BYTES_TAG in obj:
            return bytes.fromhex(obj[BYTES_TAG])
        if TUPLE_TAG in obj:
            return tuple(obj[TUPLE_TAG])
        if DICT_TAG in obj:
            return {_hashable(k): v for k, v in obj[DICT_TAG]}
    return obj


def _hashable(key: Any) -> Any:
    # D-Bus dict keys are basic types: a list here came from no bus, but must not break the dict
    return tuple(key) if isinstance(key, list) else key


def restore(value: Any) -> Any:
    """decode_hook applied through a value already parsed without it (a request's arguments)."""
    if isinstance(value, list):
        return [restore(v) for v in value]
    if isinstance(value, dict):
        return decode_hook({k: restore(v) for k, v in value.items()})
    return value
