"""Reads of files a machine controls, confined to the machine's root.

Everything in a machine's tree is written by whoever is root inside it, so the
host opens such files only through here: the path is resolved inside the root
(openat2 with RESOLVE_IN_ROOT, so `..` and absolute symlinks stay inside, and
no /proc magic links), symlinks are followed only inside the root (and the last
component not at all where the caller says so), the open never blocks (a FIFO or a device answers at once or not at all), only
regular files (or directories, for directory opens) are accepted, and reads are
bounded in size.  Every refusal is an OSError, as the open would have raised.

A path with no symlink and no `..` on it (a journal directory, machine-id in
most trees) is opened one component at a time, each with O_NOFOLLOW, below
the root's descriptor: that walk meets nothing openat2 would resolve
differently, and it needs no ctypes (importing ctypes is about 3 ms of every
`nsdash journal -n 20`, a third of journalctl's whole run).  A symlink met on
the way whose target is `..`s then names (etc/os-release -> ../usr/lib/os-release
in nearly every tree) is followed by the same walk: the `..`s climb the
directories just descended (none a symlink), stopping at the root as
RESOLVE_IN_ROOT does; so is one whose target is names alone (lib -> usr/lib
in merged-/usr trees) or absolute (from the root, as RESOLVE_IN_ROOT takes
it), once its size shows it is no /proc link.  Any other symlink or `..`
hands the whole path to openat2, whose answer is the one given.
"""

from __future__ import annotations

import errno
import posix
import sys

from nsdash.system.bareos import S_IFDIR, S_IFLNK, S_IFMT, S_IFREG

TYPE_CHECKING = False  # mypy reads this as True: os names a type here, posix serves the calls
if TYPE_CHECKING:
    import os

SMALL = 64 * 1024  # os-release, machine-id, hostname, presets: far smaller than this
_DIR_STEP = posix.O_PATH | posix.O_DIRECTORY | posix.O_NOFOLLOW | posix.O_CLOEXEC


def open_root(root: str | os.PathLike[str]) -> int:
    """An O_PATH fd on a machine's root directory (a tree, or /proc/LEADER/root)."""
    return posix.open(root, posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)


