"""A blocking D-Bus connection for plain method calls, on dbus-fast's own marshalling.

Read-only commands (`nsdash list`, `systemctl -M M list-units`/`status`) make
one to three method calls and exit.  dbus-fast's MessageBus needs asyncio and
its package import pulls in the introspection, service and message-bus
modules: several times the whole work of the C tools nsdash stands beside.
So this module uses only the parts of dbus-fast that build and read messages
(Message, Variant, the unmarshaller, the EXTERNAL authenticator), loaded
without running the package's __init__, over a blocking socket: dbus-fast
still does all the D-Bus encoding, nsdash only sends and receives bytes.

Values come back as dbus-fast returns them, with variants unwrapped (callers
here want the values).  Commands that wait for signals (systemctl start/stop,
registration's loop) use dbus-fast's MessageBus as usual.
"""

from __future__ import annotations

import errno
import os
import socket
import sys

from nsdash.system import dbuscheck

TYPE_CHECKING = False  # mypy takes this as true; at run time typing stays unimported (a fast path)
if TYPE_CHECKING:
    from typing import Any


def _load_dbus_fast_parts() -> None:
    """Import dbus-fast's message modules without its package __init__ (asyncio, introspection,
    services: ~25 ms a command).  A later plain `import dbus_fast` reuses these same modules."""
    if "dbus_fast" in sys.modules:
        return
    import importlib
    import importlib.machinery
    import types

    spec = importlib.machinery.PathFinder.find_spec("dbus_fast")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("dbus-fast is not installed")
    stub = types.ModuleType("dbus_fast")
    stub.__path__ = list(spec.submodule_search_locations)
    stub.__spec__ = spec
    sys.modules["dbus_fast"] = stub
    try:
        # In the package's own order: errors first (it imports message, message signature).
        for name in ("errors", "message", "_private.unmarshaller", "auth", "unpack"):
            importlib.import_module(f"dbus_fast.{name}")
    finally:
        del sys.modules["dbus_fast"]  # the real package loads, on demand, over these modules


_load_dbus_fast_parts()

from dbus_fast._private.unmarshaller import Unmarshaller  # noqa: E402
from dbus_fast.auth import AuthExternal  # noqa: E402
from dbus_fast.constants import MessageType  # noqa: E402
from dbus_fast.message import Message  # noqa: E402
from dbus_fast.signature import Variant  # noqa: E402
from dbus_fast.unpack import unpack_variants  # noqa: E402

__all__ = ["Connection", "Variant", "WireError"]
_MAX_LINE = 4096
_MESSAGE_MAX = 128 << 20  # the specification's (and dbus-fast's) largest message


class WireError(Exception):
    """An error reply: NAME is the D-Bus error name, TEXT its message (None when it has none)."""

    def __init__(self, name: str, text: str | None) -> None:
        super().__init__(f"{name}: {text}")
        self.name = name
        self.text = text


def timed_out(text: str = "timed out") -> TimeoutError:
    """A timeout with its errno: dbus-fast's compiled unmarshaller takes an OSError's errno as a
    C int, and a socket timeout's errno (None) became a TypeError in there."""
    return TimeoutError(errno.ETIMEDOUT, text)


class _Reads:
    """SOCK's reads for dbus-fast's unmarshaller, a whole message at a time.

    Its compiled code takes an OSError's errno as a C int: a socket timeout's
    errno is None, which became a TypeError in there (a bus that stalls
    mid-reply), so timeouts are raised again with ETIMEDOUT.  And it wraps its
    32-bit read position on a length near 2**32 inside a message (SIGSEGV), so
    recv() hands it only messages that system/dbuscheck has read whole and
    found sound (the bus is the guest's for every caller but system/dbus.py,
    whose descriptors come through recvmsg, unchecked: that bus is the host's).
    """

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self._ready = b""  # the checked message's bytes not yet handed on
        self._partial = bytearray()  # the next message as far as it came (a timeout keeps it)

    def recv(self, size: int) -> bytes:
        if not self._ready:
            try:
                self._ready = self._message()
            except dbuscheck.Malformed as e:  # an OSError as a reset is: the connection is done
                raise OSError(errno.EBADMSG, f"the bus sent a message {e}") from None
        data, self._ready = self._ready[:size], self._ready[size:]
        return data

    def _message(self) -> bytes:
        """The next whole message, checked; b"" when the bus closed between messages."""
        need = dbuscheck.HEADER
        while len(self._partial) < need:
            data = self._read(min(need - len(self._partial), 65536))
            if not data:
                if self._partial:
                    raise EOFError("the bus closed in the middle of a message")
                return b""
            self._partial += data
            if len(self._partial) >= dbuscheck.HEADER:
                need = dbuscheck.size(bytes(self._partial[:dbuscheck.HEADER]))
                if need > _MESSAGE_MAX:
                    raise dbuscheck.Malformed(f"over {_MESSAGE_MAX} bytes")
        message, self._partial = bytes(self._partial), bytearray()
        dbuscheck.check(message)
        return message

    def _read(self, size: int) -> bytes:
        try:
            data: bytes = self.sock.recv(size)
        except TimeoutError as e:
            raise timed_out(str(e) or "timed out") from None
        return data

    def recvmsg(self, size: int, ancillary: int) -> Any:
        try:
            return self.sock.recvmsg(size, ancillary)
        except TimeoutError as e:
            raise timed_out(str(e) or "timed out") from None


