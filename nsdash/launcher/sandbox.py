"""Sandbox checks and set-up steps the container's child runs (standard library only).

Everything here runs after clone, in the child, so it imports nothing but the
standard library and nsdash.errors.  Each check fails closed: if the sandbox
is not what the plan promised, the container does not start.

- install_seccomp: load the filters the parent compiled (nsdash.launcher.seccomp);
- join_session_keyring: a fresh anonymous session keyring, so the caller's
  keys never reach the container (before seccomp, which denies keyctl);
- verify_masks / verify_read_only: masked paths read nothing, read-only paths
  are on read-only mounts;
- open_mask_source: /dev/null (char 1:3) or an empty read-only file, opened
  with O_PATH|O_NOFOLLOW so a swapped symlink cannot stand in for it;
- open_in_root / mount_at_fd: resolve bind, tmpfs, inaccessible and journal
  targets with openat2(RESOLVE_IN_ROOT) and mount through the opened fd, so
  absolute or ../ symlinks (even ones swapped during set-up) stay inside;
- refuse_symlinked_api_dirs: a tree whose /proc, /sys or /dev is a symlink;
- cloexec_all_but_console / verify_fds_before_exec: nothing but fds 0-2
  survives exec;
- verify_cwd_inside_root: after chdir, the working directory is reachable
  from the new root.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat

from nsdash.errors import NsdashError
from nsdash.system import syscalls as sc

# The directories a container's API file systems are mounted on.
API_DIRS = ("proc", "sys", "dev")


class SandboxError(NsdashError):
    """The sandbox is not what the plan promised; the container must not start."""


# ------------------------------------------------------------------ seccomp

def pack_filters(programs: tuple[bytes, ...] | list[bytes]) -> bytes:
    """Several classic-BPF programs as one blob: each one's byte length (4 bytes,
    little-endian), then its instructions.  The plan carries and caches this."""
    return b"".join(len(p).to_bytes(4, "little") + p for p in programs)


def unpack_filters(blob: bytes) -> list[bytes]:
    """pack_filters' inverse; SandboxError if the blob is not well formed."""
    programs: list[bytes] = []
    pos = 0
    while pos < len(blob):
        size = int.from_bytes(blob[pos:pos + 4], "little")
        program = blob[pos + 4:pos + 4 + size]
        if pos + 4 > len(blob) or not size or size % 8 or len(program) != size:
            break
        programs.append(program)
        pos += 4 + size
    if not programs or pos != len(blob):
        raise SandboxError(f"the system-call filter is malformed ({len(blob)} bytes)",
                           "this is a bug in nsdash; rerun with NSDASH_DEBUG=1 and report it")
    return programs


def install_seccomp(blob: bytes) -> None:
    """Load the classic-BPF filters packed in BLOB (pack_filters), in order.

    The kernel runs every filter on each call and the strictest answer wins.
    It accepts a filter with no_new_privs set or CAP_SYS_ADMIN in the current
    user namespace, so call this before the last capability drop.
    """
    for program in unpack_filters(blob):
        try:
            sc.seccomp_set_mode_filter(program)
        except OSError as e:
            err = e.errno or 0
            # The container's own lists cannot cause EPERM here (the guard, loaded first, allows
            # prctl; a filter does not apply to its own loading): an outer filter refuses it.
            hint = ("keep CAP_SYS_ADMIN or pass --no-new-privileges=yes" if err == errno.EACCES
                    else "the kernel lacks CONFIG_SECCOMP_FILTER" if err == errno.EINVAL
                    else "an outer system-call filter refuses to load another; run nsdash outside that sandbox"
                    if err == errno.EPERM
                    else "run with NSDASH_DEBUG=1 for details")
            raise SandboxError(f"cannot install the system-call filter: {os.strerror(err)}", hint) from None


# ------------------------------------------------------------------ keyring

