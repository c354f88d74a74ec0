"""Mount operations: small objects that describe() themselves and execute() in the child.

A LaunchPlan is a list of these.  Only execute() makes system calls; it runs in
the container's PID 1 inside its new mount namespace, before pivot_root, with
ROOT the host path of the future root.  Targets are container paths, resolved
inside ROOT so a symlink in the tree cannot point a mount at the host.

Standard library and nsdash.system.syscalls only: this runs after fork.
"""

from __future__ import annotations

import os
import stat

from nsdash.launcher import sandbox
from nsdash.system.frozen import Frozen
from nsdash.system.syscalls import (
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_STRICTATIME,
    mount,
)

INACCESSIBLE_DIR = "/run/host/inaccessible"
REMOUNT_RO = MS_BIND | MS_REMOUNT | MS_RDONLY


class _At:
    """Targets opened inside the root (openat2 RESOLVE_IN_ROOT) and mounted through
    /proc/self/fd/N: a symlink in the tree, even one swapped in during set-up,
    cannot move a mount out of the root (nsdash.launcher.sandbox)."""

    def __init__(self, root: str) -> None:
        self.root_fd = sandbox.open_root(root)
        self.fds: list[int] = []

    def __enter__(self) -> _At:
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in (*self.fds, self.root_fd):
            os.close(fd)

    def open(self, path: str, *, directory: bool = True, create: bool = True, mode: int = 0o755) -> str:
        """The magic-link path of PATH's object inside the root (what mount(2) should be given)."""
        fd = sandbox.open_in_root(self.root_fd, path, directory=directory, create=create, mode=mode)
        self.fds.append(fd)
        return sandbox.fd_path(fd)

    def is_dir(self, fd_link: str) -> bool:
        return stat.S_ISDIR(os.stat(fd_link).st_mode)

    def existing(self, path: str, missing_ok: bool) -> str | None:
        """open() of something already there (file or directory); None if it is not and MISSING_OK."""
        try:
            return self.open(path, directory=False, create=False)
        except FileNotFoundError:
            if missing_ok:
                return None
            raise FileNotFoundError(2, "no such file or directory", path) from None


class EscapeError(ValueError):
    """A container path whose symlinks climb out of the root."""


def resolve_in_root(root: str, path: str, *, follow_last: bool = True, strict: bool = False) -> str:
    """The host path of container PATH, following symlinks as if ROOT were '/'.

    Absolute symlinks restart at ROOT; '..' never climbs above ROOT (with
    STRICT, trying to is an EscapeError).  Missing components are appended as
    they are, so the result may not exist yet.
    """
    todo = [p for p in path.split("/") if p and p != "."]
    done: list[str] = []
    hops = 0
    while todo:
        part = todo.pop(0)
        if part == "..":
            if not done:
                if strict:
                    raise EscapeError(path)
                continue
            done.pop()
            continue
        candidate = os.path.join(root, *done, part)
        try:
            st = os.lstat(candidate)
        except OSError:
            done.append(part)
            done.extend(p for p in todo if p and p != ".")
            return os.path.join(root, *done)
        if stat.S_ISLNK(st.st_mode) and (todo or follow_last):
            hops += 1
            if hops > 40:
                raise OSError(40, "too many levels of symbolic links", path)
            target = os.readlink(candidate)
            if target.startswith("/"):
                done = []
            todo = [p for p in target.split("/") if p and p != "."] + todo
            continue
        done.append(part)
    return os.path.join(root, *done)


def ensure_dir(path: str, mode: int = 0o755) -> None:
    if not os.path.isdir(path):
        os.makedirs(path, mode=mode, exist_ok=True)


def ensure_file(path: str, mode: int = 0o644) -> None:
    if os.path.lexists(path):
        return
    ensure_dir(os.path.dirname(path))
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, mode))


def _flags_text(flags: int) -> str:
    names = [("ro", MS_RDONLY), ("nosuid", MS_NOSUID), ("nodev", MS_NODEV), ("noexec", MS_NOEXEC)]
    return ",".join(n for n, f in names if flags & f)


class MountOp(Frozen):
    """Base class: one step of the mount plan."""

    def describe(self) -> str:
        raise NotImplementedError

    def execute(self, root: str) -> None:
        raise NotImplementedError


class RootBind(MountOp):
    """Bind the tree onto itself (or onto TARGET) so it is a mount point pivot_root accepts."""

    source: str
    target: str

    def describe(self) -> str:
        return f"bind {self.source} -> {self.target} (container root)"

    def execute(self, root: str) -> None:
        mount(self.source, self.target, None, MS_BIND | MS_REC)


