"""D-Bus connection helpers (dbus-fast): the system bus address, calls with timeouts.

Each call opens its own short-lived connection: nsdash talks to the bus a
handful of times per machine lifetime, and a private connection keeps the
callers free of a shared event loop.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

DEFAULT_SYSTEM_BUS = "unix:path=/run/dbus/system_bus_socket"
TIMEOUT = 3.0


class BusError(Exception):
    """A D-Bus error reply, or no bus at all (name 'nsdash.NoBus')."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


def system_bus_address() -> str:
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", DEFAULT_SYSTEM_BUS)


def _socket_path(address: str) -> str | None:
    for part in address.split(";"):
        if part.startswith("unix:"):
            for kv in part[5:].split(","):
                if kv.startswith("path="):
                    return kv[5:]
    return None


def system_bus_reachable() -> bool:
    """Cheap check before a real call: is anything listening on the bus socket?"""
    path = _socket_path(system_bus_address())
    if path is None or not os.path.exists(path):
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def variant(signature: str, value: Any) -> Any:
    """A D-Bus variant (for a(sv) property lists), without callers importing dbus-fast."""
    from dbus_fast import Variant

    return Variant(signature, value)


def plain(value: Any) -> Any:
    """A reply value with its variants unwrapped."""
    from dbus_fast import Variant

    return value.value if isinstance(value, Variant) else value


async def _call(destination: str, path: str, interface: str, member: str,
                signature: str, body: list[Any], unix_fds: list[int]) -> list[Any]:
    from dbus_fast import Message, MessageType
    from dbus_fast.aio import MessageBus

    try:
        bus = await MessageBus(bus_address=system_bus_address(), negotiate_unix_fd=bool(unix_fds)).connect()
    except (OSError, EOFError) as e:
        raise BusError("nsdash.NoBus", f"cannot connect to the system bus: {e}") from None
    try:
        reply = await bus.call(Message(destination=destination, path=path, interface=interface,
                                       member=member, signature=signature, body=body, unix_fds=unix_fds))
    finally:
        bus.disconnect()
    assert reply is not None
    if reply.message_type == MessageType.ERROR:
        raise BusError(reply.error_name or "unknown", str(reply.body[0]) if reply.body else "")
    return list(reply.body)


def call(destination: str, path: str, interface: str, member: str, signature: str = "",
         body: list[Any] | None = None, timeout: float = TIMEOUT,
         unix_fds: list[int] | None = None) -> list[Any]:
    """One method call on the system bus; BusError on an error reply, no bus or timeout.
    UNIX_FDS travel with the message; an 'h' argument in BODY is an index into them."""
    if not system_bus_reachable():
        raise BusError("nsdash.NoBus", "no system bus is running")
    coro = _call(destination, path, interface, member, signature, body or [], list(unix_fds or ()))
    try:
        return asyncio.run(asyncio.wait_for(coro, timeout))
    except TimeoutError:
        raise BusError("nsdash.Timeout", f"{destination} did not answer {member} within {timeout:.0f} s") from None
