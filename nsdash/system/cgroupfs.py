"""cgroupfs: which layout the host uses, and where a cgroup's files are.

Three layouts exist in the wild:
- unified: cgroup2 at /sys/fs/cgroup (most current distributions);
- hybrid: v1 controllers under /sys/fs/cgroup/<controller> plus cgroup2 at
  /sys/fs/cgroup/unified (older systemd hosts, and this project's CI);
- legacy: v1 controllers only.
The root is a parameter so tests can point it at a fixture tree.
"""

from __future__ import annotations

import posix

from nsdash.system import bareos
from nsdash.system.frozen import Frozen

TYPE_CHECKING = False  # mypy reads this as True; at run time pathlib waits for a caller that wants Paths
if TYPE_CHECKING:
    import os
    from collections.abc import Iterable, Iterator
    from pathlib import Path

CGROUP2_SUPER_MAGIC = 0x63677270
DEFAULT_ROOT_DIR = "/sys/fs/cgroup"

# The v1 controllers nsdash reads and places machines in, by what they measure.
V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "pids", "blkio")


class Layout(Frozen):
    """The cgroup hierarchies of a host.

    The mounts are kept as strings (root_dir, unified_dir, v1_dirs), which the
    readers use; root, unified and v1 give them as Paths.  Importing pathlib
    (with re, urllib and enum behind it) would cost `nsdash cgls` more than its
    whole walk of the tree.
    """

    kind: str  # "unified" | "hybrid" | "legacy"
    root_dir: str
    unified_dir: str | None  # the cgroup2 mount, if any
    v1_dirs: dict[str, str]  # controller -> hierarchy mount

    def __init__(self, kind: str, root: str | os.PathLike[str], unified: str | os.PathLike[str] | None,
                 v1: dict[str, str] | dict[str, Path]) -> None:
        def spelled(path: str | os.PathLike[str]) -> str:
            return _spelled_as_path(posix.fspath(path))

        super().__init__(kind, spelled(root), None if unified is None else spelled(unified),
                         {ctrl: spelled(path) for ctrl, path in v1.items()})

    @property
    def root(self) -> Path:
        from pathlib import Path

        return Path(self.root_dir)

    @property
    def unified(self) -> Path | None:
        from pathlib import Path

        return None if self.unified_dir is None else Path(self.unified_dir)

    @property
    def v1(self) -> dict[str, Path]:
        from pathlib import Path

        return {ctrl: Path(path) for ctrl, path in self.v1_dirs.items()}

    def v1_path(self, controller: str, cgroup: str) -> Path | None:
        # One Path from the string, not the whole v1 dict of them: a machine's cgroup set-up
        # asks once per controller (ten dicts of ten Paths on a hybrid host, per spawn).
        base = self.v1_dirs.get(controller)
        if base is None:
            return None
        from pathlib import Path

        return Path(base, cgroup.lstrip("/"))

    def unified_path(self, cgroup: str) -> Path | None:
        if self.unified_dir is None:
            return None
        from pathlib import Path

        return Path(self.unified_dir, cgroup.lstrip("/"))

    def hierarchy_dirs(self) -> list[str]:
        """Every distinct hierarchy mount: cgroup2 first, then the v1 ones."""
        seen: list[str] = []
        for p in ([self.unified_dir] if self.unified_dir else []) + list(self.v1_dirs.values()):
            if p not in seen:
                seen.append(p)
        return seen

    def hierarchies(self) -> list[Path]:
        """hierarchy_dirs() as Paths."""
        from pathlib import Path

        return [Path(p) for p in self.hierarchy_dirs()]


