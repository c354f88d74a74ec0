"""Reads of files a machine controls, confined to the machine's root.

Everything in a machine's tree is written by whoever is root inside it, so the
host opens such files only through here: the path is resolved inside the root
(openat2 with RESOLVE_IN_ROOT, so `..` and absolute symlinks stay inside, and
no /proc magic links), symlinks are followed only inside the root (and the last
component not at all where the caller says so), the open never blocks (a FIFO or a device answers at once or not at all), only
regular files (or directories, for directory opens) are accepted, and reads are
bounded in size.  Every refusal is an OSError, as the open would have raised.
"""

from __future__ import annotations

import errno
import os
import stat

from nsdash.system.syscalls import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2

SMALL = 64 * 1024  # os-release, machine-id, hostname, presets: far smaller than this
_RESOLVE = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS


def open_root(root: str | os.PathLike[str]) -> int:
    """An O_PATH fd on a machine's root directory (a tree, or /proc/LEADER/root)."""
    return os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def open_in_root(root_fd: int, path: str, *, directory: bool = False, nofollow: bool = False) -> int:
    """Open PATH (as the machine sees it) under ROOT_FD for reading, confined.

    Returns an fd on a regular file (or a directory with DIRECTORY); raises
    OSError for anything else: ELOOP for a final symlink with NOFOLLOW, EINVAL for a FIFO,
    device or socket, ENOENT, EXDEV for an escape attempt the kernel refused.
    """
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
    if nofollow:
        flags |= os.O_NOFOLLOW
    if directory:
        flags |= os.O_DIRECTORY
    fd = openat2(root_fd, path.lstrip("/") or ".", flags, _RESOLVE)
    try:
        mode = os.fstat(fd).st_mode
        wanted = stat.S_ISDIR(mode) if directory else stat.S_ISREG(mode)
        if not wanted:
            raise OSError(errno.EINVAL, "not a regular file" if not directory else "not a directory", path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bytes(root: str | os.PathLike[str] | int, path: str, limit: int = SMALL, *,
               nofollow: bool = False) -> bytes:
    """At most LIMIT bytes of regular file PATH inside ROOT (a path or an O_PATH fd).

    A file longer than LIMIT is refused (EFBIG), not truncated: a truncated
    machine-id or os-release would be a wrong answer, not a short one.
    """
    root_fd = open_root(root) if not isinstance(root, int) else root
    try:
        fd = open_in_root(root_fd, path, nofollow=nofollow)
    finally:
        if not isinstance(root, int):
            os.close(root_fd)
    try:
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(65536, limit + 1 - total))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise OSError(errno.EFBIG, f"longer than {limit} bytes", path)
    finally:
        os.close(fd)


def read_text(root: str | os.PathLike[str] | int, path: str, limit: int = SMALL, *,
              nofollow: bool = False) -> str:
    """read_bytes() decoded as UTF-8, undecodable bytes replaced."""
    return read_bytes(root, path, limit, nofollow=nofollow).decode("utf-8", "replace")


def list_dir(root: str | os.PathLike[str] | int, path: str, limit: int = 4096) -> list[str]:
    """The names in directory PATH inside ROOT, at most LIMIT of them."""
    root_fd = open_root(root) if not isinstance(root, int) else root
    try:
        fd = open_in_root(root_fd, path, directory=True)
    finally:
        if not isinstance(root, int):
            os.close(root_fd)
    try:
        names = []
        for entry in os.scandir(fd):
            names.append(entry.name)
            if len(names) >= limit:
                break
        return names
    finally:
        os.close(fd)


def is_dir(root: str | os.PathLike[str] | int, path: str) -> bool:
    """True if PATH inside ROOT is a directory (reached without leaving the root)."""
    root_fd = open_root(root) if not isinstance(root, int) else root
    try:
        os.close(open_in_root(root_fd, path, directory=True))
        return True
    except OSError:
        return False
    finally:
        if not isinstance(root, int):
            os.close(root_fd)