def join_session_keyring() -> None:
    """Join a fresh, anonymous session keyring (call before seccomp denies keyctl)."""
    try:
        sc.keyctl_join_session_keyring()
    except OSError as e:
        # A kernel without CONFIG_KEYS has no keys to leak.  Nor does a caller that a seccomp
        # filter keeps from keyctl (nsdash run inside a machine): the filter is inherited.
        if e.errno not in (errno.ENOSYS, errno.EOPNOTSUPP) and not (e.errno == errno.EPERM and _filtered()):
            raise SandboxError(f"cannot join a fresh session keyring: {e.strerror}",
                               "the container would share the caller's keys") from None


def _filtered() -> bool:
    """True if this process runs under a seccomp filter (/proc/self/status Seccomp: 2)."""
    try:
        with open("/proc/self/status") as f:
            return any(line.split() == ["Seccomp:", "2"] for line in f)
    except OSError:
        return False


# ------------------------------------------------------------------ masks

def _is_dev_null(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3


def check_mask_source(fd: int, what: str) -> None:
    """Accept only the null device (char 1:3), or an empty file or directory that
    cannot be written (no write bits, or on a read-only mount)."""
    st = os.fstat(fd)
    unwritable = not st.st_mode & 0o222 or bool(os.fstatvfs(fd).f_flag & os.ST_RDONLY)
    empty_dir = stat.S_ISDIR(st.st_mode) and st.st_nlink <= 2 and not _dir_entries(fd)
    ok = _is_dev_null(st) or (unwritable and (
        (stat.S_ISREG(st.st_mode) and st.st_size == 0) or empty_dir))
    if not ok:
        raise SandboxError(f"mask source {what} is neither the null device (1:3) nor an "
                           "empty read-only file or directory", "refusing to mask paths with it")


def _dir_entries(fd: int) -> list[str]:
    dfd = os.open(fd_path(fd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return os.listdir(dfd)
    finally:
        os.close(dfd)


def open_mask_source(path: str) -> int:
    """Open a mask source with O_PATH|O_NOFOLLOW and check what it really is.

    Returns the O_PATH fd; bind it through fd_path() so nothing can be
    swapped in between the check and the mount.
    """
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise SandboxError(f"mask source {path} cannot be opened: {e.strerror}",
                           "the container needs a real /dev/null to mask paths") from None
    try:
        check_mask_source(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def masked_ok(path: str) -> bool:
    """True if PATH exposes nothing: absent, the null device, an empty read-only
    file, or an empty directory on a read-only mount."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return True
    if _is_dev_null(st):
        return True
    if stat.S_ISDIR(st.st_mode):
        return not os.listdir(path) and bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    if stat.S_ISREG(st.st_mode):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            # Unopenable (EACCES/EPERM) is masked enough for a read; but it must
            # not be writable either.
            return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
        try:
            # /proc files report size 0, so only a read tells what they hold.
            return os.read(fd, 1) == b"" and bool(os.fstatvfs(fd).f_flag & os.ST_RDONLY)
        finally:
            os.close(fd)
    return False


def verify_masks(root: str, masked: list[str] | tuple[str, ...]) -> None:
    """Refuse to start unless every masked path under ROOT really is masked."""
    bad = [p for p in masked if not masked_ok(_under(root, p))]
    if bad:
        raise SandboxError(f"masked path(s) still readable after set-up: {', '.join(bad)}",
                           "refusing to start; the host kernel or /proc layout is unexpected")


def verify_read_only(root: str, paths: list[str] | tuple[str, ...]) -> None:
    """Refuse to start unless every existing path is on a read-only mount."""
    bad = []
    for p in paths:
        full = _under(root, p)
        try:
            if not os.statvfs(full).f_flag & os.ST_RDONLY:
                bad.append(p)
        except FileNotFoundError:
            continue
    if bad:
        raise SandboxError(f"path(s) meant read-only are writable: {', '.join(bad)}",
                           "refusing to start; the read-only remount did not take")


def _under(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/")) if root not in ("", "/") else path


# ------------------------------------------------------------------ paths in the root

def refuse_symlinked_api_dirs(root: str) -> None:
    """A tree whose /proc, /sys or /dev is a symlink could aim the API mounts at the host."""
    for name in API_DIRS:
        path = os.path.join(root, name)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            raise SandboxError(f"{path} is a symlink (to {os.readlink(path)})",
                               f"the tree's /{name} must be a directory; remove the link")
        if not stat.S_ISDIR(st.st_mode):
            raise SandboxError(f"{path} is not a directory",
                               f"the tree's /{name} must be a directory")


MAX_SYMLINK_HOPS = 40


def _open_resolved(root_fd: int, parts: list[str], directory: bool) -> int:
    """Open an already symlink-free path; a symlink swapped in since fails (ELOOP)."""
    return sc.openat2(root_fd, "/".join(parts) or ".",
                      os.O_PATH | os.O_NOFOLLOW | (os.O_DIRECTORY if directory else 0),
                      sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_SYMLINKS)


def _open_plain(root_fd: int, parts: list[str], directory: bool) -> int:
    """The common case in one call: a path that exists with no symlink anywhere on it, opened
    as the walk in open_in_root ends (the same openat2, which refuses any symlink on the way:
    RESOLVE_NO_SYMLINKS).  -1 when it is not that case (a component missing, a symlink on the
    way or at the end, not a directory): the walk then follows, creates or refuses, and says
    why.  A container's set-up opens some 40 such paths before its init runs; walking each
    component (open the parent, lstat, close) made that ~500 system calls instead of ~80."""
    try:
        fd = _open_resolved(root_fd, parts, directory)
    except OSError:
        return -1
    # O_PATH|O_NOFOLLOW opens a symlink in the last component as itself: the walk resolves it.
    if stat.S_ISLNK(os.fstat(fd).st_mode):
        os.close(fd)
        return -1
    return fd


def open_root(root: str) -> int:
    """An O_PATH fd of the container's root on the host, for open_in_root()."""
    return os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def open_in_root(root_fd: int, path: str, *, directory: bool = True, create: bool = True,
                 mode: int = 0o755) -> int:
    """Open PATH (container-absolute) as an O_PATH fd, resolved as if ROOT_FD were /.

    Symlinks are followed by hand the way the container would see them: an
    absolute target restarts at the root, '..' stops at the root.  Missing
    components (even behind a symlink) are created relative to an fd of their
    already-resolved parent (mkdirat/openat never follow a last-component
    symlink), and every open uses RESOLVE_IN_ROOT|RESOLVE_NO_SYMLINKS, so the
    kernel guarantees the object is under the root and a symlink swapped in
    during set-up makes the open fail instead of redirecting it.
    """
    todo = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in todo:
        raise SandboxError(f"container path {path} contains '..'", "give a normalised absolute path")
    fd = _open_plain(root_fd, todo, directory)
    if fd >= 0:
        return fd
    done: list[str] = []
    hops = 0
    while todo:
        name = todo.pop(0)
        if name == "..":
            done = done[:-1]
            continue
        if name in ("", "."):
            continue
        last = not todo
        parent = _open_resolved(root_fd, done, True)
        try:
            try:
                st = os.lstat(name, dir_fd=parent)
            except FileNotFoundError:
                if not create:
                    raise
                # mkdirat/openat(O_EXCL) never follow a symlink in the last component.
                if directory or not last:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, mode if last else 0o755, dir_fd=parent)
                else:
                    with contextlib.suppress(FileExistsError):
                        os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                         | os.O_CLOEXEC, mode & 0o666, dir_fd=parent))
                st = os.lstat(name, dir_fd=parent)
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise SandboxError(f"too many symlinks resolving {path} inside the tree",
                                       "the tree has a symlink loop there")
                target = os.readlink(name, dir_fd=parent)
                if target.startswith("/"):
                    done = []
                todo = [p for p in target.split("/") if p not in ("", ".")] + todo
                continue
        finally:
            os.close(parent)
        done.append(name)
    return _open_resolved(root_fd, done, directory)


def fd_path(fd: int) -> str:
    """The magic link that names the object behind FD; mount(2) follows it to that object."""
    return f"/proc/self/fd/{fd}"


def mount_at_fd(source: str | None, target_fd: int, fstype: str | None, flags: int = 0,
                data: str | None = None) -> None:
    """mount(2) onto the object TARGET_FD holds (not onto whatever a path names now)."""
    sc.mount(source, fd_path(target_fd), fstype, flags, data)


def bind_in_root(root: str, source: str, target: str, *, recursive: bool = True,
                 directory: bool | None = None) -> None:
    """Bind SOURCE (host path) onto TARGET (container path) resolved inside ROOT."""
    if directory is None:
        directory = os.path.isdir(source)
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        tfd = open_in_root(root_fd, target, directory=directory)
        try:
            mount_at_fd(source, tfd, None, sc.MS_BIND | (sc.MS_REC if recursive else 0))
        finally:
            os.close(tfd)
    finally:
        os.close(root_fd)


# ------------------------------------------------------------------ before exec

def cloexec_all_but_console() -> None:
    """Mark every fd above 2 close-on-exec (close_range(CLOSE_RANGE_CLOEXEC))."""
    try:
        sc.close_range(3, 0xFFFFFFFF, sc.CLOSE_RANGE_CLOEXEC)
        return
    except OSError as e:
        if e.errno not in (errno.ENOSYS, errno.EINVAL):
            raise
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            with contextlib.suppress(OSError):
                os.set_inheritable(fd, False)


def fds_surviving_exec() -> list[int]:
    """Open fds above 2 without FD_CLOEXEC (what the exec'd program would inherit)."""
    out = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd <= 2:
            continue
        try:
            flags = fcntl.fcntl(fd, fcntl.F_GETFD)
        except OSError:  # the directory fd listdir used, already closed
            continue
        if not flags & fcntl.FD_CLOEXEC:
            out.append(fd)
    return out


def verify_fds_before_exec() -> None:
    leaked = fds_surviving_exec()
    if leaked:
        raise SandboxError(f"file descriptor(s) {leaked} would leak into the container",
                           "this is a bug in nsdash; rerun with NSDASH_DEBUG=1 and report it")


def verify_cwd_inside_root() -> None:
    """After pivot_root and chdir, the working directory must lie under the new /.

    getcwd(3) fails (ENOENT, "unreachable") when the cwd is outside the root;
    walking up with '..' must reach the root's own inode.
    """
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = ""
    if not cwd.startswith("/"):
        raise SandboxError("the working directory lies outside the container's root",
                           "pass a --chdir= path that exists inside the tree")
    root = os.stat("/")
    here = os.stat(".")
    for _ in range(4096):
        if (here.st_dev, here.st_ino) == (root.st_dev, root.st_ino):
            return
        up = os.stat(os.path.join(*([".."] * (_ + 1))))
        if (up.st_dev, up.st_ino) == (here.st_dev, here.st_ino):
            break
        here = up
    raise SandboxError("the working directory lies outside the container's root",
                       "pass a --chdir= path that exists inside the tree")


def seccomp_mode() -> int:
    """0 none, 1 strict, 2 filter: what /proc/self/status calls Seccomp."""
    return sc.prctl(sc.PR_GET_SECCOMP)


def no_new_privs() -> bool:
    return bool(sc.prctl(sc.PR_GET_NO_NEW_PRIVS))


def read_only_recursive(path_fd: int) -> None:
    """mount_setattr(AT_RECURSIVE): the mount at PATH_FD and every mount below it read-only,
    nosuid, nodev, noexec in one step (a remount only reaches the top one)."""
    sc.mount_setattr(path_fd, "", sc.AT_EMPTY_PATH | sc.AT_RECURSIVE,
                     sc.MOUNT_ATTR_RDONLY | sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NODEV | sc.MOUNT_ATTR_NOEXEC)
