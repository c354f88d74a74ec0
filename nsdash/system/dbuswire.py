"""A blocking D-Bus client for plain method calls: no event loop, no signals, few imports.

Read-only commands (`nsdash list`, `systemctl -M M list-units`/`status`) make
one to three method calls and exit.  Through dbus-fast they paid for asyncio,
ssl, logging and dbus-fast's introspection and service modules on every run,
several times the whole work of the C tools they stand beside.  This module
speaks the wire protocol itself (D-Bus specification, "Message Protocol"):
EXTERNAL authentication, Hello, then calls whose replies it reads in order.

Values come back as dbus-fast returns them, so callers see one shape: structs
as tuples, arrays as lists, dict entries as dicts, 'ay' as bytes, object paths and
signatures as str; variants are unwrapped to their value (dbus-fast wraps them
in a Variant, which every caller here unwraps anyway).
Commands that wait for signals (systemctl start/stop, registration's loop)
keep dbus-fast.
"""

from __future__ import annotations

import os
import socket
import struct

TYPE_CHECKING = False  # mypy takes this as true; at run time typing stays unimported (a fast path)
if TYPE_CHECKING:
    from typing import Any

# Message types and header fields (specification: "Message Format").
METHOD_CALL, METHOD_RETURN, ERROR, SIGNAL = 1, 2, 3, 4
F_PATH, F_INTERFACE, F_MEMBER, F_ERROR_NAME, F_REPLY_SERIAL, F_DESTINATION, F_SENDER, F_SIGNATURE = range(1, 9)

_ALIGN = {"y": 1, "b": 4, "n": 2, "q": 2, "i": 4, "u": 4, "x": 8, "t": 8, "d": 8, "h": 4,
          "s": 4, "o": 4, "g": 1, "v": 1, "a": 4, "(": 8, "{": 8}
_FIXED = {"y": "B", "b": "I", "n": "h", "q": "H", "i": "i", "u": "I", "x": "q", "t": "Q", "d": "d", "h": "I"}
_MAX_MESSAGE = 128 * 1024 * 1024  # the specification's limit


class WireError(Exception):
    """An error reply: NAME is the D-Bus error name, TEXT its message (None when it has none)."""

    def __init__(self, name: str, text: str | None) -> None:
        super().__init__(f"{name}: {text}")
        self.name = name
        self.text = text


def _split(signature: str) -> list[str]:
    """'sa{sv}(ii)' -> ['s', 'a{sv}', '(ii)']: the single complete types in order."""
    out: list[str] = []
    i = 0
    while i < len(signature):
        j = _end(signature, i)
        out.append(signature[i:j])
        i = j
    return out


def _end(sig: str, i: int) -> int:
    """Index just past the single complete type starting at I."""
    c = sig[i]
    if c == "a":
        return _end(sig, i + 1)
    if c in "({":
        close = ")" if c == "(" else "}"
        depth, j = 0, i
        while True:
            if sig[j] in "({":
                depth += 1
            elif sig[j] in ")}":
                depth -= 1
                if depth == 0:
                    return j + 1
            j += 1
            if j >= len(sig):
                raise ValueError(f"unbalanced signature {sig!r} (no {close!r})")
    return i + 1


# ------------------------------------------------------------------ marshalling

class _Writer:
    def __init__(self) -> None:
        self.buf = bytearray()

    def pad(self, n: int) -> None:
        self.buf += b"\0" * (-len(self.buf) % n)

    def write(self, t: str, value: Any) -> None:
        c = t[0]
        self.pad(_ALIGN[c])
        if c in _FIXED:
            self.buf += struct.pack("<" + _FIXED[c], value)
        elif c in "so":
            data = str(value).encode()
            self.buf += struct.pack("<I", len(data)) + data + b"\0"
        elif c == "g":
            data = str(value).encode()
            self.buf += bytes((len(data),)) + data + b"\0"
        elif c == "a":
            self._array(t[1:], value)
        elif c in "({":
            for sub, item in zip(_split(t[1:-1]), value, strict=True):
                self.write(sub, item)
        elif c == "v":
            sig, inner = value
            self.write("g", sig)
            self.write(sig, inner)
        else:
            raise ValueError(f"cannot marshal type {t!r}")

    def _array(self, elem: str, value: Any) -> None:
        at = len(self.buf)
        self.buf += b"\0\0\0\0"
        self.pad(_ALIGN[elem[0]])
        start = len(self.buf)
        if elem == "y":
            self.buf += bytes(value)
        elif elem[0] == "{":
            for item in value.items():
                self.write(elem, item)
        else:
            for item in value:
                self.write(elem, item)
        struct.pack_into("<I", self.buf, at, len(self.buf) - start)


