"""cgroupfs: which layout the host uses, and where a cgroup's files are.

Three layouts exist in the wild:
- unified: cgroup2 at /sys/fs/cgroup (most current distributions);
- hybrid: v1 controllers under /sys/fs/cgroup/<controller> plus cgroup2 at
  /sys/fs/cgroup/unified (older systemd hosts, and this project's CI);
- legacy: v1 controllers only.
The root is a parameter so tests can point it at a fixture tree.
"""

from __future__ import annotations

import os
from pathlib import Path

from nsdash.system.frozen import Frozen

CGROUP2_SUPER_MAGIC = 0x63677270
DEFAULT_ROOT = Path("/sys/fs/cgroup")

# The v1 controllers nsdash reads and places machines in, by what they measure.
V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "pids", "blkio")


class Layout(Frozen):
    """The cgroup hierarchies of a host."""

    kind: str  # "unified" | "hybrid" | "legacy"
    root: Path
    unified: Path | None  # the cgroup2 mount, if any
    v1: dict[str, Path]  # controller -> hierarchy mount

    def v1_path(self, controller: str, cgroup: str) -> Path | None:
        base = self.v1.get(controller)
        return None if base is None else base / cgroup.lstrip("/")

    def unified_path(self, cgroup: str) -> Path | None:
        return None if self.unified is None else self.unified / cgroup.lstrip("/")

    def hierarchies(self) -> list[Path]:
        """Every distinct hierarchy mount: cgroup2 first, then the v1 ones."""
        seen: list[Path] = []
        for p in ([self.unified] if self.unified else []) + list(self.v1.values()):
            if p not in seen:
                seen.append(p)
        return seen


def _is_cgroup2(path: Path) -> bool:
    return (path / "cgroup.controllers").exists() or (
        (path / "cgroup.procs").exists() and not (path / "tasks").exists()
    )


def detect(root: Path = DEFAULT_ROOT) -> Layout:
    """Detect the layout under ROOT by looking at what is mounted there."""
    root = Path(root)
    if _is_cgroup2(root):
        return Layout("unified", root, root, {})
    v1: dict[str, Path] = {}
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        entries = []
    for name in entries:
        path = root / name
        if name == "unified" or not path.is_dir() or path.is_symlink():
            continue
        if (path / "tasks").exists() or (path / "cgroup.procs").exists():
            for ctrl in name.split(","):
                v1.setdefault(ctrl, path)
    # Joined mounts such as cpu,cpuacct appear as symlinks cpu -> cpu,cpuacct.
    for name in entries:
        path = root / name
        if path.is_symlink() and path.is_dir() and name not in v1:
            v1[name] = path
    unified = root / "unified"
    if unified.is_dir() and _is_cgroup2(unified):
        return Layout("hybrid", root, unified, v1)
    return Layout("legacy", root, None, v1)


def own_cgroup(pid: int | str = "self", proc: Path = Path("/proc")) -> dict[str, str]:
    """A process's cgroups by hierarchy: '' for cgroup2, else the controller list."""
    result: dict[str, str] = {}
    with open(proc / str(pid) / "cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            result[ctrls] = path
    return result
