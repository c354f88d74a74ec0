"""A machine's bus through its supervisor: `bus-call` requests on the control socket (PROTOCOL.md).

The read-only `nsdash systemctl -M M` verbs make their method calls here: the
supervisor speaks D-Bus to the guest (machines/busproxy.py) and answers with
the reply's body as JSON, so the command imports neither dbus-fast nor the
stdlib modules its marshalling needs (re, enum, typing, socket.py), nor json:
the socket is _socket's, the lines are read with json's C scanner
(system/jsontext) and written by system/jsontext.encode.

open() answers None when the machine has no nsdash supervisor that makes
bus-calls (a machine registered with machined by another tool, an older
supervisor, a machine with -U); the caller then speaks to the bus itself.
"""

from __future__ import annotations

import _socket

from nsdash.machines.busguard import BUS_REPLY_MAX
from nsdash.machines.protocol import VERSION
from nsdash.machines.state import CONTROL
from nsdash.system import bareos, dbusjson, jsontext
from nsdash.system.paths import machine_path

TYPE_CHECKING = False  # typing stays unimported at run time (the verbs' fast path)
if TYPE_CHECKING:
    from typing import Any

_GRACE = 2.0  # seconds beyond the call's own deadline for the supervisor's answer to arrive


class CallFailed(Exception):
    """The supervisor answered a bus-call with an error: CODE (PROTOCOL.md), MESSAGE, and for
    `bus-error` the D-Bus error NAME."""

    def __init__(self, code: str, message: str, name: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.name = name


class SupervisorBus:
    """One control connection, greeted, on which bus-calls are made one after another."""

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self._id = 0
        # Modules the command will import once answered, imported while it waits for an answer
        # (see _line): the guest's bus takes milliseconds over a GetAll, as long as systemctl
        # status takes to load its journal reader, and the supervisor works on another CPU.
        self.meanwhile: list[str] = []

    @classmethod
    def open(cls, name: str, timeout: float, meanwhile: tuple[str, ...] = ()) -> SupervisorBus | None:
        """The connection to NAME's supervisor, or None if it has none that makes bus-calls.
        MEANWHILE: modules to import while it answers, from its greeting on (self.meanwhile)."""
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        sock.settimeout(timeout)
        try:
            sock.connect(bareos.join(machine_path(name), CONTROL))
            bus = cls(sock)
            bus.meanwhile.extend(meanwhile)
            hello = bus._request({"op": "hello", "version": VERSION}, timeout)
        except (OSError, EOFError, ValueError, CallFailed):
            sock.close()
            # No supervisor (machined's machine), a full backlog, one that spoke nonsense, or one
            # that ended before it greeted (its machine stopping): the caller's own way says why.
            return None
        if not hello.get("bus_call"):
            sock.close()
            return None
        return bus

    def close(self) -> None:
        self.sock.close()

    def call(self, destination: str, path: str, interface: str, member: str, signature: str,
             body: list[Any], timeout: float) -> list[Any]:
        """The reply's body; CallFailed on an error answer, TimeoutError, OSError, EOFError."""
        reply = self._request({"op": "bus-call", "destination": destination, "path": path,
                               "interface": interface, "member": member, "signature": signature,
                               "body": dbusjson.encode(body), "timeout": timeout}, timeout + _GRACE)
        value = reply.get("body")
        if not isinstance(value, list):
            raise CallFailed("malformed", "a bus-call answer without a body")
        return value

    def _request(self, fields: dict[str, Any], timeout: float) -> dict[str, Any]:
        self._id += 1
        fields["id"] = self._id
        self.sock.settimeout(timeout)
        self.sock.sendall(jsontext.encode(fields).encode() + b"\n")
        reply = jsontext.decode(self._line().decode(), dbusjson.decode_hook)
        if not isinstance(reply, dict) or reply.get("id") != self._id:
            raise CallFailed("malformed", "the supervisor answered out of turn")
        if reply.get("ok") is not True:
            raise CallFailed(str(reply.get("error")), str(reply.get("message", "")),
                             reply.get("name") if isinstance(reply.get("name"), str) else None)
        return reply

    def _line(self) -> bytes:
        while True:
            nl = self.buf.find(b"\n")
            if nl >= 0:
                line, self.buf = self.buf[:nl], self.buf[nl + 1:]
                return line
            if len(self.buf) > BUS_REPLY_MAX:
                raise CallFailed("oversized", "the supervisor's answer is too long")
            if self.meanwhile and not self._answered():
                _preload(self.meanwhile.pop(0))  # one module, then look again: the answer comes first
                continue
            data = self.sock.recv(262144)
            if not data:
                raise EOFError("the supervisor closed the connection")
            self.buf += data

    def _answered(self) -> bool:
        """Whether the supervisor's next bytes (or its close, or an error) are here; never waits."""
        timeout = self.sock.gettimeout()
        self.sock.settimeout(0.0)  # (with a timeout, recv would wait for them first)
        try:
            self.sock.recv(1, _socket.MSG_PEEK)
        except BlockingIOError:
            return False
        except OSError:
            return True  # the read that follows meets it and reports it
        finally:
            self.sock.settimeout(timeout)
        return True


def _preload(name: str) -> None:
    """Import module NAME ahead of the command's own import of it, which reports any failure
    where it always did (a failed import leaves nothing behind in sys.modules)."""
    try:  # noqa: SIM105 - contextlib is one module more for the verbs that come here
        __import__(name)
    except Exception:  # noqa: BLE001, S110 - the command's own import of it says what is wrong
        pass