def message(serial: int, destination: str, path: str, interface: str, member: str,
            signature: str = "", body: list[object] | tuple[object, ...] = ()) -> bytes:
    """One METHOD_CALL message, little-endian."""
    payload = _Writer()
    for t, v in zip(_split(signature), body, strict=True):
        payload.write(t, v)
    fields: list[tuple[int, tuple[str, object]]] = [
        (F_PATH, ("o", path)), (F_INTERFACE, ("s", interface)), (F_MEMBER, ("s", member)),
        (F_DESTINATION, ("s", destination))]
    if signature:
        fields.append((F_SIGNATURE, ("g", signature)))
    head = _Writer()
    head.buf += struct.pack("<cBBBII", b"l", METHOD_CALL, 0, 1, len(payload.buf), serial)
    head.write("a(yv)", fields)
    head.pad(8)
    return bytes(head.buf + payload.buf)


# ------------------------------------------------------------------ unmarshalling

class _Reader:
    def __init__(self, data: bytes, endian: str) -> None:
        self.data = data
        self.pos = 0
        self.endian = endian

    def align(self, n: int) -> None:
        self.pos += -self.pos % n

    def read(self, t: str) -> Any:
        c = t[0]
        self.align(_ALIGN[c])
        if c in _FIXED:
            fmt = self.endian + _FIXED[c]
            (value,) = struct.unpack_from(fmt, self.data, self.pos)
            self.pos += struct.calcsize(fmt)
            return bool(value) if c == "b" else value
        if c in "so":
            (n,) = struct.unpack_from(self.endian + "I", self.data, self.pos)
            self.pos += 4 + n + 1
            return self.data[self.pos - n - 1:self.pos - 1].decode()
        if c == "g":
            n = self.data[self.pos]
            self.pos += 1 + n + 1
            return self.data[self.pos - n - 1:self.pos - 1].decode()
        if c == "a":
            return self._array(t[1:])
        if c == "(":
            return tuple(self.read(sub) for sub in _split(t[1:-1]))
        if c == "v":
            sig = str(self.read("g"))
            return self.read(sig)
        raise ValueError(f"cannot unmarshal type {t!r}")

    def _array(self, elem: str) -> Any:
        (n,) = struct.unpack_from(self.endian + "I", self.data, self.pos)
        self.pos += 4
        self.align(_ALIGN[elem[0]])
        end = self.pos + n
        if elem == "y":
            self.pos = end
            return self.data[end - n:end]
        if elem[0] == "{":
            key_t, value_t = _split(elem[1:-1])
            d: dict[object, object] = {}
            while self.pos < end:
                self.align(8)
                key = self.read(key_t)
                d[key] = self.read(value_t)
            return d
        items = []
        while self.pos < end:
            items.append(self.read(elem))
        return items


# ------------------------------------------------------------------ the connection

class Connection:
    """One authenticated connection on a connected stream socket; blocking, with a timeout per call."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock = sock
        self.timeout = timeout
        self.serial = 0
        self.unique_name: str | None = None
        self._buf = b""
        sock.settimeout(timeout)
        # EXTERNAL: the server reads our credentials from the socket; we name our uid in hex digits.
        sock.sendall(b"\0AUTH EXTERNAL " + str(os.geteuid()).encode().hex().encode() + b"\r\n")
        line = self._line()
        if not line.startswith(b"OK "):
            raise WireError("org.freedesktop.DBus.Error.AuthFailed", line.decode(errors="replace").strip())
        sock.sendall(b"BEGIN\r\n")
        (name,) = self.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "Hello")
        self.unique_name = str(name)

    def close(self) -> None:
        self.sock.close()

    def call(self, destination: str, path: str, interface: str, member: str,
             signature: str = "", body: list[object] | tuple[object, ...] = ()) -> list[object]:
        """Send one call, return the reply's body; WireError on an error reply, TimeoutError, OSError/EOFError."""
        self.serial += 1
        self.sock.sendall(message(self.serial, destination, path, interface, member, signature, body))
        while True:
            kind, fields, values = self._message()
            if fields.get(F_REPLY_SERIAL) != self.serial or kind not in (METHOD_RETURN, ERROR):
                continue  # a signal (NameAcquired) or a stray reply: not ours
            if kind == ERROR:
                text = values[0] if values and isinstance(values[0], str) else None
                raise WireError(str(fields.get(F_ERROR_NAME, "unknown")), text)
            return values

    def _recv(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self._buf)))
            if not chunk:
                raise EOFError("the bus closed the connection")
            self._buf += chunk
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def _line(self) -> bytes:
        while b"\r\n" not in self._buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError("the bus closed the connection during authentication")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\r\n")
        return line

    def _message(self) -> tuple[int, dict[int, object], list[object]]:
        fixed = self._recv(16)
        endian = "<" if fixed[:1] == b"l" else ">"
        kind = fixed[1]
        body_len, _serial, fields_len = struct.unpack(endian + "III", fixed[4:16])
        head_len = 16 + fields_len + (-(16 + fields_len) % 8)
        if head_len + body_len > _MAX_MESSAGE:
            raise EOFError("the bus sent an oversized message")
        rest = self._recv(head_len - 16 + body_len)
        reader = _Reader(fixed + rest, endian)
        reader.pos = 12
        fields = {code: value for code, value in reader.read("a(yv)")}
        reader.pos = head_len
        signature = str(fields.get(F_SIGNATURE, ""))
        values = [reader.read(t) for t in _split(signature)]
        return kind, fields, values
