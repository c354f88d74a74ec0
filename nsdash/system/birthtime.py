"""A file's birth time (statx), which os.stat does not give on Linux before Python 3.15's os.statx.

machinectl shows an image's creation time; nsdash ran `stat -c %W` for it.  This module is the
one statx wrapper.  It calls statx through _ctypes, ctypes' own C half, with the three types
ctypes would define for it (an int, a 256-byte buffer, a C function that keeps errno): the
ctypes package's import (os, ctypes' hundred classes) was 12.6 of show-image's 43 million
instructions, _ctypes' is 1.3 (tests/unit/test_imagescan.py compares with `stat -c %W`).
"""

from __future__ import annotations

import _ctypes
import errno
import posix
import sys

AT_FDCWD = -100
STATX_BTIME = 0x800
RTLD_NOW = 2


class _Int(_ctypes._SimpleCData):  # ctypes.c_int
    _type_ = "i"


class _Char(_ctypes._SimpleCData):  # ctypes.c_char
    _type_ = "c"


class _Statx(_ctypes.Array):  # struct statx: stx_mask (u32) at 0, stx_btime's tv_sec (s64) at 80
    _type_ = _Char
    _length_ = 256


class _Function(_ctypes.CFuncPtr):  # what ctypes.CDLL(..., use_errno=True) makes of a name
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = _Int


class _Libc:
    """The C library as CFuncPtr looks functions up in it (by its _handle, as in a ctypes.CDLL)."""

    _handle = _ctypes.dlopen("libc.so.6", RTLD_NOW)  # glibc's name (statx came with glibc 2.28)


def birth_time(path: str) -> float | None:
    """PATH's birth time in whole seconds (symlinks followed), None where the file system keeps
    none; as `stat -c %W` prints it.  OSError where PATH cannot be looked at."""
    try:
        statx = _Function(("statx", _Libc()))  # type: ignore[arg-type]  # (a CDLL by its _handle)
    except AttributeError:  # a C library older than glibc 2.28
        raise OSError(errno.ENOSYS, "statx: not in this C library", path) from None
    buf = _Statx()
    if statx(AT_FDCWD, path.encode(sys.getfilesystemencoding(), "surrogateescape"), 0, STATX_BTIME, buf) < 0:
        err = _ctypes.get_errno()
        raise OSError(err, f"statx: {posix.strerror(err)}", path)
    raw = bytes(buf)
    if not int.from_bytes(raw[:4], sys.byteorder) & STATX_BTIME:
        return None
    seconds = int.from_bytes(raw[80:88], sys.byteorder, signed=True)
    return float(seconds) if seconds > 0 else None