def _spelled_as_path(path: str) -> str:
    """PATH as str(Path(PATH)) spells it: no doubled or trailing '/', no '.' components."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    lead = "/" if path.startswith("/") else ""
    return lead + "/".join(parts) if parts or lead else "."


def _exists(path: str) -> bool:
    return bareos.exists(path)


def _is_cgroup2(path: str) -> bool:
    return _exists(path + "/cgroup.controllers") or (
        _exists(path + "/cgroup.procs") and not _exists(path + "/tasks")
    )


def detect(root: str | os.PathLike[str] = DEFAULT_ROOT_DIR) -> Layout:
    """Detect the layout under ROOT by looking at what is mounted there."""
    top = _spelled_as_path(posix.fspath(root))
    if _is_cgroup2(top):
        return Layout("unified", top, top, {})
    v1: dict[str, str] = {}
    try:
        # (name, a directory, a symlink) from the listing's entry types: no stat per entry
        with posix.scandir(top) as it:
            entries = sorted((e.name, e.is_dir(follow_symlinks=False), e.is_symlink()) for e in it)
    except OSError:
        entries = []
    for name, is_dir, _ in entries:
        path = bareos.join(top, name)
        if name == "unified" or not is_dir:  # (a symlink is not a directory here: see below)
            continue
        if _exists(path + "/tasks") or _exists(path + "/cgroup.procs"):
            for ctrl in name.split(","):
                v1.setdefault(ctrl, path)
    # Joined mounts such as cpu,cpuacct appear as symlinks cpu -> cpu,cpuacct.
    for name, _, is_link in entries:
        path = bareos.join(top, name)
        if is_link and name not in v1 and bareos.isdir(path):
            v1[name] = path
    unified = bareos.join(top, "unified")
    if bareos.isdir(unified) and _is_cgroup2(unified):
        return Layout("hybrid", top, unified, v1)
    return Layout("legacy", top, None, v1)


def own_cgroup(pid: int | str = "self", proc: str | os.PathLike[str] = "/proc") -> dict[str, str]:
    """A process's cgroups by hierarchy: '' for cgroup2, else the controller list."""
    result: dict[str, str] = {}
    with open(bareos.join(posix.fspath(proc), str(pid), "cgroup"), errors="surrogateescape") as f:  # a guest's names
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            result[ctrls] = path
    return result


def machine_dirs(layout: Layout, cgroup: str) -> list[str]:
    """A machine's cgroup CGROUP in each hierarchy: cgroup2's first (it holds every process),
    then every v1 hierarchy mounted, perf_event too (`perf record -G`, nsdash profile, finds the
    machine there only where it is a v1 hierarchy; on cgroup2 the controller is implicit).
    Strings: `ps -M` reads them without launcher/cgroup's pathlib (MachineCgroup.dirs are these)."""
    inner = cgroup.strip("/")

    def under(base: str) -> str:
        return bareos.join(base, inner) if inner else base

    dirs = [under(layout.unified_dir)] if layout.unified_dir is not None else []
    for ctrl in (*V1_CONTROLLERS, "devices", "perf_event", *sorted(layout.v1_dirs)):
        base = layout.v1_dirs.get(ctrl)
        if base is not None and under(base) not in dirs:
            dirs.append(under(base))
    return dirs


def procs(dirs: Iterable[str | os.PathLike[str]]) -> list[int]:
    """Every process in DIRS (cgroups) and the cgroups below them, sorted, once each."""
    found: list[int] = []
    for d in dirs:
        for sub in subtree(d):
            try:
                with open(bareos.join(sub, "cgroup.procs")) as f:
                    found.extend(int(line) for line in f if line.strip())
            except OSError:
                continue
    return sorted(set(found))


def subtree(top: str | os.PathLike[str]) -> Iterator[str]:
    """TOP and every cgroup (directory) below it, each after its parent, siblings by name: what
    os.walk with sorted subdirectories gives, without its recursion (before Python 3.12), as a
    guest nests the cgroups it was delegated as deep as it likes and os.walk raised
    RecursionError past about a thousand levels.  Lazy, as os.walk is; one that cannot be
    listed (vanished, unreadable) is given but not descended, as os.walk does."""
    stack = [posix.fspath(top)]
    while stack:
        directory = stack.pop()
        yield directory
        try:
            with posix.scandir(directory) as entries:
                below = [e.path for e in entries if e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
        stack += sorted(below, reverse=True)  # popped by name
