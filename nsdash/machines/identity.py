"""Who a machine is, as the host may learn it: os-release, machine ID, shared namespaces.

Everything here that comes from inside a machine is read through
nsdash.system.confined (resolved in the machine's root, regular files only,
bounded), so a guest's symlink, FIFO or /dev/zero in place of its os-release or
machine-id is an error for that machine, never a host file, a hang or a flood.
"""

from __future__ import annotations

import posix
import time

from nsdash.system import confined
from nsdash.system.idfiles import OS_RELEASE_PATHS, normalise_id, parse_os_release
from nsdash.system.namespaces import shares_host_namespace  # the one copy, shared with the launcher

TYPE_CHECKING = False  # mypy reads this as True: os names a type here, posix serves the calls
if TYPE_CHECKING:
    import os

__all__ = ["OsReleaseCache", "machine_id", "normalise_id", "os_release", "parse_os_release", "shares_host_namespace"]


def os_release(root: str | os.PathLike[str] | int) -> dict[str, str]:
    """The machine's os-release (etc/ first, then usr/lib/, as systemd looks), confined to ROOT.

    ROOT is the machine's root: /proc/LEADER/root while it runs, its tree
    otherwise (or an O_PATH fd on either).  {} when there is none; an OSError
    when a file is there but refused (a FIFO, a device, too big), so the caller
    can show an error for this machine alone.
    """
    for path in OS_RELEASE_PATHS:
        try:
            return parse_os_release(confined.read_bytes(root, path))
        except FileNotFoundError:
            continue  # a refused file is not a missing one: that error is the caller's to show
    return {}


class OsReleaseCache:
    """os_release(), read again only when the file it names changed (the dashboard reads every
    machine's every 5 s: the confined walk, read and parse were ~15 system calls a machine).

    The file is looked up as the confined read resolves it (openat2, RESOLVE_IN_ROOT, no magic
    links: one call) and compared by its identity (device, inode, size, change times) with the
    one last read under that root; only a change, a refusal or an error reads it (os_release)."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[tuple, dict[str, str]]] = {}  # root -> (identity, os-release)
        self._asked: set[str] = set()

    def __call__(self, root: str) -> dict[str, str]:
        self._asked.add(root)
        seen = _identity(root)
        known = self._known.get(root)
        if seen is not None and known is not None and known[0] == seen:
            return known[1]
        self._known.pop(root, None)
        found = os_release(root)  # raises what it refuses, as without a cache
        # Kept only once its change time is a second old: a rewrite of the same size within one
        # timestamp tick of the read would look unchanged (git's "racy" files, the same remedy).
        if seen is not None and time.time_ns() - seen[-1] > 1_000_000_000:
            self._known[root] = (seen, found)
        return found

    def sweep(self) -> None:
        """Forget the roots not asked about since the last sweep (machines gone, leaders changed)."""
        for root in [r for r in self._known if r not in self._asked]:
            del self._known[root]
        self._asked.clear()


def _identity(root: str) -> tuple | None:
    """Which file os_release(ROOT) would read, and its identity; None where that cannot be
    said in one lookup (no file, not a regular one, an error): os_release then reads."""
    import stat

    from nsdash.system.syscalls import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2

    try:
        root_fd = confined.open_root(root)
    except OSError:
        return None
    try:
        for path in OS_RELEASE_PATHS:
            try:
                fd = openat2(root_fd, path.lstrip("/"), posix.O_PATH, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
            except FileNotFoundError:
                continue
            except OSError:
                return None
            try:
                info = posix.fstat(fd)
            finally:
                posix.close(fd)
            if not stat.S_ISREG(info.st_mode):
                return None
            return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        return None
    finally:
        posix.close(root_fd)


def machine_id(root: str | os.PathLike[str] | int) -> str | None:
    """ROOT's /etc/machine-id as 32 hex digits, or None (missing, empty, refused, malformed)."""
    try:
        return normalise_id(confined.read_text(root, "/etc/machine-id", limit=256))
    except OSError:
        return None


