"""Which running machines have a tree as their root, from the machine.slice cgroups.

A machine's processes are found in its cgroup and their root (/proc/PID/root)
compared with the tree's by device and inode.  An --ephemeral machine runs on an
overlay, so its root is not the tree.  launcher/inuse refuses a second machine on
a tree with it; image-status shows an image's users with it (nothing but posix's
own calls on string paths: that verb stays as lean as `nsdash list`).
"""

from __future__ import annotations

import posix

from nsdash.launcher import names
from nsdash.system import bareos, cgroupfs

TYPE_CHECKING = False  # mypy reads this as True
if TYPE_CHECKING:
    from os import PathLike


def _machine_scopes(layout: cgroupfs.Layout) -> dict[str, str]:
    """machine name -> its cgroup directory in the hierarchy that holds every process
    (strings: one per running machine, on every spawn)."""
    slice_dir = names.SLICE.lstrip("/")
    base = bareos.join(layout.unified_dir, slice_dir) if layout.unified_dir is not None else None
    if base is None or not bareos.isdir(base):
        v1 = layout.v1_dirs.get("pids") or layout.v1_dirs.get("cpu")
        base = None if v1 is None else bareos.join(v1, slice_dir)
    found: dict[str, str] = {}
    if base is None:
        return found
    try:
        with posix.scandir(base) as it:
            for entry in it:
                name = names.machine_from_unit(entry.name)
                if name is not None and entry.is_dir():
                    found[name] = entry.path
    except FileNotFoundError:
        pass
    return found


def _pids(cgroup: str | PathLike[str], limit: int = 8) -> list[int]:
    """The first LIMIT processes of CGROUP and its children, top-down as os.walk visits them.
    A directory is listed only when its own processes are not enough and it has child
    cgroups: a spawn checks every running machine, and os.walk's listing and stat of each
    cgroup's twenty-odd control files was most of that check's cost."""
    out: list[int] = []
    stack = [posix.fspath(cgroup)]
    while stack:
        d = stack.pop()
        try:
            with open(d + "/cgroup.procs", "rb") as f:
                out.extend(int(x) for x in f.read().split())
        except OSError:
            pass
        if len(out) >= limit:
            break
        try:
            if posix.stat(d).st_nlink == 2:
                continue  # no child cgroup: a directory's links are 2 + its subdirectories (kernfs)
            with posix.scandir(d) as it:
                subs = [e.path for e in it if e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
        stack.extend(reversed(subs))  # popped in listing order, as os.walk yields them
    return out[:limit]


def machine_roots(layout: cgroupfs.Layout | None = None) -> dict[str, set[tuple[int, int]]]:
    """Each running machine's roots: (device, inode) of /proc/PID/root of its first processes
    (one walk of machine.slice for any number of trees to check)."""
    roots: dict[str, set[tuple[int, int]]] = {}
    for name, cg in _machine_scopes(layout or cgroupfs.detect()).items():
        seen = roots.setdefault(name, set())
        for pid in _pids(cg):
            try:
                root = posix.stat(f"/proc/{pid}/root")
            except OSError:
                continue  # gone, or a zombie
            seen.add((root.st_dev, root.st_ino))
    return roots


def tree_users(tree: str | PathLike[str], layout: cgroupfs.Layout | None = None,
               exclude: str | None = None, roots: dict[str, set[tuple[int, int]]] | None = None) -> list[str]:
    """Names of running machines whose root is TREE (ROOTS: machine_roots(), read once by a caller
    that checks many trees)."""
    try:
        st = posix.stat(tree)
    except OSError:
        return []
    key = (st.st_dev, st.st_ino)
    found = machine_roots(layout) if roots is None else roots
    return [name for name, seen in found.items() if name != exclude and key in seen]
