"""Is a booted systemd guest healthy?  Its own manager says, over the guest's own bus.

The engine asks once the guest has said READY=1 and then on a slow timer, from a
helper thread (D-Bus is slow to import; the guest may be slow to answer).  The
bus socket is looked up inside the machine's root with openat2 RESOLVE_IN_ROOT
(a planted symlink must not connect us to the host's own bus) and connected
through /proc/self/fd/N, as nsdash.inside.bus does for the dashboard.
"""

from __future__ import annotations

import contextlib
import os

from nsdash.system import dbus
from nsdash.system.syscalls import O_PATH, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2

BUS_SOCKET = "run/dbus/system_bus_socket"
TIMEOUT = 5.0


def system_state(leader: int, timeout: float = TIMEOUT) -> str | None:
    """The guest manager's SystemState (running, degraded, starting, ...), or None when its bus
    cannot be reached or does not answer in time (no dbus in the tree, say): then unknown."""
    try:
        root = os.open(f"/proc/{leader}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fd = openat2(root, BUS_SOCKET, O_PATH, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
        except OSError:
            return None
        try:
            body = dbus.call("org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                             "org.freedesktop.DBus.Properties", "Get", "ss",
                             ["org.freedesktop.systemd1.Manager", "SystemState"], timeout=timeout,
                             address=f"unix:path=/proc/self/fd/{fd}")
        except Exception:  # noqa: BLE001 - the guest's bus may answer anything: then its health is unknown
            return None
        finally:
            os.close(fd)
    finally:
        with contextlib.suppress(OSError):
            os.close(root)
    value = dbus.plain(body[0]) if body else None  # plain calls come back unwrapped
    return value if isinstance(value, str) else None
