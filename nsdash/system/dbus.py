"""D-Bus on the system bus: its address and one method call with a timeout.

Each call opens its own short-lived connection: nsdash talks to the bus a
handful of times per machine lifetime, and a private connection keeps the
callers free of a shared event loop.  The calls go through the blocking
client in nsdash.system.dbuswire: `nsdash list` asks machined on every run,
and asyncio with dbus-fast cost it more than everything else it does.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from nsdash.system import dbuswire

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


def variant(signature: str, value: Any) -> dbuswire.Variant:
    """A D-Bus variant (for a(sv) property lists)."""
    return dbuswire.Variant(signature, value)


def plain(value: Any) -> Any:
    """A reply value with its variants unwrapped (the blocking client returns them bare already)."""
    return value.value if isinstance(value, dbuswire.Variant) else value


def call(destination: str, path: str, interface: str, member: str, signature: str = "",
         body: list[Any] | None = None, timeout: float = TIMEOUT,
         unix_fds: list[int] | None = None, address: str | None = None) -> list[Any]:
    """One method call on the system bus (or the bus at ADDRESS, a machine's own, say);
    BusError on an error reply, no bus or timeout.
    UNIX_FDS travel with the message; an 'h' argument in BODY is an index into them."""
    where = _socket_path(address or system_bus_address())
    if where is None or not os.path.exists(where):
        raise BusError("nsdash.NoBus", "no system bus is running" if address is None else f"no bus at {address}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(where)
        except OSError:
            raise BusError("nsdash.NoBus", "no system bus is running") from None
        try:
            conn = dbuswire.Connection(sock, timeout, unix_fds=bool(unix_fds))
        except TimeoutError:
            raise BusError("nsdash.Timeout", f"the system bus did not answer within {timeout:.0f} s") from None
        except (OSError, EOFError, dbuswire.WireError) as e:
            raise BusError("nsdash.NoBus", f"cannot connect to the system bus: {e}") from None
        try:
            return conn.call(destination, path, interface, member, signature, body or [], unix_fds or ())
        except dbuswire.WireError as e:
            raise BusError(e.name, e.text or "") from None
        except TimeoutError:
            raise BusError("nsdash.Timeout", f"{destination} did not answer {member} within {timeout:.0f} s") from None
        except (OSError, EOFError) as e:
            raise BusError("nsdash.NoBus", f"lost the system bus: {e}") from None
    finally:
        sock.close()