def _overlay_path(path: str) -> str:
    """A path as overlayfs's option parser wants it: ':', ',' and '\\' escaped."""
    return "".join("\\" + c if c in ":,\\" else c for c in path)


class Overlay(MountOp):
    """--overlay / --overlay-ro: host directories stacked at a container path."""

    lower: tuple[str, ...]  # bottom first
    target: str
    upper: str | None = None
    work: str | None = None  # a sibling of UPPER (overlayfs wants both on one file system)
    read_only: bool = False
    make_upper: bool = False  # UPPER is a temporary directory to create first

    def describe(self) -> str:
        top = f" upper={self.upper}" + (" (temporary)" if self.make_upper else "") if self.upper else ""
        return f"overlay lower={':'.join(self.lower)}{top} -> {self.target}" + (" (ro)" if self.read_only else "")

    def execute(self, root: str) -> None:
        data = "lowerdir=" + ":".join(_overlay_path(p) for p in reversed(self.lower))  # top first
        if self.upper and self.work:
            if self.make_upper:
                os.makedirs(self.upper, mode=0o755, exist_ok=True)
            os.makedirs(self.work, mode=0o700, exist_ok=True)
            data += f",upperdir={_overlay_path(self.upper)},workdir={_overlay_path(self.work)}"
        with _At(root) as at:
            mount("overlay", at.open(self.target), "overlay", MS_RDONLY if self.read_only else 0, data)


class VolatileRoot(MountOp):
    """--volatile=yes: a fresh tmpfs becomes the root, with only the tree's /usr in it, read-only,
    and nspawn's links /bin, /lib, /sbin, /lib64 into it."""

    def describe(self) -> str:
        return "volatile root: tmpfs / with the tree's /usr read-only"

    def execute(self, root: str) -> None:
        tree = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            mount("tmpfs", root, "tmpfs", MS_NODEV | MS_STRICTATIME, "mode=0755")
            with _At(root) as at:
                mount(f"/proc/self/fd/{tree}/usr", at.open("/usr"), None, MS_BIND | MS_REC)
                # reopened: the fd taken before the bind names the covered directory
                mount(None, at.open("/usr", create=False), None, REMOUNT_RO)
            # A merged-/usr tree's programs name their loader as /lib64/ld-linux-x86-64.so.2
            # (or /lib/...): without nspawn's base file system links, exec fails with ENOENT.
            for link, targets, probe in BASE_LINKS:
                for target in targets:
                    if os.path.exists(os.path.join(root, target, probe)):
                        os.symlink(target, os.path.join(root, link))
                        break
        finally:
            os.close(tree)


# systemd's base-filesystem table, the links part: /bin, /lib, /sbin and (x86-64) /lib64
# point into /usr where the target holds the probe.
BASE_LINKS = (("bin", ("usr/bin",), ""), ("lib", ("usr/lib",), ""), ("sbin", ("usr/sbin",), ""),
              ("lib64", ("usr/lib/x86_64-linux-gnu", "usr/lib64"), "ld-linux-x86-64.so.2"))


class PivotInto(MountOp):
    """--pivot-root=NEW[:OLD]: the tree's NEW directory becomes the container's root (bound
    over it, before anything else is mounted there), and the whole tree is bound at OLD
    inside it when OLD is given (nspawn otherwise unmounts the old root: it is simply
    never visible here)."""

    new: str
    old: str | None = None

    def describe(self) -> str:
        return f"pivot into {self.new}" + (f" (old root at {self.old})" if self.old else "")

    def execute(self, root: str) -> None:
        with _At(root) as at:
            new = at.open(self.new, create=False)
            if self.old:
                # the whole tree inside NEW first, so the bind of NEW below carries it along
                # (binding it afterwards would copy NEW's own stacked mount over it)
                mount(root, at.open(self.new.rstrip("/") + "/" + self.old.lstrip("/")), None, MS_BIND | MS_REC)
            mount(new, root, None, MS_BIND | MS_REC)


class RootOverlay(MountOp):
    """--ephemeral: an overlay whose upper layer is thrown away at exit."""

    lower: str
    upper: str
    work: str
    target: str

    def describe(self) -> str:
        return f"overlay lower={self.lower} upper={self.upper} -> {self.target} (ephemeral root)"

    def execute(self, root: str) -> None:
        data = f"lowerdir={self.lower},upperdir={self.upper},workdir={self.work}"
        mount("overlay", self.target, "overlay", 0, data)


