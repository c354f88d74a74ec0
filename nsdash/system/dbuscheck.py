"""Check that every length inside a D-Bus message stays inside it, before dbus-fast reads it.

dbus-fast 5's compiled unmarshaller keeps its read position in a 32-bit unsigned
int.  A string or array length near 2**32 (a body `ay` whose length is
0xFFFFFFF0) wraps the position back into the buffer, the bound check after it
passes, and the slice that follows reads far outside the buffer: the process
dies of SIGSEGV.  A guest's bus killed its own supervisor (a root process on
the host) and `nsdash systemctl -M M start` that way with one small message.

`check` walks a whole message the way the D-Bus specification lays it out
("Message Format"): the header fields (`a(yv)`), then the body by the
SIGNATURE field, each value aligned, reading only the lengths (strings, object
paths, signatures, arrays, variants' signatures) and refusing any that reaches
past the message's end, a signature that is not one, or containers nested
deeper than dbus-fast allows.  Where dbus-fast would read elsewhere than this
walk does, the message is refused too: an array of fixed-size values whose
length ends inside one, a header field whose type is not its code's (a fuzzer,
tests/security/_dbus_fuzz.py, found both: SIGSEGV, and a loop for good).  It
builds no values: a byte array is skipped whole, so the cost is per value, not
per byte.  Pure: bytes in, a verdict out.
"""

from __future__ import annotations

import struct

HEADER = 16  # the fixed part: endianness, type, flags, version, body length, serial, fields length
DEPTH_MAX = 64  # containers nested (dbus-fast refuses deeper; the walk's recursion stays small)
_FIXED = {"y": 1, "b": 4, "n": 2, "q": 2, "i": 4, "u": 4, "h": 4, "x": 8, "t": 8, "d": 8}
_ALIGN = {**_FIXED, "s": 4, "o": 4, "g": 1, "v": 1, "a": 4, "(": 8, "{": 8}
_SIGNATURE_FIELD = 8
# The header fields' codes and the one type each has (D-Bus specification, "Header Fields"):
# dbus-fast reads PATH to SIGNATURE by their type's first letter and skips UNIX_FDS's value
# unread, assuming its 4 bytes: a field of another type was read elsewhere than checked (a
# string there hid a field of its own whose length wrapped the position: dbus-fast looped for
# good).  Buses send these fields with these types only (dbus-daemon drops codes it does not
# know), so a field of another type, or of a code not known here but not of one letter, is refused.
_FIELD_TYPES = {1: "o", 2: "s", 3: "s", 4: "s", 5: "u", 6: "s", 7: "s", 8: "g", 9: "u"}


class Malformed(ValueError):
    """The message is not laid out as D-Bus says; the text completes "the bus sent a message ..."."""


def _past() -> Malformed:
    return Malformed("with a length past its end")