class Connection:
    """One authenticated connection on a connected stream socket; blocking, with a timeout per call."""

    def __init__(self, sock: Any, timeout: float, unix_fds: bool = False) -> None:
        """SOCK: a socket.socket, or an object with its settimeout, sendall, recv and close (the
        supervisor's deadline-guarded socket, machines/busproxy.py).  UNIX_FDS: ask the bus to
        carry file descriptors (NEGOTIATE_UNIX_FD)."""
        self.sock = sock
        self.timeout = timeout
        self.serial = 0
        self.unique_name: str | None = None
        self._unix_fds = unix_fds
        sock.settimeout(timeout)
        self._authenticate()
        reads: Any = _Reads(sock)  # duck-typed: the unmarshaller calls only recv/recvmsg
        self._reader = Unmarshaller(None, reads, unix_fds)
        (name,) = self.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "Hello")
        self.unique_name = str(name)

    def _authenticate(self) -> None:
        auth = AuthExternal(os.geteuid())
        self.sock.sendall(b"\0" + auth._authentication_start(self._unix_fds).encode() + b"\r\n")
        while True:
            reply = self._line()
            try:
                answer = auth._receive_line(reply)
            except Exception as e:  # noqa: BLE001 - dbus-fast's AuthError and its kin
                raise WireError("org.freedesktop.DBus.Error.AuthFailed", f"{reply}: {e}") from None
            self.sock.sendall(answer.encode() + b"\r\n")
            if answer == "BEGIN":
                return

    def _line(self) -> str:
        """One line of the authentication exchange, read a byte at a time: what follows
        BEGIN is the message stream, which the unmarshaller reads from the socket itself."""
        line = bytearray()
        while not line.endswith(b"\r\n"):
            byte = self.sock.recv(1)
            if not byte:
                raise EOFError("the bus closed the connection during authentication")
            line += byte
            if len(line) > _MAX_LINE:
                raise EOFError("the bus sent an overlong authentication line")
        return line[:-2].decode(errors="replace")

    def close(self) -> None:
        self.sock.close()

    def call(self, destination: str, path: str, interface: str, member: str,
             signature: str = "", body: list[object] | tuple[object, ...] = (),
             unix_fds: list[int] | tuple[int, ...] = ()) -> list[Any]:
        """Send one call, return the reply's body; WireError on an error reply, TimeoutError, OSError/EOFError.

        UNIX_FDS go with the message (the connection must have been opened with unix_fds=True);
        an 'h' argument in BODY is an index into them."""
        self.serial += 1
        msg = Message(destination=destination, path=path, interface=interface, member=member,
                      signature=signature, body=list(body), serial=self.serial, unix_fds=list(unix_fds))
        data = bytes(msg._marshall(self._unix_fds))
        if unix_fds:
            sent = socket.send_fds(self.sock, [data], list(unix_fds))
            if sent < len(data):
                self.sock.sendall(data[sent:])
        else:
            self.sock.sendall(data)
        while True:
            reply = self._next()
            if reply.reply_serial != self.serial or reply.message_type not in (
                    MessageType.METHOD_RETURN, MessageType.ERROR):
                continue  # a signal (NameAcquired) or a stray reply: not ours
            if reply.message_type == MessageType.ERROR:
                text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else None
                raise WireError(reply.error_name or "unknown", text)
            return list(unpack_variants(list(reply.body)))

    def _next(self) -> Message:
        while True:
            try:
                message = self._reader.unmarshall()
            except (ValueError, LookupError, TypeError, ArithmeticError) as e:
                # dbuscheck passed it, dbus-fast refused it (a string that is not UTF-8, a
                # signature its parser refuses, an unknown message type: its errors are
                # ValueErrors): the guest's garbage ends the connection as a reset does, so
                # every caller's OSError path reports it, never a traceback
                raise OSError(errno.EBADMSG, f"the bus sent a message dbus-fast could not read "
                                             f"({type(e).__name__}: {str(e)[:200]})") from None
            if message is not None:
                return message
