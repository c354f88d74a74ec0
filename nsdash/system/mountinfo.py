"""Which mount points lie at or below a path, from /proc/self/mountinfo.

mountinfo writes a space, tab, newline and backslash in a mount point as an octal
escape (\\040 ...); the points returned here are unescaped, deepest last in the
file's order (sort by length, longest first, to unmount children before parents).
"""

from __future__ import annotations

import re

_OCTAL = re.compile(r"\\([0-7]{3})")


def unescape(field: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def mounts_under(path: str, mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """Mount points equal to PATH or below it (PATH as given: resolve symlinks first if need be)."""
    path = path.rstrip("/") or "/"
    prefix = path if path == "/" else path + "/"
    found = []
    with open(mountinfo) as f:
        for line in f:
            point = unescape(line.split()[4])
            if point == path or point.startswith(prefix):
                found.append(point)
    return found
