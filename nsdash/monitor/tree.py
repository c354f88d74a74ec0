"""Walk a cgroup hierarchy into an immutable tree, or list the cgroups of every hierarchy.

A subtree that cannot be read (EACCES) or that vanishes while we walk it is
marked in place on its node; the walk never aborts because of it.
"""

from __future__ import annotations

import errno
import posix

from nsdash.system import bareos
from nsdash.system.cgroupfs import Layout
from nsdash.system.frozen import Frozen

TYPE_CHECKING = False  # mypy takes this as true; at run time cgls imports no typing for it
if TYPE_CHECKING:
    from collections.abc import Callable

    PidReader = Callable[[str], tuple[int, ...]]

# Errors that mean "this cgroup went away while we looked".
_GONE = (errno.ENOENT, errno.ENODEV, errno.ESTALE)


class CgroupNode(Frozen):
    """One cgroup: its path from the hierarchy root ('/', '/a/b'), children and processes.

    Frozen, not a dataclass: `nsdash cgls` would import dataclasses (and inspect, ast,
    dis) for this class alone.
    """

    path: str
    children: tuple[CgroupNode, ...] = ()
    pids: tuple[int, ...] | None = None  # None: not read, or unreadable
    unreadable: bool = False  # listing or cgroup.procs failed with EACCES/EPERM
    vanished: bool = False  # removed while being walked

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1] or "/"

    def iter(self):
        """Every node, parent before children."""
        yield self
        for child in self.children:
            yield from child.iter()

    def find(self, path: str) -> CgroupNode | None:
        for node in self.iter():
            if node.path == path:
                return node
        return None


# Levels below the hierarchy root a tree holds: a guest nests its delegated cgroups as deep as it
# likes, and a tree thousands of levels deep exceeded the interpreter's recursion limit where it is
# built, walked and drawn (the dashboard's poller failed at every refresh, `cgls` with a traceback).
# Deeper cgroups are left out of trees (their parent at this level shows as a leaf); cgtop's flat
# rows (list_cgroups) keep them all.  systemd's own trees are a few levels, nested machines a few more.
MAX_DEPTH = 64


def level(path: str) -> int:
    """How many levels below the hierarchy root PATH ('/a/b': 2) is."""
    return 0 if path == "/" else path.count("/")


def join(parent: str, name: str) -> str:
    return "/" + name if parent == "/" else f"{parent}/{name}"


def normalize(path: str) -> str:
    """'a/b/', '/a//b' -> '/a/b'; '' -> '/'."""
    return "/" + "/".join(p for p in path.split("/") if p)


def user_path(path: str) -> str:
    """A control group path the user typed (cgls PATH, cgtop PATH), normalized; '.' and '..'
    are refused: the kernel would resolve them, and `cgls -M NAME ../..` left the machine."""
    if any(p in (".", "..") for p in path.split("/")):
        from nsdash.errors import UsageError

        raise UsageError(f"invalid control group path '{path}': it has '.' or '..' in it",
                         "name the group from the top, as 'nsdash cgls' shows it")
    return normalize(path)


def primary_mount(layout: Layout) -> str:
    """The hierarchy that holds every process: cgroup2 if mounted, else name=systemd."""
    if layout.unified_dir is not None:
        return layout.unified_dir
    for key in ("systemd", "name=systemd"):
        if key in layout.v1_dirs:
            return layout.v1_dirs[key]
    if not layout.v1_dirs:
        raise FileNotFoundError(errno.ENOENT, "no cgroup hierarchy mounted", layout.root_dir)
    return next(iter(layout.v1_dirs.values()))


def read_pids(directory: str) -> tuple[int, ...]:
    # os.open/os.read: open() adds an fstat, an ioctl and two lseeks per cgroup (cgls reads them all)
    fd = posix.open(directory + "/cgroup.procs", posix.O_RDONLY | posix.O_CLOEXEC)
    try:
        chunks = []
        while chunk := posix.read(fd, 65536):
            chunks.append(chunk)
    finally:
        posix.close(fd)
    return tuple(int(x) for x in b"".join(chunks).split())


