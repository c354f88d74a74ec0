"""User namespaces: --private-users=, -U and --private-users-ownership=, as systemd-nspawn defines them.

  no         no user namespace (the default; container root is host root)
  yes        a namespace whose base is the UID owning the tree's root
             directory, 65536 IDs
  pick       a free 64K range chosen from the machine name (rule below)
  identity   0:65536 mapped onto itself: only the namespace's isolation
  UID[:N]    an explicit base and size (size defaults to 65536)

-U means --private-users=pick --private-users-ownership=auto.

The "pick" rule: ranges are 64K-aligned slots between 0x00080000 and
0x6FFF0000 (nspawn's container range).  The first slot tried is
sha256(machine name) modulo the number of slots, so a machine gets the same
range every time (its files keep their owners between runs); if the tree's
root is already owned by a UID at the start of a slot (an earlier pick), that
slot is reused.  A slot overlapping a range in use (another machine, a host
user in /etc/passwd, a range in /etc/subuid) is skipped for the next one.

Ownership: off leaves the tree's files alone; chown shifts them into the range
once (and back never); map mounts the tree through an idmapped mount, so its
files keep their on-disk owners 0..SIZE-1, the container sees them as its own
0..SIZE-1 and its processes run as BASE+U on the host (a file container root
creates lands on disk owned by 0); auto is map where the kernel and the tree's
file system support it, else chown.  Whether they do is not guessed: the
supervisor tries to make the idmapped mount once the container's user
namespace exists (with it as the mapping), and auto falls back to chown only
when the kernel refuses.  -x/--ephemeral puts the overlay's empty upper layer
(owned by the range) over the idmapped tree, so the tree is never written.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from collections.abc import Iterable
from pathlib import Path

from nsdash.errors import UsageError
from nsdash.system.frozen import Frozen

TYPE_CHECKING = False  # mypy reads this as True; typing stays off the spawn path
if TYPE_CHECKING:
    from nsdash.launcher.modes import Ownership

RANGE_SIZE = 0x10000
PICK_FIRST = 0x00080000
PICK_LAST = 0x6FFF0000  # exclusive
SLOTS = (PICK_LAST - PICK_FIRST) // RANGE_SIZE
MAX_UID = 0xFFFFFFFE

MODES = ("no", "yes", "pick", "identity")
OWNERSHIP: tuple[Ownership, ...] = ("off", "chown", "map", "auto")
_FALSE = {"no", "false", "0", "off"}
_TRUE = {"yes", "true", "1", "on"}


class PrivateUsers(Frozen):
    """The parsed option: MODE is one of MODES or "fixed" (with BASE and SIZE)."""

    mode: str = "no"
    base: int | None = None
    size: int = RANGE_SIZE

    @property
    def enabled(self) -> bool:
        return self.mode != "no"


def parse_private_users(value: str) -> PrivateUsers:
    """--private-users=VALUE, or a clean UsageError."""
    v = value.strip().lower()
    if v in _FALSE:
        return PrivateUsers("no")
    if v in _TRUE:
        return PrivateUsers("yes")
    if v in ("pick", "identity"):
        return PrivateUsers(v, 0 if v == "identity" else None)
    base_s, _, size_s = value.partition(":")
    try:
        base = int(base_s, 10)
        size = int(size_s, 10) if size_s else RANGE_SIZE
    except ValueError:
        raise UsageError(f"invalid --private-users= value '{value}'",
                         "use no, yes, pick, identity, UID or UID:RANGE") from None
    if base < 0 or size <= 0 or base + size - 1 > MAX_UID:
        raise UsageError(f"--private-users= range '{value}' is outside 0..{MAX_UID}",
                         "give a base UID and a positive size that fit in 32 bits")
    return PrivateUsers("fixed", base, size)


def parse_ownership(value: str) -> Ownership:
    v = value.strip().lower()
    if v in _FALSE:
        return "off"
    for mode in OWNERSHIP:  # a loop, not `in`: it narrows str to the Literal for mypy
        if v == mode:
            return mode
    raise UsageError(f"invalid --private-users-ownership= value '{value}'",
                     "use off, chown, map or auto")


def first_slot(machine: str) -> int:
    """The slot index the pick rule tries first for MACHINE."""
    import hashlib  # only -U=pick needs it: not on every spawn's import path

    digest = hashlib.sha256(machine.encode()).digest()
    return int.from_bytes(digest[:8], "big") % SLOTS


def _overlaps(base: int, size: int, used: Iterable[tuple[int, int]]) -> bool:
    return any(base < b + n and b < base + size for b, n in used)


def pick_base(machine: str, used: Iterable[tuple[int, int]] = (), root_owner: int | None = None) -> int:
    """A free 64K-aligned base for MACHINE (see the module's rule)."""
    used = list(used)
    if (root_owner is not None and PICK_FIRST <= root_owner < PICK_LAST
            and (root_owner - PICK_FIRST) % RANGE_SIZE == 0
            and not _overlaps(root_owner, RANGE_SIZE, used)):
        return root_owner
    start = first_slot(machine)
    for i in range(SLOTS):
        base = PICK_FIRST + ((start + i) % SLOTS) * RANGE_SIZE
        if not _overlaps(base, RANGE_SIZE, used):
            return base
    raise UsageError("no free 64K UID range is left for --private-users=pick",
                     "stop a machine or give --private-users=UID:RANGE")


def host_ranges(etc: Path = Path("/etc")) -> list[tuple[int, int]]:
    """UID ranges the host uses: each passwd entry (size 1) and each subuid range."""
    used: list[tuple[int, int]] = []
    try:
        for line in (etc / "passwd").read_text().splitlines():
            fields = line.split(":")
            if len(fields) > 2 and fields[2].isdigit():
                used.append((int(fields[2]), 1))
    except OSError:
        pass
    try:
        for line in (etc / "subuid").read_text().splitlines():
            fields = line.split(":")
            if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
                used.append((int(fields[1]), int(fields[2])))
    except OSError:
        pass
    return used


def resolve_range(opt: PrivateUsers, machine: str, root: Path,
                  used: Iterable[tuple[int, int]] = ()) -> tuple[int, int] | None:
    """(base, size) of the namespace to create, or None for no namespace."""
    if not opt.enabled:
        return None
    if opt.mode == "identity":
        return (0, RANGE_SIZE)
    if opt.mode == "fixed":
        assert opt.base is not None
        return (opt.base, opt.size)
    owner = os.stat(root).st_uid
    if opt.mode == "yes":
        return (owner, RANGE_SIZE)
    return (pick_base(machine, used, owner), RANGE_SIZE)


def id_map(base: int, size: int) -> str:
    """The text written to /proc/PID/uid_map and gid_map: container 0 is host BASE."""
    return f"0 {base} {size}\n"


def write_id_maps(pid: int, base: int, size: int) -> None:
    """Map the child's new user namespace (the parent does this, as root on the host)."""
    for name in ("uid_map", "gid_map"):
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write(id_map(base, size))


def shift_ownership(root: Path, base: int, size: int) -> int:
    """--private-users-ownership=chown: move every file's owner (and the IDs its ACLs name)
    from U to BASE+U.

    Files already inside [BASE, BASE+SIZE) are left alone, so a second run is
    a no-op; an owner outside both ranges cannot be mapped and is refused.
    The root directory is shifted last, so a root owned by BASE means a walk
    that finished (already_shifted).  Returns the number of inodes changed.
    Never follows symlinks, never leaves the tree's file system.
    """
    changed = 0
    top_dev = os.lstat(root).st_dev
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.lstat(os.path.join(dirpath, d)).st_dev == top_dev]
        for name in [*dirnames, *filenames]:
            changed += _shift_one(os.path.join(dirpath, name), base, size)
    return changed + _shift_one(str(root), base, size)


