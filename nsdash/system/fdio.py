"""Writing to a descriptor: the one loop for every caller that must get all its bytes out, and
whether a descriptor takes writes at all."""

from __future__ import annotations

import fcntl
import os


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of DATA to FD (a blocking descriptor): os.write may take only part of it."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def writable(fd: int) -> bool:
    """Whether FD takes writes: open, and not read-only (`1</dev/null`; the CLI puts a read-only
    /dev/null on a closed 0-2, so writes fail as to a closed one)."""
    try:
        return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY
    except OSError:
        return False