class _Walk:
    """A read position over one message's bytes: skips values of a signature, checking bounds."""

    def __init__(self, data: bytes, order: str) -> None:
        self.data = data
        self.u32 = struct.Struct(order + "I").unpack_from
        self.end = len(data)

    def _take(self, pos: int, size: int) -> int:
        if size < 0 or pos + size > self.end:
            raise _past()
        return pos + size

    def _length(self, pos: int) -> int:
        self._take(pos, 4)
        return int(self.u32(self.data, pos)[0])

    def _signature(self, pos: int) -> tuple[str, int]:
        """The signature at POS (a length byte, the text, a NUL) and the position after it."""
        self._take(pos, 1)
        after = self._take(pos + 1, self.data[pos] + 1)
        try:
            return self.data[pos + 1:after - 1].decode("ascii"), after
        except UnicodeDecodeError:
            raise Malformed("with a signature that is not one") from None

    def values(self, sig: str, pos: int, depth: int = 0) -> int:
        """Skip one value of each complete type in SIG from POS; the position after them."""
        i = 0
        while i < len(sig):
            i, pos = self.value(sig, i, pos, depth)
        return pos

    def value(self, sig: str, i: int, pos: int, depth: int) -> tuple[int, int]:
        """Skip the value of the complete type at SIG[I] stored at POS: (index after the type, position after the value)."""
        if i >= len(sig) or sig[i] not in _ALIGN:
            raise Malformed("with a signature that is not one")
        if depth > DEPTH_MAX:
            raise Malformed(f"nested deeper than {DEPTH_MAX} containers")
        code = sig[i]
        pos += -pos % _ALIGN[code]
        size = _FIXED.get(code)
        if size is not None:
            pos += size
            if pos > self.end:
                raise _past()
            return i + 1, pos
        if code == "s" or code == "o":
            return i + 1, self._string(pos)
        if code == "g":
            return i + 1, self._signature(pos)[1]
        if code == "v":
            inner, pos = self._signature(pos)
            if depth < DEPTH_MAX and (inner == "s" or inner == "o"):  # value()'s checks, no call
                return i + 1, self._string(pos + (-pos % 4))
            end, pos = self.value(inner, 0, pos, depth + 1)
            if end != len(inner):
                raise Malformed("with a variant of more than one type")
            return i + 1, pos
        if code == "a":
            return self._array(sig, i, pos, depth)
        close = ")" if code == "(" else "}"
        i += 1
        n = len(sig)
        inline = depth < DEPTH_MAX  # a member one deeper passes value()'s depth check too
        while i < n and (member := sig[i]) != close:
            # the members that are strings or fixed-size skipped here: the same checks as
            # value() makes, without a call each (a GetAll's a{sv} is mostly these)
            if inline and (member == "s" or member == "o"):
                i, pos = i + 1, self._string(pos + (-pos % 4))
            elif inline and (size := _FIXED.get(member)) is not None:
                pos += (-pos % size) + size  # (a fixed type's alignment is its size)
                if pos > self.end:
                    raise _past()
                i += 1
            else:
                i, pos = self.value(sig, i, pos, depth + 1)
        if i >= n:
            raise Malformed("with a signature that is not one")
        return i + 1, pos

    def _string(self, pos: int) -> int:
        """The position after the string (or object path) at POS, which is aligned."""
        if pos + 4 > self.end:
            raise _past()
        pos += 5 + self.u32(self.data, pos)[0]  # its length, its bytes, its NUL
        if pos > self.end:
            raise _past()
        return int(pos)

    def _array(self, sig: str, i: int, pos: int, depth: int) -> tuple[int, int]:
        size = self._length(pos)
        if i + 1 >= len(sig) or sig[i + 1] not in _ALIGN:
            raise Malformed("with a signature that is not one")
        pos += 4
        pos += -pos % _ALIGN[sig[i + 1]]  # the elements' first padding is not counted in SIZE
        stop = self._take(pos, size)
        if sig[i + 1] in _FIXED:
            # dbus-fast reads whole elements while its position is short of the end: a length
            # that is no multiple of theirs ends it past where this walk ends it, and the
            # values after it are read from bytes never checked (SIGSEGV again)
            if size % _FIXED[sig[i + 1]]:
                raise Malformed("with an array that ends inside an element")
            return i + 2, stop
        if sig.startswith("{sv}", i + 1) and depth + 3 <= DEPTH_MAX:
            return i + 5, self._properties(pos, stop, depth)
        after = self._skip(sig, i + 1)
        if depth < DEPTH_MAX and (sig[i + 1] == "s" or sig[i + 1] == "o"):  # (as value() would)
            while pos < stop:
                pos = self._string(pos + (-pos % 4))
        while pos < stop:
            _, moved = self.value(sig, i + 1, pos, depth + 1)
            if moved == pos:
                raise Malformed("with an array of empty elements")
            pos = moved
        if pos != stop:
            raise Malformed("with an array whose elements overrun it")
        return after, stop

    def _properties(self, pos: int, stop: int, depth: int) -> int:
        """Skip the elements of an a{sv} at DEPTH, from POS (aligned) to STOP; the position after.

        What value() checks for each {sv} entry, in its order, written out in one loop: a
        GetAll's answer is one of these with hundreds of entries, and a call per value was
        most of the supervisor's time on it.  Its caller makes sure that the entry, its
        members and a variant's value are all within DEPTH_MAX (depth + 3)."""
        data, end, u32 = self.data, self.end, self.u32
        while pos < stop:
            pos += -pos % 8  # the entry's alignment
            if pos + 4 > end:  # its key, a string
                raise _past()
            pos += 5 + u32(data, pos)[0]
            if pos >= end:  # its variant's signature: a length byte, the text, a NUL
                raise _past()
            after = pos + 2 + data[pos]
            if after > end:
                raise _past()
            try:
                inner = data[pos + 1:after - 1].decode("ascii")
            except UnicodeDecodeError:
                raise Malformed("with a signature that is not one") from None
            pos = after
            size = _FIXED.get(inner)
            if size is not None:
                pos += (-pos % size) + size  # (a fixed type's alignment is its size)
                if pos > end:
                    raise _past()
            elif inner == "s" or inner == "o":
                pos = self._string(pos + (-pos % 4))
            else:
                used, pos = self.value(inner, 0, pos, depth + 3)
                if used != len(inner):
                    raise Malformed("with a variant of more than one type")
        if pos != stop:
            raise Malformed("with an array whose elements overrun it")
        return pos

    def _skip(self, sig: str, i: int) -> int:
        """The index after the complete type at SIG[I] (no bytes read)."""
        if i >= len(sig):
            raise Malformed("with a signature that is not one")
        if sig[i] == "a":
            return self._skip(sig, i + 1)
        if sig[i] in "({":
            close = ")" if sig[i] == "(" else "}"
            i += 1
            while i < len(sig) and sig[i] != close:
                i = self._skip(sig, i)
            if i >= len(sig):
                raise Malformed("with a signature that is not one")
        return i + 1