class Filesystem(MountOp):
    """A fresh kernel or tmpfs file system: proc, sysfs, tmpfs, devpts, mqueue, cgroup2."""

    fstype: str
    target: str
    flags: int = MS_NOSUID | MS_NODEV | MS_NOEXEC
    options: str | None = None
    mode: int = 0o755  # mode of the mount point if it must be created

    def describe(self) -> str:
        opts = ",".join(x for x in (_flags_text(self.flags), self.options) if x)
        return f"mount {self.fstype} {self.target}" + (f" ({opts})" if opts else "")

    def execute(self, root: str) -> None:
        with _At(root) as at:
            mount(self.fstype, at.open(self.target, mode=self.mode), self.fstype, self.flags, self.options)


def tmpfs(target: str, mode: str = "0755", flags: int = MS_NOSUID | MS_NODEV | MS_STRICTATIME,
          extra: str = "") -> Filesystem:
    options = f"mode={mode}" + (f",{extra}" if extra else "")
    return Filesystem("tmpfs", target, flags, options)


class Bind(MountOp):
    """Bind a host path (SOURCE) to a container path; the mount point is made if missing."""

    source: str
    target: str
    read_only: bool = False
    recursive: bool = True
    flags: int = 0  # extra flags for the read-only remount (nosuid, ...)
    source_in_root: bool = False  # SOURCE is a container path (already mounted inside)
    make_source: bool = False  # SOURCE is a temporary directory to create first (--bind=:/PATH)

    def describe(self) -> str:
        kind = "rbind" if self.recursive else "bind"
        src = f"(container){self.source}" if self.source_in_root else self.source
        return (f"{kind} {src}{' (temporary)' if self.make_source else ''} -> {self.target}"
                + (" (ro)" if self.read_only else ""))

    def execute(self, root: str) -> None:
        if self.make_source:
            os.makedirs(self.source, mode=0o755, exist_ok=True)
        with _At(root) as at:
            source = at.open(self.source, directory=False, create=False) if self.source_in_root else self.source
            is_dir = os.path.isdir(source)
            mount(source, at.open(self.target, directory=is_dir), None, MS_BIND | (MS_REC if self.recursive else 0))
            if self.read_only:
                # Reopened: the fd taken before the bind names the covered directory.
                mount(None, at.open(self.target, directory=is_dir, create=False), None, REMOUNT_RO | self.flags)