def open_in_root(root_fd: int, path: str, *, directory: bool = False, nofollow: bool = False) -> int:
    """Open PATH (as the machine sees it) under ROOT_FD for reading, confined.

    Returns an fd on a regular file (or a directory with DIRECTORY); raises
    OSError for anything else: ELOOP for a final symlink with NOFOLLOW, EINVAL for a FIFO,
    device or socket, ENOENT, EXDEV for an escape attempt the kernel refused.
    """
    # A file is first only looked up (O_PATH): opening a device or a FIFO has effects of its
    # own (a watchdog starts, a FIFO's blocked writer is let go), so only a regular file is
    # opened, through the looked-up descriptor.  O_DIRECTORY opens nothing but a directory.
    flags = (posix.O_RDONLY | posix.O_NONBLOCK | posix.O_NOCTTY | posix.O_DIRECTORY) if directory else posix.O_PATH
    flags |= posix.O_CLOEXEC
    if nofollow:
        flags |= posix.O_NOFOLLOW
    inner = path.lstrip("/") or "."
    fd = _walk(root_fd, inner, flags)
    if fd < 0:
        from nsdash.system.syscalls import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2

        fd = openat2(root_fd, inner, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    try:
        mode = posix.fstat(fd).st_mode
        if directory:
            if mode & S_IFMT != S_IFDIR:
                raise OSError(errno.EINVAL, "not a directory", path)
            return fd
        if mode & S_IFMT == S_IFLNK:  # O_PATH|O_NOFOLLOW gives the link itself where an open says ELOOP
            raise OSError(errno.ELOOP, "a symbolic link, not followed", path)
        if mode & S_IFMT != S_IFREG:
            raise OSError(errno.EINVAL, "not a regular file", path)
        # The same inode opened for reading through our own descriptor: no path is resolved again.
        opened = posix.open(f"/proc/self/fd/{fd}", posix.O_RDONLY | posix.O_CLOEXEC | posix.O_NONBLOCK | posix.O_NOCTTY)
    except BaseException:
        posix.close(fd)
        raise
    posix.close(fd)
    return opened


def open_path_in_root(root_fd: int, path: str) -> int:
    """An O_PATH fd on whatever PATH is (as the machine sees it) under ROOT_FD, resolved as
    open_in_root resolves, of any type: a socket to connect through /proc/self/fd/N."""
    inner = path.lstrip("/") or "."
    fd = _walk(root_fd, inner, posix.O_PATH | posix.O_CLOEXEC)
    if fd < 0:
        from nsdash.system.syscalls import O_PATH, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2

        fd = openat2(root_fd, inner, O_PATH, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    return fd


_HOPS = 8  # symlinks the plain walk follows before leaving the path to openat2


def _walk(root_fd: int, inner: str, flags: int) -> int:
    """INNER opened below ROOT_FD one component at a time, following no symlink the kernel
    would; -1 where that walk is not the whole answer (openat2's to resolve).

    A symlink whose target starts with `..` is followed here (_hop), by walking the joined
    path again from the root, at most _HOPS times.  ENOENT is raised as it is: with every
    symlink passed resolved as openat2 would, it would find the same nothing.  Any other
    refusal on the way is left to openat2 to give."""
    parts = [p for p in inner.split("/") if p and p != "."]
    if inner.endswith(("/", "/.")):
        flags |= posix.O_DIRECTORY  # `f/` and `f/.` name a directory: a file there is ENOTDIR, as openat2 says
    for _ in range(_HOPS + 1):
        if ".." in parts:
            return -1
        if not parts:
            return posix.open(".", flags, dir_fd=root_fd)
        fd = root_fd
        depth = 0
        try:
            try:
                while depth < len(parts) - 1:  # (DEPTH: the component being opened)
                    step = posix.open(parts[depth], _DIR_STEP, dir_fd=fd)
                    if fd != root_fd:
                        posix.close(fd)
                    fd = step
                    depth += 1
                return _open_last(parts[-1], flags, fd)
            except OSError as e:
                if e.errno == errno.ENOENT:
                    raise
                last = depth == len(parts) - 1
                if e.errno not in (errno.ELOOP, errno.ENOTDIR) or (last and flags & posix.O_NOFOLLOW):
                    return -1  # EACCES and the rest, or the caller's own O_NOFOLLOW: the kernel's to say
            hopped = _hop(fd, parts, depth)  # (ELOOP, ENOTDIR: a symlink, or not a directory)
        finally:
            if fd != root_fd:
                posix.close(fd)
        if hopped is None:
            return -1
        parts = hopped
    return -1


def _open_last(name: str, flags: int, dir_fd: int) -> int:
    """NAME in DIR_FD opened with O_NOFOLLOW: ELOOP for a symlink, as an O_PATH open would not say."""
    fd = posix.open(name, flags | posix.O_NOFOLLOW, dir_fd=dir_fd)
    if flags & posix.O_PATH and posix.fstat(fd).st_mode & S_IFMT == S_IFLNK:
        posix.close(fd)
        raise OSError(errno.ELOOP, posix.strerror(errno.ELOOP), name)
    return fd


def _hop(dir_fd: int, parts: list[str], depth: int) -> list[str] | None:
    """PARTS with the symlink PARTS[DEPTH] (in DIR_FD, reached by PARTS[:DEPTH], none of them a
    symlink) replaced by its target; None for anything but a symlink to a path.  A target's
    leading `..`s (etc/os-release's in nearly every tree) climb the directories just descended
    and stop at the root as under RESOLVE_IN_ROOT; an absolute target starts at the root; a
    later `..` (after a name that may be a symlink) leaves the path to openat2.  A /proc magic
    link is refused by openat2 (RESOLVE_NO_MAGICLINKS), never followed as text here: its text
    never starts with `..`, and where it is names or absolute (pipe:[N], /dev/pts/0) the
    link's size tells: procfs gives its links size 0, other file systems the target's length."""
    try:
        target = posix.readlink(parts[depth], dir_fd=dir_fd)
    except OSError:
        return None  # EINVAL: not a symlink; the refusal was something else
    rest = [p for p in target.split("/") if p and p != "."]
    if not rest or target.endswith(("/", "/.")):  # (a trailing `/` asks for a directory: openat2's to say)
        return None
    if rest[0] != ".." or target.startswith("/"):
        try:
            size = posix.stat(parts[depth], dir_fd=dir_fd, follow_symlinks=False).st_size
        except OSError:
            return None
        if size != len(target.encode(sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())):
            return None
    base = [] if target.startswith("/") else parts[:depth]
    while rest and rest[0] == "..":
        rest.pop(0)
        if base:
            base.pop()
    return base + rest + parts[depth + 1:]


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
            posix.close(root_fd)
    try:
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = posix.read(fd, min(65536, limit + 1 - total))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise OSError(errno.EFBIG, f"longer than {limit} bytes", path)
    finally:
        posix.close(fd)


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
            posix.close(root_fd)
    try:
        names = []
        for entry in posix.scandir(fd):
            names.append(entry.name)
            if len(names) >= limit:
                break
        return names
    finally:
        posix.close(fd)


def is_dir(root: str | os.PathLike[str] | int, path: str) -> bool:
    """True if PATH inside ROOT is a directory (reached without leaving the root)."""
    root_fd = open_root(root) if not isinstance(root, int) else root
    try:
        posix.close(open_in_root(root_fd, path, directory=True))
        return True
    except OSError:
        return False
    finally:
        if not isinstance(root, int):
            posix.close(root_fd)