def size(head: bytes) -> int:
    """The length of the whole message whose fixed header is HEAD (its first 16 bytes); Malformed
    when they are not a D-Bus header (byte 0 the endianness, 'l' or 'B'; byte 3 the version, 1)."""
    order = {ord("l"): "<", ord("B"): ">"}.get(head[0])
    if order is None or head[3] != 1:
        raise Malformed("that is not D-Bus")
    body, fields = struct.unpack_from(order + "I", head, 4)[0], struct.unpack_from(order + "I", head, 12)[0]
    return int(((HEADER + fields + 7) & ~7) + body)


def check(message: bytes) -> None:
    """Raise Malformed unless MESSAGE (one whole message, its fixed header first) keeps every length
    inside itself and its body matches its signature's layout."""
    if len(message) < HEADER or size(message) != len(message):
        raise Malformed("whose length is not its header's")
    walk = _Walk(message, "<" if message[:1] == b"l" else ">")
    fields = walk._length(12)
    pos, stop = HEADER, walk._take(HEADER, fields)
    body_sig = ""
    while pos < stop:  # as dbus-fast reads them: a field wherever the array's length is not reached yet
        pos += -pos % 8
        walk._take(pos, 1)
        code = message[pos]
        inner, at = walk._signature(pos + 1)
        end, pos = walk.value(inner, 0, at, 1)
        if end != len(inner):
            raise Malformed("with a header field of more than one type")
        if _FIELD_TYPES.get(code, inner) != inner or len(inner) != 1:  # dbus-fast reads others by
            raise Malformed(f"with header field {code} of a type not its own")  # their type's first letter
        if code == _SIGNATURE_FIELD:
            body_sig = walk._signature(at)[0]
    if pos != stop:
        raise Malformed("with header fields that overrun their length")
    start = stop + (-stop % 8)  # size() made start + body_size the message's length
    if walk.values(body_sig, start) != len(message):
        raise Malformed("whose body is not its signature")