def already_shifted(root: Path, base: int) -> bool:
    """True if a chown walk into BASE's range finished on ROOT (its root is shifted last),
    as systemd-nspawn judges it: later starts skip the walk."""
    st = os.lstat(root)
    return base != 0 and (st.st_uid, st.st_gid) == (base, base)


def _shift_one(path: str, base: int, size: int) -> int:
    st = os.lstat(path)
    uid, gid = _shift(st.st_uid, base, size, path), _shift(st.st_gid, base, size, path)
    if (uid, gid) == (st.st_uid, st.st_gid):
        return 0
    mode = st.st_mode
    os.lchown(path, uid, gid)
    # chown clears set-id bits; put them back (not on symlinks).
    if not stat.S_ISLNK(mode) and mode & (stat.S_ISUID | stat.S_ISGID):
        os.chmod(path, stat.S_IMODE(mode))
    if not stat.S_ISLNK(mode):
        _shift_acls(path, stat.S_ISDIR(mode), base, size)
    return 1


_ACL_NAMED = (0x02, 0x08)  # ACL_USER, ACL_GROUP: the entries that carry an ID


def _shift_acls(path: str, is_dir: bool, base: int, size: int) -> None:
    """As nspawn's chown: the users and groups a POSIX ACL names move into the range too
    (Debian's journal directory grants group adm by ACL)."""
    for name in ("system.posix_acl_access", "system.posix_acl_default") if is_dir else ("system.posix_acl_access",):
        try:
            value = bytearray(os.getxattr(path, name, follow_symlinks=False))
        except OSError as e:
            if e.errno in (errno.ENODATA, errno.EOPNOTSUPP):
                continue  # no ACL (the common case), or a file system without them
            raise
        for off in range(4, len(value) - 7, 8):  # after the version word: (tag u16, perm u16, id u32)
            tag, ident = struct.unpack_from("<H2xI", value, off)
            if tag in _ACL_NAMED:
                struct.pack_into("<I", value, off + 4, _shift(ident, base, size, f"{path} ({name})"))
        os.setxattr(path, name, bytes(value), follow_symlinks=False)


