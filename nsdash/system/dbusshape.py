"""Does a D-Bus reply's body have the shape its signature promises?  Pure: no I/O, no imports.

A machine's bus is whatever root inside put at /run/dbus/system_bus_socket: a
fake answers ListUnits with `a(s)` or GetAll with an int as well as systemd
answers it.  Neither dbuswire nor the supervisor's JSON form (system/dbusjson)
carries the reply's signature to the code that reads the body, and that code
indexes rows and iterates values: a body of another shape ended in an
IndexError or TypeError traceback.  So readers check the body against the
signature systemd sends before they look inside (conforms()).

Values are as dbuswire and dbusjson hand them over: variants unwrapped (a `v`
takes anything), structs as lists or tuples, `ay` as bytes.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing stays unimported at run time (the CLI's fast path)
if TYPE_CHECKING:
    from typing import Any

_INTS = frozenset("ynqiuxth")
_STRINGS = frozenset("sog")


class _Mismatch(Exception):
    pass


def conforms(body: Any, signature: str) -> bool:
    """Whether BODY (a reply's list of values) is one value per type of SIGNATURE, each of that type."""
    if not isinstance(body, list | tuple):
        return False
    i = 0
    try:
        for value in body:
            if i >= len(signature):
                return False
            i = _check(value, signature, i)
    except (_Mismatch, IndexError):  # IndexError: a struct with more values than types
        return False
    return i == len(signature)


def _check(value: Any, sig: str, i: int) -> int:
    """Check VALUE against the complete type at SIG[I]; the index after that type."""
    c = sig[i]
    if c in _STRINGS:
        _need(isinstance(value, str))
    elif c in _INTS:
        _need(isinstance(value, int) and not isinstance(value, bool))
    elif c == "b":
        _need(isinstance(value, bool))
    elif c == "d":
        _need(isinstance(value, int | float) and not isinstance(value, bool))
    elif c == "v":
        pass
    elif c == "a":
        return _check_array(value, sig, i + 1)
    elif c == "(":
        _need(isinstance(value, list | tuple))
        j = i + 1
        for item in value:
            _need(sig[j] != ")")
            j = _check(item, sig, j)
        _need(sig[j] == ")")
        return j + 1
    else:
        raise _Mismatch  # a type this module does not know: never taken as matching
    return i + 1


def _check_array(value: Any, sig: str, i: int) -> int:
    """VALUE against the array whose element type starts at SIG[I]."""
    end = _skip(sig, i)
    if sig[i] == "y":
        _need(isinstance(value, bytes | bytearray))
    elif sig[i] == "{":
        _need(isinstance(value, dict))
        for key, item in value.items():
            _check(item, sig, _check(key, sig, i + 1))
    else:
        _need(isinstance(value, list | tuple))
        for item in value:
            _check(item, sig, i)
    return end


def _skip(sig: str, i: int) -> int:
    """The index after the complete type at SIG[I] (no value to check)."""
    c = sig[i]
    if c == "a":
        return _skip(sig, i + 1)
    if c in "({":
        close = ")" if c == "(" else "}"
        j = i + 1
        while sig[j] != close:
            j = _skip(sig, j)
        return j + 1
    return i + 1


def _need(ok: bool) -> None:
    if not ok:
        raise _Mismatch
