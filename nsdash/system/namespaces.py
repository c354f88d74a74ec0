"""Whether a process shares one of its namespaces with us: the one copy of that check."""

from __future__ import annotations

import posix


def shares_host_namespace(pid: int | str, ns: str, proc: str = "/proc") -> bool | None:
    """True if process PID (under PROC) shares namespace NS (net, user, ...) with us; None if it is gone."""
    try:
        theirs = posix.stat(f"{proc}/{pid}/ns/{ns}")
        ours = posix.stat(f"/proc/self/ns/{ns}")
    except OSError:
        return None
    return (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)