def _shift(ident: int, base: int, size: int, path: str) -> int:
    if base <= ident < base + size:
        return ident
    if ident < size:
        return base + ident
    raise UsageError(f"{path} is owned by ID {ident}, outside both 0..{size - 1} and the "
                     f"container range {base}..{base + size - 1}",
                     "fix the tree's ownership or choose another --private-users= range")


def effective_ownership(ownership: Ownership, root_uid: int, base: int, size: int, ephemeral: bool) -> Ownership:
    """The ownership mode a start uses, or a UsageError for a combination that cannot work.

    auto means map only while the tree's root still has its on-disk owner from
    0..SIZE-1: a tree an earlier chown shifted into the range stays on chown.
    """
    if ownership == "auto" and root_uid >= size and base <= root_uid < base + size:
        ownership = "chown"
    if ownership == "map" and root_uid >= size:
        raise UsageError(f"--private-users-ownership=map needs a tree owned by IDs 0..{size - 1}; "
                         f"its root is owned by {root_uid}",
                         "use --private-users-ownership=chown for a tree shifted by an earlier chown")
    if ephemeral and ownership == "chown":
        raise UsageError("--private-users-ownership=chown would rewrite the tree's owners, which "
                         "-x/--ephemeral leaves unchanged",
                         "use --private-users-ownership=map (or auto), or drop -x")
    return ownership


def prepare_tree(tree: str, base: int, size: int, ownership: Ownership) -> None:
    """Before start: bring the tree's owners into the range (chown; map and auto wait for
    the user namespace, see idmapped_tree)."""
    if ownership == "chown":
        shift_tree(tree, base, size)


def shift_tree(tree: str, base: int, size: int) -> None:
    """chown, skipping the walk on a tree a finished earlier walk shifted."""
    if not already_shifted(Path(tree), base):
        shift_ownership(Path(tree), base, size)