class KeptProcs:
    """cgroup.procs of each cgroup kept open from walk to walk and read again with pread: a
    refresh of the dashboard's tree then costs no open and close per cgroup.

    cgroup2 only: its cgroup.procs lists the processes anew on each read from offset 0 (checked
    on this host's kernel, see the test); a v1 hierarchy's file lists them as they were when it
    was opened, so v1 keeps read_pids.  At most LIMIT files are kept (the rest are read by
    name); a removed cgroup's file answers ENODEV, a cgroup made again under its name is
    opened anew.  Not thread-safe: one walker (the poller thread)."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._fds: dict[str, int] = {}
        self._seen: set[str] = set()

    def __call__(self, directory: str) -> tuple[int, ...]:
        self._seen.add(directory)
        fd = self._fds.get(directory)
        if fd is not None:
            try:
                return _pread_pids(fd)
            except OSError as e:
                if e.errno not in _GONE:
                    raise
                del self._fds[directory]  # removed (perhaps made again): open it by name below
                posix.close(fd)
        if len(self._fds) >= self.limit:
            return read_pids(directory)
        try:
            fd = posix.open(directory + "/cgroup.procs", posix.O_RDONLY | posix.O_CLOEXEC)
        except OSError as e:
            if e.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            self.limit = len(self._fds)  # the process ran out before this budget did: keep no more
            return read_pids(directory)
        self._fds[directory] = fd
        return _pread_pids(fd)

    def sweep(self) -> None:
        """Close the files of cgroups the last walk did not visit (gone, or no longer walked)."""
        for directory in [d for d in self._fds if d not in self._seen]:
            posix.close(self._fds.pop(directory))
        self._seen.clear()

    def open_files(self) -> int:
        return len(self._fds)

    def close(self) -> None:
        for fd in self._fds.values():
            posix.close(fd)
        self._fds.clear()
        self._seen.clear()


# cgroup.procs is a seq_file: a read fills the kernel's buffer (a page, 4 KiB or more) with whole
# lines and comes back short of a page only at the end of the list; a line is at most 8 bytes
# ("4194304\n": PID_MAX_LIMIT).  So a first read this short was the whole list, and the read that
# would find its end is not made: one call less a cgroup a walk, most of them (checked on this
# host's kernel: tests/integration/test_monitor_cgroups.py).
_WHOLE = 4096 - 8


def _pread_pids(fd: int) -> tuple[int, ...]:
    first = posix.pread(fd, 65536, 0)
    if len(first) <= _WHOLE:
        return tuple(int(x) for x in first.split())
    chunks = [first]
    offset = len(first)
    while chunk := posix.pread(fd, 65536, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return tuple(int(x) for x in b"".join(chunks).split())


def walk(mount: str, start: str = "/", depth: int | None = None, with_pids: bool = False,
         sort: bool = True, pids_of: PidReader | None = None) -> CgroupNode:
    """The tree under START in the hierarchy mounted at MOUNT, DEPTH levels deep (None: all,
    down to MAX_DEPTH levels below the hierarchy's root).

    Children come sorted by name, or with SORT false in the kernel's directory
    order (which is what systemd-cgls prints).  With WITH_PIDS each cgroup's processes are
    read by PIDS_OF (a cgroup's directory -> its pids; default read_pids, e.g. a KeptProcs).
    """
    start = normalize(start)
    room = max(0, MAX_DEPTH - level(start))
    return _walk(mount, start, room if depth is None else min(depth, room),
                 (pids_of or read_pids) if with_pids else None, sort)


def _walk(mount: str, path: str, depth: int | None, pids_of: PidReader | None, sort: bool) -> CgroupNode:
    directory = mount + ("" if path == "/" else path)
    pids: tuple[int, ...] | None = None
    unreadable = False
    if pids_of is not None:
        try:
            pids = pids_of(directory)
        except OSError as e:
            if e.errno in _GONE:
                return CgroupNode(path, vanished=True)
            unreadable = True
    if depth is not None and depth <= 0:
        return CgroupNode(path, (), pids, unreadable)
    if pids is not None:
        # A cgroup directory's link count is 2 + its subdirectories (1: not counted): a leaf,
        # most cgroups, costs one stat instead of listing its twenty-odd files.  Only where its
        # processes could be read: an unreadable directory is still found out by listing it.
        try:
            if posix.stat(directory).st_nlink == 2:
                return CgroupNode(path, (), pids, unreadable)
        except OSError as e:
            if e.errno in _GONE:
                return CgroupNode(path, vanished=True)
    try:
        with posix.scandir(directory) as it:
            names = [e.name for e in it if e.is_dir(follow_symlinks=False)]
    except OSError as e:
        if e.errno in _GONE:
            return CgroupNode(path, vanished=True)
        return CgroupNode(path, (), pids, True)
    if sort:
        names.sort()
    sub = None if depth is None else depth - 1
    children = tuple(_walk(mount, join(path, n), sub, pids_of, sort) for n in names)
    return CgroupNode(path, children, pids, unreadable)


def list_cgroups(mount: str, start: str = "/", depth: int | None = None,
                 out: list[str] | None = None, unreadable: set[str] | None = None,
                 inodes: dict[str, int] | None = None) -> list[str]:
    """Paths of every cgroup under START in one hierarchy, parents first; cheap (d_type only).
    INODES: filled with each one's inode number but START's, as its parent's listing gives it
    (no call more): a cgroup made again under its name has another."""
    start = normalize(start)
    found = [] if out is None else out
    bad = set() if unreadable is None else unreadable
    if not bareos.isdir(mount + ("" if start == "/" else start)):
        return found
    # A directory's link count is 2 + its subdirectories (kernfs, tmpfs, ext4; 1 means "not
    # counted"): a leaf cgroup costs one stat instead of listing its many files, made from its
    # parent's descriptor (one name to look up, not the whole path: a third less at 5,000 cgroups).
    stack: list[tuple[str, int, bool | None]] = [(start, 0, None)]  # None: not known to be a leaf yet
    while stack:
        path, level, leaf = stack.pop()
        found.append(path)
        if leaf or (depth is not None and level >= depth):
            continue
        directory = mount + ("" if path == "/" else path)
        try:
            if leaf is None and posix.stat(directory).st_nlink == 2:
                continue
            fd = posix.open(directory, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC)
            try:
                with posix.scandir(fd) as it:
                    dirs = [e for e in it if e.is_dir(follow_symlinks=False)]
                names = [e.name for e in dirs]
                below = depth is None or level + 1 < depth  # (deeper ones are listed, not entered)
                leaves = [_is_leaf(n, fd) if below else True for n in names]
            finally:
                posix.close(fd)
        except OSError as e:
            if e.errno not in _GONE:
                bad.add(path)
            continue
        prefix = "/" if path == "/" else path + "/"
        paths = [prefix + n for n in names]
        stack.extend((p, level + 1, is_leaf) for p, is_leaf in zip(paths, leaves, strict=True))
        if inodes is not None:
            inodes.update(zip(paths, [e.inode() for e in dirs], strict=True))
    return found


def _is_leaf(name: str, dir_fd: int) -> bool | None:
    """Whether NAME in DIR_FD has no subdirectory (None: the stat failed; list_cgroups tries again)."""
    try:
        return posix.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_nlink == 2
    except OSError:
        return None


def from_paths(paths) -> CgroupNode:
    """The tree (no processes) that PATHS name, each given after its parent ('/' first);
    children sorted by name as walk() sorts them.  A path whose parent is missing is left out,
    and one deeper than MAX_DEPTH."""
    children: dict[str, list[str]] = {}
    known = {"/"}
    for path in paths:
        if path == "/" or path in known or level(path) > MAX_DEPTH:
            continue
        parent = path.rsplit("/", 1)[0] or "/"
        if parent in known:
            known.add(path)
            children.setdefault(parent, []).append(path)

    def build(path: str) -> CgroupNode:
        return CgroupNode(path, tuple(build(c) for c in sorted(children.get(path, ()))))

    return build("/")
