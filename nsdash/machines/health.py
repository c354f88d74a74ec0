"""Is a booted systemd guest healthy?  Its own manager says, over the guest's own bus.

The engine asks once the guest has said READY=1 and then on a slow timer, from a
helper thread (the guest may be slow to answer).  The bus socket is looked up
inside the machine's root (system/confined: as openat2 RESOLVE_IN_ROOT; a planted
symlink must not connect us to the host's own bus) and connected through
/proc/self/fd/N, as nsdash.inside.bus does for the dashboard; the exchange is
bounded in time and bytes as the supervisor's bus-calls are (machines/busguard.py).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time

from nsdash.machines.busguard import Guarded
from nsdash.system import confined

BUS_SOCKET = "run/dbus/system_bus_socket"
TIMEOUT = 5.0
REPLY_MAX = 64 * 1024  # bytes read from the guest per check: SystemState's answer is under 200


def system_state(leader: int, timeout: float = TIMEOUT) -> str | None:
    """The guest manager's SystemState (running, degraded, starting, ...), or None when its bus
    cannot be reached or does not answer in time (no dbus in the tree, say): then unknown.

    The guest's bus is whatever root inside put at that path: it may promise a 128 MiB message
    (dbus-fast's limit), which unmarshalled as empty arrays took this process to 3.6 GB for 36 s
    past its 5 s timeout.  So the call goes over the bus-call worker's guarded socket: one
    deadline for the whole exchange, and at most REPLY_MAX bytes read."""
    try:
        root = os.open(f"/proc/{leader}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fd = confined.open_path_in_root(root, BUS_SOCKET)
        except OSError:
            return None
    finally:
        with contextlib.suppress(OSError):
            os.close(root)
    guard = Guarded(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC))
    guard.arm(time.monotonic() + timeout, REPLY_MAX)
    try:
        from nsdash.system import dbuswire

        guard.connect(f"/proc/self/fd/{fd}")
        body = dbuswire.Connection(guard, 0).call(
            "org.freedesktop.systemd1", "/org/freedesktop/systemd1", "org.freedesktop.DBus.Properties",
            "Get", "ss", ["org.freedesktop.systemd1.Manager", "SystemState"])
    except Exception:  # noqa: BLE001 - the guest's bus may answer anything: then its health is unknown
        return None
    finally:
        os.close(fd)
        guard.close()
    value = body[0] if body else None  # dbuswire returns values unwrapped
    return value if isinstance(value, str) else None