def idmapped_tree(tree: str, userns_path: str) -> int:
    """A detached, recursive clone of TREE's mounts, idmapped through the user namespace
    at USERNS_PATH (on-disk U shows as that namespace's U).  Returns its fd; OSError if
    the kernel or the file system cannot (EINVAL: the file system lacks idmap support)."""
    from nsdash.system import syscalls as sc

    ns_fd = os.open(userns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fd = sc.open_tree(-100, tree, sc.OPEN_TREE_CLONE | sc.OPEN_TREE_CLOEXEC | sc.AT_RECURSIVE)
        try:
            sc.mount_setattr(fd, "", sc.AT_EMPTY_PATH | sc.AT_RECURSIVE, sc.MOUNT_ATTR_IDMAP, 0, ns_fd)
        except OSError:
            os.close(fd)
            raise
        return fd
    finally:
        os.close(ns_fd)


def idmap_refusal(tree: str, err: OSError, ephemeral: bool = False) -> UsageError:
    """The one-line error for an idmapped mount the kernel refused."""
    types = fs_types(tree)
    if err.errno != 22:  # EINVAL is the file system's answer; anything else the kernel's
        cause = f"the kernel refused an idmapped mount ({os.strerror(err.errno or 0)})"
    elif len(types) > 1:
        cause = (f"the file systems at and below it ({', '.join(types)}) do not all support "
                 "idmapped mounts")
    else:
        cause = f"its file system ({types[0] if types else 'unknown'}) does not support idmapped mounts"
    return UsageError(f"cannot mount {tree} with --private-users-ownership=map: {cause}",
                      "move the tree to a file system with idmap support (ext4, xfs, btrfs, tmpfs)"
                      + (" or run it without -U" if ephemeral else " or use --private-users-ownership=chown"))


def fs_types(tree: str) -> list[str]:
    """The types of the file systems mounted at or below TREE (its own first), from mountinfo."""
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
        top = fs_type(tree)
    except OSError:
        return []
    real = os.path.realpath(tree).rstrip("/") + "/"
    below = []
    for line in lines:
        fields = line.split()
        point = fields[4].replace("\\040", " ") + "/" if len(fields) > 4 else ""
        if point.startswith(real) and point != real and " - " in line:
            below.append(line.split(" - ", 1)[1].split()[0])
    return [top, *sorted(set(below) - {top})]


def fs_type(path: str) -> str:
    """The type of the file system PATH lives on (from /proc/self/mountinfo), or "unknown"."""
    try:
        dev = os.stat(path).st_dev
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return "unknown"
    want = f"{os.major(dev)}:{os.minor(dev)}"
    for line in reversed(lines):  # the last mount of that device is the one on top
        fields = line.split()
        if len(fields) > 2 and fields[2] == want and " - " in line:
            return line.split(" - ", 1)[1].split()[0]
    return "unknown"


def delegate_cgroup(directory: Path, base: int) -> None:
    """Hand the machine's cgroup2 directory to the container's root, as nspawn does with -U,
    so an init inside can create its own sub-cgroups."""
    for name in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
        path = directory / name if name else directory
        if path.exists():
            os.chown(path, base, base)


def hand_over(run_dir: Path, base: int, ephemeral_dir: str | None = None) -> None:
    """What the container's root must reach from inside: the notify socket (through the
    run directory, which only gains search permission), and for -x the overlay's upper
    and work directories (it mounts the overlay itself, as itself).  Its console PTY is
    made in its own devpts, so is its own already."""
    os.chmod(run_dir, 0o711)
    if ephemeral_dir:
        os.chmod(ephemeral_dir, 0o711)
        for sub in ("upper", "work"):
            os.chown(os.path.join(ephemeral_dir, sub), base, base)
    notify = run_dir / "notify"
    if notify.exists():
        os.chown(notify, base, base)
