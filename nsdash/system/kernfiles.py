"""One value from a small file the host's kernel serves (/proc/sys, /sys, cgroupfs, /proc/PID).

Such files hold a line or two (`1`, `max 100000`, a comm, a loop device's backing
path), so the read is bounded: a file longer than LIMIT is not a value and reads as
None, like one that is missing or refused.  The open never blocks (O_NONBLOCK: a
FIFO at a sysctl's path answers at once) and the text is decoded as os.fsdecode
does, so a backing path that is not UTF-8 comes back whole instead of raising.
Files a machine controls are not read here: those go through confined.
"""

from __future__ import annotations

import posix

LIMIT = 8192  # a loop device's backing path is up to PATH_MAX (4096) and its newline


def read_value(path: str, limit: int = LIMIT) -> str | None:
    """PATH's text less its trailing newline, or None when it cannot be read or is longer than LIMIT."""
    try:
        fd = posix.open(path, posix.O_RDONLY | posix.O_NONBLOCK | posix.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = b""
        # procfs' seq files may hand the text over in pieces; sysfs hands it in one
        while chunk := posix.read(fd, limit + 1 - len(data)):
            data += chunk
            if len(data) > limit:
                return None
    except OSError:
        return None
    finally:
        posix.close(fd)
    return data.rstrip(b"\n").decode("utf-8", "surrogateescape")
