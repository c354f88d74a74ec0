"""A file's birth time (statx), which os.stat does not give on Linux before Python 3.15's os.statx.

machinectl shows an image's creation time; nsdash ran `stat -c %W` for it.  This module is the
one statx wrapper, apart from nsdash.system.syscalls so that image-status and show-image load
ctypes alone, not the launcher's forty other wrappers.
"""

from __future__ import annotations

import ctypes
import errno
import posix
import sys

AT_FDCWD = -100
STATX_BTIME = 0x800
_STATX_SIZE = 256  # struct statx: stx_mask (u32) at 0, stx_btime's tv_sec (s64) at 80

_libc = ctypes.CDLL("libc.so.6", use_errno=True)  # glibc's name (statx came with glibc 2.28)


def birth_time(path: str) -> float | None:
    """PATH's birth time in whole seconds (symlinks followed), None where the file system keeps
    none; as `stat -c %W` prints it.  OSError where PATH cannot be looked at."""
    statx = getattr(_libc, "statx", None)
    if statx is None:
        raise OSError(errno.ENOSYS, "statx: not in this C library", path)
    buf = ctypes.create_string_buffer(_STATX_SIZE)
    if statx(AT_FDCWD, path.encode(sys.getfilesystemencoding(), "surrogateescape"), 0, STATX_BTIME, buf) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"statx: {posix.strerror(err)}", path)
    raw = buf.raw
    if not int.from_bytes(raw[:4], sys.byteorder) & STATX_BTIME:
        return None
    seconds = int.from_bytes(raw[80:88], sys.byteorder, signed=True)
    return float(seconds) if seconds > 0 else None
