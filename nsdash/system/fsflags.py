"""The inode flags chattr(1) sets (FS_IOC_GETFLAGS / FS_IOC_SETFLAGS), one wrapper each.

machinectl marks a directory image read-only with the immutable flag rather
than its mode: the top directory's mode is the container's own `/` and must
not change.
"""

from __future__ import annotations

import fcntl
import os
import struct

# linux/fs.h: _IOR('f', 1, long) and _IOW('f', 2, long) on a 64-bit kernel
FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_IMMUTABLE_FL = 0x00000010


def get_flags(path: str | os.PathLike[str]) -> int:
    """PATH's inode flags (raises OSError, e.g. ENOTTY where the file system has none)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        # the kernel reads and writes an int whatever the ioctl number says
        return int(struct.unpack("i4x", fcntl.ioctl(fd, FS_IOC_GETFLAGS, bytes(8)))[0])
    finally:
        os.close(fd)


def set_flags(path: str | os.PathLike[str], flags: int) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("i4x", flags))
    finally:
        os.close(fd)


def is_immutable(path: str | os.PathLike[str]) -> bool:
    try:
        return bool(get_flags(path) & FS_IMMUTABLE_FL)
    except OSError:
        return False


def set_immutable(path: str | os.PathLike[str], on: bool) -> None:
    flags = get_flags(path)
    wanted = flags | FS_IMMUTABLE_FL if on else flags & ~FS_IMMUTABLE_FL
    if wanted != flags:
        set_flags(path, wanted)
