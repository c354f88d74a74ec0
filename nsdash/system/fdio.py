"""Writing to a descriptor: the one loop for every caller that must get all its bytes out."""

from __future__ import annotations

import os


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of DATA to FD (a blocking descriptor): os.write may take only part of it."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
