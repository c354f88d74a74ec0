"""Finding and describing images: what the read-only image verbs (list-images,
image-status, show-image) need, without what changing images needs.

nsdash.machines.images (clone, rename, remove, import, export) re-exports these.
This module stays as lean as `nsdash list`: paths are strings and the calls
posix's own (no os, pathlib, dataclasses or subprocess: together most of a run
of list-images before); image.path is made a Path only when a caller asks.  A
run against machinectl's is in bench/bench_nested.py.
"""

from __future__ import annotations

import posix

from nsdash.launcher import names
from nsdash.system import bareos, paths

TYPE_CHECKING = False  # mypy reads this as True
if TYPE_CHECKING:
    from os import PathLike
    from pathlib import Path

BTRFS_SUBVOLUME_INODE = 256  # every btrfs subvolume's top directory
ST_RDONLY = 1  # statvfs's f_flag for a read-only mount (os.ST_RDONLY)


class Image:
    """One image: NAME, where it is (WHERE, a string; .path is it as a Path), its TYPE (directory,
    subvolume or raw), whether it is read-only, its times and, for a tree, the guest's os-release
    and hostname (read confined: the guest wrote them)."""

    __slots__ = ("name", "where", "type", "read_only", "mtime", "crtime", "os_release", "hostname")

    def __init__(self, name: str, path: str | PathLike[str], type: str, read_only: bool,  # noqa: A002
                 mtime: float, crtime: float | None, os_release: dict[str, str], hostname: str | None) -> None:
        self.name, self.where, self.type, self.read_only = name, posix.fspath(path), type, read_only
        self.mtime, self.crtime, self.os_release, self.hostname = mtime, crtime, os_release, hostname

    @property
    def path(self) -> Path:
        from pathlib import Path

        return Path(self.where)

    @property
    def vendor(self) -> bool:
        """Shipped under /usr: machinectl never changes these."""
        return _under_usr(self.where)

    def _fields(self) -> tuple:
        return tuple(getattr(self, f) for f in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return self._fields() == other._fields() if isinstance(other, Image) else NotImplemented

    def __hash__(self) -> int:
        return hash((self.name, self.where))

    def __repr__(self) -> str:
        return f"Image({', '.join(f'{f}={getattr(self, f)!r}' for f in self.__slots__)})"


def _under_usr(path: str) -> bool:
    return path == "/usr" or path.startswith("/usr/")


def check_name(name: str, what: str = "image name") -> str:
    """machinectl's image name rule: the machine-name rule (so '/' and '..' are refused)."""
    return names.check_machine_name(name, what)


def _dirs(dirs: tuple[str | PathLike[str], ...] | None) -> list[str]:
    return [posix.fspath(d) for d in dirs] if dirs else list(paths.image_dir_names())


# ---------------------------------------------------------------- one image


def _crtime(path: str) -> float | None:
    """PATH's birth time (statx), None where the file system keeps none."""
    from nsdash.system.birthtime import birth_time

    try:
        return birth_time(path)
    except OSError:
        return None


def _read_only(path: str, kind: str) -> bool:
    parent = path.rsplit("/", 1)[0] or "/" if "/" in path else "."
    if _under_usr(path) or not posix.access(parent, posix.W_OK):
        return True
    try:
        if posix.statvfs(path).f_flag & ST_RDONLY:
            return True
    except OSError:
        pass
    if kind == "raw":
        return not posix.lstat(path).st_mode & 0o222
    if kind == "subvolume":
        import subprocess

        out = subprocess.run(["btrfs", "property", "get", "-ts", path, "ro"], capture_output=True, text=True)
        return out.stdout.strip() == "ro=true"
    from nsdash.system import fsflags

    return fsflags.is_immutable(path, follow=True)  # a symlinked image: its target's


def _guest_facts(path: str) -> tuple[dict[str, str], str | None]:
    """os-release and hostname, read confined to the tree (the guest wrote them)."""
    from nsdash.machines import identity
    from nsdash.system import confined

    release: dict[str, str] = {}
    try:  # noqa: SIM105  (contextlib imports collections and functools: off these verbs' path)
        release = identity.os_release(path)
    except OSError:  # a refused os-release shows as none
        pass
    hostname = None
    try:  # noqa: SIM105
        hostname = confined.read_text(path, "etc/hostname").strip() or None
    except OSError:
        pass
    return release, hostname


def _is_subvolume(path: str, st: posix.stat_result) -> bool:
    if st.st_ino != BTRFS_SUBVOLUME_INODE:
        return False
    from nsdash.launcher import template  # (a `stat -f` run: only for inode 256)

    return template.is_subvolume(path)  # type: ignore[arg-type]


def image_at(name: str, path: str, crtime: bool = True, facts: bool = True) -> Image | None:
    """The image NAME at PATH, None if nothing usable is there.  CRTIME=False leaves its creation
    time out (a statx through ctypes), FACTS=False its os-release and hostname."""
    try:
        st = posix.stat(path)  # symlinks are followed, as machinectl does (machinectl link made them)
    except (OSError, ValueError):
        return None
    kind = st.st_mode & bareos.S_IFMT
    release: dict[str, str] = {}
    hostname = None
    if kind == bareos.S_IFDIR:
        kind_name = "subvolume" if _is_subvolume(path, st) else "directory"
        if facts:
            release, hostname = _guest_facts(path)
    elif kind == bareos.S_IFREG and path.endswith(".raw"):
        kind_name = "raw"
    else:
        return None
    return Image(name, path, kind_name, _read_only(path, kind_name), st.st_mtime,
                 _crtime(path) if crtime else None, release, hostname)


# ---------------------------------------------------------------- the search path


def find(name: str, dirs: tuple[str | PathLike[str], ...] | None = None, crtime: bool = True,
         facts: bool = True) -> Image:
    """The image NAME (the first of the search path), or MachineNotFound in one line.  CRTIME and
    FACTS as image_at() takes them."""
    check_name(name)
    searched = _dirs(dirs)
    for d in searched:
        for candidate in (bareos.join(d, name), bareos.join(d, f"{name}.raw")):
            image = image_at(name, candidate, crtime, facts)
            if image is not None:
                return image
    from nsdash.errors import MachineNotFound

    raise MachineNotFound(f"no image named '{name}'",
                          "see 'nsdash list-images' for the images in " + ", ".join(searched))


def discover(dirs: tuple[str | PathLike[str], ...] | None = None, crtime: bool = True,
             facts: bool = True) -> list[Image]:
    """Every image, the first of each name, sorted by name (hidden and invalid names skipped).
    CRTIME=False leaves the creation times out, FACTS=False the guests' os-release and hostname
    (list-images shows neither)."""
    seen: dict[str, Image] = {}
    for d in _dirs(dirs):
        try:
            entries = sorted(posix.listdir(d))
        except OSError:
            continue
        for entry in entries:
            name = entry[:-4] if entry.endswith(".raw") else entry
            if name.startswith(".") or name in seen or not names.is_valid_hostname(name):
                continue
            image = image_at(name, bareos.join(d, entry), crtime, facts)
            if image is not None:
                seen[name] = image
    return [seen[n] for n in sorted(seen)]


# ---------------------------------------------------------------- who uses an image


def users(image: Image) -> list[str]:
    """Running machines that use IMAGE: those whose root is the tree, and nsdash's
    machines started from it (an --ephemeral one runs on an overlay of it)."""
    return users_of([image])[image.name]


def _same_file(a: str, b: str) -> bool:
    """os.path.samefile: one device and inode, symlinks followed."""
    sa, sb = posix.stat(a), posix.stat(b)
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def users_of(found: list[Image]) -> dict[str, list[str]]:
    """users() of each image, by name, with the machines' roots and nsdash's machines read once."""
    from nsdash.errors import NsdashError
    from nsdash.launcher import treeusers
    from nsdash.machines.registry import nsdash_machines

    roots = treeusers.machine_roots() if any(i.type != "raw" for i in found) else {}
    ours: list[tuple[str, str]] = []  # (machine, its root)
    try:  # noqa: SIM105
        ours = [(m.name, m.root) for m in nsdash_machines() if not m.orphan and m.root]
    except (OSError, NsdashError):
        pass
    out = {}
    for image in found:
        names_ = list(treeusers.tree_users(image.where, roots=roots)) if image.type != "raw" else []
        for machine, root in ours:
            if machine not in names_:
                try:
                    if _same_file(root, image.where):
                        names_.append(machine)
                except OSError:
                    pass
        out[image.name] = names_
    return out