class DeviceNode(MountOp):
    """A host character device (SOURCE) made anew at a container path with mknod, its mode,
    owner and device number as on the host, as systemd-nspawn makes /dev/null and the rest;
    bound from the host where mknod is refused (EPERM), as nspawn falls back.  A node, not a
    mount: every mount a guest sees costs its shutdown (Debian's umountfs runs a grep for
    each line of /proc/mounts; 9 more there than under nspawn, a process each)."""

    source: str
    target: str

    def describe(self) -> str:
        return f"device {self.source} -> {self.target}"

    def execute(self, root: str) -> None:
        st = os.stat(self.source)
        if not stat.S_ISCHR(st.st_mode):
            raise OSError(19, "not a character device", self.source)  # ENODEV
        parent, name = os.path.split(self.target)
        with _At(root) as at:
            where = at.open(parent)
            try:
                os.mknod(f"{where}/{name}", stat.S_IFCHR | 0o600, st.st_rdev)
            except PermissionError:
                Bind(self.source, self.target, recursive=False).execute(root)
                return
            fd = os.open(f"{where}/{name}", os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:  # through an O_PATH fd of the node just made: no path is looked up twice
                os.chown(sandbox.fd_path(fd), st.st_uid, st.st_gid)
                os.chmod(sandbox.fd_path(fd), stat.S_IMODE(st.st_mode))
            finally:
                os.close(fd)


class ReadOnly(MountOp):
    """Make an existing container path read-only by binding it onto itself."""

    target: str
    flags: int = MS_NOSUID | MS_NODEV | MS_NOEXEC
    missing_ok: bool = True
    recursive: bool = True

    def describe(self) -> str:
        return f"read-only {self.target}"

    def execute(self, root: str) -> None:
        with _At(root) as at:
            path = at.existing(self.target, self.missing_ok)
            if path is None:
                return
            mount(path, path, None, MS_BIND | (MS_REC if self.recursive else 0))
            mount(None, at.open(self.target, directory=False, create=False), None, REMOUNT_RO | self.flags)


class Mask(MountOp):
    """Hide a path behind an empty, mode-000 file or directory (nspawn's 'inaccessible')."""

    target: str
    missing_ok: bool = True

    def describe(self) -> str:
        return f"mask {self.target}"

    def execute(self, root: str) -> None:
        with _At(root) as at:
            path = at.existing(self.target, self.missing_ok)
            if path is None:
                return
            kind = "dir" if at.is_dir(path) else "reg"
            source = at.open(f"{INACCESSIBLE_DIR}/{kind}", directory=(kind == "dir"), create=False)
            sandbox.check_mask_source(int(source.rsplit("/", 1)[1]), f"{INACCESSIBLE_DIR}/{kind}")
            mount(source, path, None, MS_BIND)
            mount(None, at.open(self.target, directory=False, create=False), None,
                  REMOUNT_RO | MS_NOSUID | MS_NODEV | MS_NOEXEC)


class InaccessibleNodes(MountOp):
    """The empty mode-000 file and directory that Mask binds over hidden paths."""

    def describe(self) -> str:
        return f"create {INACCESSIBLE_DIR}/{{reg,dir}} (mode 000)"

    def execute(self, root: str) -> None:
        base = resolve_in_root(root, INACCESSIBLE_DIR)
        ensure_dir(base)
        ensure_dir(os.path.join(base, "dir"), 0)
        os.chmod(os.path.join(base, "dir"), 0)
        ensure_file(os.path.join(base, "reg"), 0)
        os.chmod(os.path.join(base, "reg"), 0)


class Symlink(MountOp):
    target: str
    points_to: str
    replace: bool = False

    def describe(self) -> str:
        return f"symlink {self.target} -> {self.points_to}"

    def execute(self, root: str) -> None:
        path = resolve_in_root(root, self.target, follow_last=False)
        if os.path.lexists(path):
            if not self.replace or (os.path.islink(path) and os.readlink(path) == self.points_to):
                return  # the tree's own, or already right (/etc/localtime on every start)
            os.unlink(path)
        ensure_dir(os.path.dirname(path))
        os.symlink(self.points_to, path)


class WriteFile(MountOp):
    """Write CONTENT to a container path (host data copied in: os-release, resolv.conf)."""

    target: str
    content: bytes
    mode: int = 0o644
    replace: bool = True  # False: leave an existing non-regular file (symlink) alone

    def describe(self) -> str:
        return f"write {self.target} ({len(self.content)} bytes)"

    def execute(self, root: str) -> None:
        path = resolve_in_root(root, self.target, follow_last=False)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is not None:
            if not self.replace and not stat.S_ISREG(st.st_mode):
                return
            if stat.S_ISLNK(st.st_mode):
                os.unlink(path)
            elif stat.S_ISREG(st.st_mode) and st.st_size == len(self.content) and _same_content(path, self.content):
                # Unchanged (the common case: resolv.conf, localtime on every start).  Rewriting
                # would cost a synchronous flush on ext4, whose auto_da_alloc guards truncate+write.
                if stat.S_IMODE(st.st_mode) != self.mode:
                    os.chmod(path, self.mode)
                return
        ensure_dir(os.path.dirname(path))
        if st is not None and stat.S_IFMT(st.st_mode) not in (stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK):
            os.unlink(path)  # a FIFO, socket or device node: opening it could block or write elsewhere
        # O_NONBLOCK: should a FIFO appear here meanwhile, fail (ENXIO) rather than hang.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK,
                     self.mode)
        try:
            os.write(fd, self.content)
        finally:
            os.close(fd)


def _same_content(path: str, content: bytes) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode) and os.read(fd, len(content) + 1) == content
    finally:
        os.close(fd)


class MakeDir(MountOp):
    target: str
    mode: int = 0o755

    def describe(self) -> str:
        return f"mkdir {self.target}"

    def execute(self, root: str) -> None:
        with _At(root) as at:
            at.open(self.target, mode=self.mode)


class RemountRoot(MountOp):
    """--read-only: the root's own mount becomes read-only (API file systems stay as they are)."""

    target: str

    def describe(self) -> str:
        return "remount / read-only"

    def execute(self, root: str) -> None:
        mount(None, self.target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)


class Delete(MountOp):
    """Remove a file from the tree (--resolv-conf=delete, --timezone=delete)."""

    target: str

    def describe(self) -> str:
        return f"delete {self.target}"

    def execute(self, root: str) -> None:
        path = resolve_in_root(root, self.target, follow_last=False)
        if os.path.lexists(path) and not os.path.isdir(path):
            os.unlink(path)


class HostSysReadOnly(MountOp):
    """-U without a private network: the host's /sys, bound recursively (a user namespace that
    does not own the network namespace may not mount sysfs, nor bind /sys without what is
    mounted below it) and made read-only all the way down with mount_setattr."""

    target: str = "/sys"

    def describe(self) -> str:
        return f"rbind /sys -> {self.target} (ro, recursively)"

    def execute(self, root: str) -> None:
        with _At(root) as at:
            mount("/sys", at.open(self.target), None, MS_BIND | MS_REC)
            fd = sandbox.open_in_root(at.root_fd, self.target, create=False)
            try:
                sandbox.read_only_recursive(fd)
            finally:
                os.close(fd)
