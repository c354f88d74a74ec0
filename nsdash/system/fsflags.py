"""The inode flags chattr(1) sets (FS_IOC_GETFLAGS / FS_IOC_SETFLAGS), one wrapper each.

machinectl marks a directory image read-only with the immutable flag rather
than its mode: the top directory's mode is the container's own `/` and must
not change.
"""

from __future__ import annotations

import fcntl
import posix
import struct

TYPE_CHECKING = False  # mypy reads this as True: os names a type here, posix serves the calls
if TYPE_CHECKING:
    import os

# linux/fs.h: _IOR('f', 1, long) and _IOW('f', 2, long) on a 64-bit kernel
FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_IMMUTABLE_FL = 0x00000010


def get_flags(path: str | os.PathLike[str], follow: bool = False) -> int:
    """PATH's inode flags (raises OSError, e.g. ENOTTY where the file system has none); FOLLOW:
    a symlink's target's."""
    fd = posix.open(path, posix.O_RDONLY | (0 if follow else posix.O_NOFOLLOW) | posix.O_CLOEXEC | posix.O_NONBLOCK)
    try:
        # the kernel reads and writes an int whatever the ioctl number says
        return int(struct.unpack("i4x", fcntl.ioctl(fd, FS_IOC_GETFLAGS, bytes(8)))[0])
    finally:
        posix.close(fd)


def set_flags(path: str | os.PathLike[str], flags: int) -> None:
    fd = posix.open(path, posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC | posix.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("i4x", flags))
    finally:
        posix.close(fd)


def is_immutable(path: str | os.PathLike[str], follow: bool = False) -> bool:
    try:
        return bool(get_flags(path, follow) & FS_IMMUTABLE_FL)
    except OSError:
        return False


def set_immutable(path: str | os.PathLike[str], on: bool) -> None:
    flags = get_flags(path)
    wanted = flags | FS_IMMUTABLE_FL if on else flags & ~FS_IMMUTABLE_FL
    if wanted != flags:
        set_flags(path, wanted)
