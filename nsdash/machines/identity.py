"""Who a machine is, as the host may learn it: os-release, machine ID, shared namespaces.

Everything here that comes from inside a machine is read through
nsdash.system.confined (resolved in the machine's root, regular files only,
bounded), so a guest's symlink, FIFO or /dev/zero in place of its os-release or
machine-id is an error for that machine, never a host file, a hang or a flood.
"""

from __future__ import annotations

import os

from nsdash.system import confined
from nsdash.system.idfiles import normalise_id, parse_os_release
from nsdash.system.namespaces import shares_host_namespace  # the one copy, shared with the launcher

__all__ = ["machine_id", "normalise_id", "os_release", "parse_os_release", "shares_host_namespace"]

OS_RELEASE_PATHS = ("/etc/os-release", "/usr/lib/os-release")


def os_release(root: str | os.PathLike[str] | int) -> dict[str, str]:
    """The machine's os-release (etc/ first, then usr/lib/, as systemd looks), confined to ROOT.

    ROOT is the machine's root: /proc/LEADER/root while it runs, its tree
    otherwise (or an O_PATH fd on either).  {} when there is none; an OSError
    when a file is there but refused (a FIFO, a device, too big), so the caller
    can show an error for this machine alone.
    """
    for path in OS_RELEASE_PATHS:
        try:
            return parse_os_release(confined.read_bytes(root, path))
        except FileNotFoundError:
            continue  # a refused file is not a missing one: that error is the caller's to show
    return {}


def machine_id(root: str | os.PathLike[str] | int) -> str | None:
    """ROOT's /etc/machine-id as 32 hex digits, or None (missing, empty, refused, malformed)."""
    try:
        return normalise_id(confined.read_text(root, "/etc/machine-id", limit=256))
    except OSError:
        return None


