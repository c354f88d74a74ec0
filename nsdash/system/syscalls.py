"""One tiny wrapper per system call the standard library lacks (ctypes).

Constants are named as in the kernel headers.  Each wrapper checks the return
value and raises OSError(errno, message, path); none holds policy.  This module
uses only the standard library: it runs in the container's child process.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

try:  # glibc's name first: find_library would run ldconfig in a subprocess on every start
    _libc = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    import ctypes.util  # it imports subprocess and tempfile: only off glibc

    _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_STRICTATIME = 1 << 24

MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NAME = 15
PR_GET_SECCOMP = 21
PR_SET_SECCOMP = 22
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39


def _check(ret: int, what: str, path: str | None = None) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)
    return ret


def _b(path: str | bytes | None) -> bytes | None:
    if path is None:
        return None
    return path if isinstance(path, bytes) else os.fsencode(path)


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    _check(_libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)),
           "mount", target)


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), ctypes.c_int(flags)), "umount2", target)


def pivot_root(new_root: str, put_old: str) -> None:
    nr = 155  # x86_64 SYS_pivot_root
    if os.uname().machine == "aarch64":
        nr = 41
    _check(_libc.syscall(ctypes.c_long(nr), _b(new_root), _b(put_old)), "pivot_root", new_root)


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3),
                              ctypes.c_ulong(arg4), ctypes.c_ulong(arg5)), "prctl")


PER_LINUX = 0x0000
PER_LINUX32 = 0x0008
PERSONALITY_QUERY = 0xFFFFFFFF


def personality(persona: int) -> int:
    """personality(2): set the execution domain; returns the previous one."""
    return _check(_libc.personality(ctypes.c_ulong(persona)), "personality")


# ---- capabilities (added by the launcher) ----------------------------------

PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
PR_SET_KEEPCAPS = 8
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set this thread's capability sets (64-bit masks, one bit per CAP_* number)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def capget() -> tuple[int, int, int]:
    """This thread's (effective, permitted, inheritable) capability masks."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capget(ctypes.byref(header), data), "capget")
    eff = data[0].effective | (data[1].effective << 32)
    perm = data[0].permitted | (data[1].permitted << 32)
    inh = data[0].inheritable | (data[1].inheritable << 32)
    return eff, perm, inh


# ---- PTYs (ioctls; <asm-generic/ioctls.h>) -----------------------------------

TIOCGPTN = 0x80045430  # the number of a master's slave (N in pts/N)
TIOCSPTLCK = 0x40045431  # unlock a PTY's slave
TIOCGPTPEER = 0x5441  # open a master's slave without a path (Linux 4.13)


# ---- openat2 (added for nsdash.inside) --------------------------------------

O_PATH = 0o10000000
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_IN_ROOT = 0x10


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2): open PATH below DIRFD under the RESOLVE_* rules; returns the new fd.

    With RESOLVE_IN_ROOT the kernel answers EAGAIN when a rename or mount anywhere on
    the system raced with a `..` in the lookup (it cannot then prove the walk stayed
    inside); the man page's remedy is to try again, which is done here a bounded number
    of times, so a busy host is not mistaken for a refused file."""
    nr = 437  # the same number on x86_64 and aarch64
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    encoded = _b(path)
    for _ in range(64):
        ret = _libc.syscall(ctypes.c_long(nr), ctypes.c_int(dirfd), encoded, ctypes.byref(how),
                            ctypes.c_size_t(ctypes.sizeof(how)))
        if ret >= 0 or ctypes.get_errno() != 11:  # EAGAIN
            break
    return _check(ret, "openat2", path)


# ---- inotify (added for nsdash.journal: following console logs) -------------

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC


def inotify_init1(flags: int = IN_NONBLOCK | IN_CLOEXEC) -> int:
    return _check(_libc.inotify_init1(ctypes.c_int(flags)), "inotify_init1")


def inotify_add_watch(fd: int, path: str, mask: int) -> int:
    return _check(_libc.inotify_add_watch(ctypes.c_int(fd), _b(path), ctypes.c_uint32(mask)),
                  "inotify_add_watch", path)


# ---- clone3 into a cgroup (added by the launcher) ----------------------------

CLONE_INTO_CGROUP = 0x200000000
SYS_clone3 = 435  # the same on every architecture (new-style syscall numbers)


class _CloneArgs(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size", "tls",
        "set_tid", "set_tid_size", "cgroup")]


# PyDLL keeps the GIL across the call: the child must come back from clone3 holding it.
_pylibc = ctypes.PyDLL(None, use_errno=True)
_pylibc.syscall.restype = ctypes.c_long


def fork_into_cgroup(cgroup_fd: int, namespaces: int = 0) -> int:
    """os.fork(), but the child is born in the cgroup2 directory CGROUP_FD (clone3 with
    CLONE_INTO_CGROUP): no cgroup.procs write, whose migration waits for an RCU grace period.
    NAMESPACES (CLONE_NEW* flags) are new ones the child is born in: with CLONE_NEWPID it is
    PID 1 there, and the parent's one clone replaces a fork, an unshare and a second fork.
    Python's fork hooks run as for os.fork().  OSError (ENOSYS, E2BIG, EINVAL, EBUSY) means
    the kernel or the cgroup cannot, or (EBUSY) another thread runs in this process; callers
    then fork and join the usual way.  With NAMESPACES, also what creating them can raise
    (EPERM, ENOSPC, ENOMEM).

    Only a process with one thread may fork this way, and only with signals blocked.  The
    child comes back from the raw syscall into the interpreter's loop before
    PyOS_AfterFork_Child() has reset the GIL and the signal flags, and that loop acts on the
    state copied from the parent: a GIL request another thread left pending makes it hand the
    GIL over and wait, for good, for a thread the child does not have (drop_gil's switch wait,
    a futex in _PyRuntime; it hung the suite), and a signal the parent had caught but not yet
    handled runs the parent's Python handler in the child (a KeyboardInterrupt there would
    unwind the parent's code in the child).  Nor does the raw syscall take glibc's fork locks
    (malloc arenas, stdio), which a thread in free() or on its way out may hold.  os.fork()
    does all this in C, before any bytecode runs."""
    import _signal  # the C module: signal.py's enum wrapping of masks costs ~0.2 ms a fork

    args = _CloneArgs(flags=CLONE_INTO_CGROUP | namespaces, exit_signal=_signal.SIGCHLD, cgroup=cgroup_fd)
    api = ctypes.pythonapi
    mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, ())
    try:
        # Handlers of signals caught before this block run in the parent when it returns;
        # later signals wait in the parent's kernel queue (a child starts with none).
        _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())
        api.PyOS_BeforeFork()  # (runs Python's before-fork hooks: count the threads after them)
        if not only_thread():
            api.PyOS_AfterFork_Parent()
            raise OSError(errno.EBUSY, "clone3: other threads run in this process")
        pid = _pylibc.syscall(ctypes.c_long(SYS_clone3), ctypes.byref(args),
                              ctypes.c_size_t(ctypes.sizeof(args)))
        if pid == 0:
            api.PyOS_AfterFork_Child()
            return 0
        err = ctypes.get_errno()
        api.PyOS_AfterFork_Parent()
    finally:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
    if pid < 0:
        raise OSError(err, f"clone3: {os.strerror(err)}")
    return int(pid)


def only_thread() -> bool:
    """True when the kernel counts one thread in this process.  threading.active_count() is
    not enough: it misses threads Python did not start, and a joined thread still runs (its
    interpreter state freed, glibc's teardown) until it leaves /proc/self/task."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False  # no /proc: assume the worst


# ---- the new mount API (added for --private-users-ownership=map) -------------

SYS_open_tree = 428  # new-style numbers: the same on every architecture but alpha and mips
SYS_move_mount = 429
SYS_mount_setattr = 442
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x00000004
MOUNT_ATTR_RDONLY = 0x00000001
MOUNT_ATTR_NOSUID = 0x00000002
MOUNT_ATTR_NODEV = 0x00000004
MOUNT_ATTR_NOEXEC = 0x00000008
MOUNT_ATTR_IDMAP = 0x00100000


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def open_tree(dirfd: int, path: str, flags: int) -> int:
    """open_tree(2): with OPEN_TREE_CLONE, a detached copy of the mount (tree) at PATH; returns its fd."""
    return _check(_libc.syscall(ctypes.c_long(SYS_open_tree), ctypes.c_int(dirfd), _b(path),
                                ctypes.c_uint(flags)), "open_tree", path)


def mount_setattr(dirfd: int, path: str, flags: int, attr_set: int = 0, attr_clr: int = 0,
                  userns_fd: int = 0) -> None:
    """mount_setattr(2) on the mount at DIRFD/PATH (AT_EMPTY_PATH: DIRFD itself)."""
    attr = _MountAttr(attr_set, attr_clr, 0, userns_fd)
    _check(_libc.syscall(ctypes.c_long(SYS_mount_setattr), ctypes.c_int(dirfd), _b(path),
                         ctypes.c_uint(flags), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))),
           "mount_setattr", path or None)


def move_mount(from_fd: int, to_path: str, to_dirfd: int = -100) -> None:
    """move_mount(2) of the detached mount FROM_FD onto TO_PATH (relative to TO_DIRFD, default cwd)."""
    _check(_libc.syscall(ctypes.c_long(SYS_move_mount), ctypes.c_int(from_fd), b"",
                         ctypes.c_int(to_dirfd), _b(to_path), ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH)),
           "move_mount", to_path)


# ---- seccomp, keyrings, close_range (the container's last steps before exec) --

SECCOMP_MODE_FILTER = 2
KEYCTL_JOIN_SESSION_KEYRING = 1
SYS_keyctl = {"x86_64": 250, "aarch64": 219}.get(os.uname().machine, 250)
SYS_close_range = 436  # new-style number: the same on every architecture
CLOSE_RANGE_CLOEXEC = 1 << 2


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_set_mode_filter(program: bytes) -> None:
    """prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER): load one classic-BPF PROGRAM (8-byte instructions)."""
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    _check(_libc.prctl(ctypes.c_int(PR_SET_SECCOMP), ctypes.c_ulong(SECCOMP_MODE_FILTER),
                       ctypes.byref(prog), ctypes.c_ulong(0), ctypes.c_ulong(0)), "prctl(PR_SET_SECCOMP)")


def keyctl_join_session_keyring(name: str | None = None) -> int:
    """keyctl(KEYCTL_JOIN_SESSION_KEYRING, NAME): join a new (anonymous with None) session keyring."""
    return _check(_libc.syscall(ctypes.c_long(SYS_keyctl), ctypes.c_long(KEYCTL_JOIN_SESSION_KEYRING),
                                _b(name)), "keyctl")


def close_range(first: int, last: int, flags: int = 0) -> None:
    """close_range(2) over FIRST..LAST (CLOSE_RANGE_CLOEXEC: mark them close-on-exec instead)."""
    _check(_libc.syscall(ctypes.c_long(SYS_close_range), ctypes.c_uint(first), ctypes.c_uint(last),
                         ctypes.c_uint(flags)), "close_range")


# ---- renameat2 (added for nsdash.machines.images: publishing a finished image) ----

AT_FDCWD = -100
RENAME_NOREPLACE = 1


def renameat2_noreplace(old: str | os.PathLike[str], new: str | os.PathLike[str]) -> None:
    """rename(2) that fails with EEXIST instead of replacing NEW (raised as FileExistsError)."""
    ret = _libc.renameat2(ctypes.c_int(AT_FDCWD), _b(os.fspath(old)), ctypes.c_int(AT_FDCWD),
                          _b(os.fspath(new)), ctypes.c_uint(RENAME_NOREPLACE))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"renameat2: {os.strerror(err)}", os.fspath(new))


# ---- loop devices (added for --image: a disk image's partitions as block devices) ----

LOOP_SET_FD = 0x4C00
LOOP_CLR_FD = 0x4C01
LOOP_SET_STATUS64 = 0x4C04
LOOP_GET_STATUS64 = 0x4C05
LOOP_CONFIGURE = 0x4C0A
LOOP_CTL_GET_FREE = 0x4C82
LO_FLAGS_READ_ONLY = 1
LO_FLAGS_AUTOCLEAR = 4
LO_FLAGS_PARTSCAN = 8
LO_NAME_SIZE = 64
BLKRRPART = 0x125F


class LoopInfo64(ctypes.Structure):
    """struct loop_info64 (linux/loop.h)."""

    _fields_ = [("lo_device", ctypes.c_uint64), ("lo_inode", ctypes.c_uint64), ("lo_rdevice", ctypes.c_uint64),
                ("lo_offset", ctypes.c_uint64), ("lo_sizelimit", ctypes.c_uint64), ("lo_number", ctypes.c_uint32),
                ("lo_encrypt_type", ctypes.c_uint32), ("lo_encrypt_key_size", ctypes.c_uint32),
                ("lo_flags", ctypes.c_uint32), ("lo_file_name", ctypes.c_char * LO_NAME_SIZE),
                ("lo_crypt_name", ctypes.c_char * LO_NAME_SIZE), ("lo_encrypt_key", ctypes.c_char * 32),
                ("lo_init", ctypes.c_uint64 * 2)]


class _LoopConfig(ctypes.Structure):
    _fields_ = [("fd", ctypes.c_uint32), ("block_size", ctypes.c_uint32), ("info", LoopInfo64),
                ("reserved", ctypes.c_uint64 * 8)]


def _ioctl(fd: int, request: int, arg: object, what: str) -> int:
    return _check(_libc.ioctl(ctypes.c_int(fd), ctypes.c_ulong(request), arg), what)


def loop_ctl_get_free(control_fd: int) -> int:
    """ioctl(LOOP_CTL_GET_FREE) on /dev/loop-control: the number of a free loop device (made if need be)."""
    return _ioctl(control_fd, LOOP_CTL_GET_FREE, ctypes.c_ulong(0), "ioctl(LOOP_CTL_GET_FREE)")


def loop_configure(loop_fd: int, file_fd: int, flags: int, name: bytes = b"") -> None:
    """ioctl(LOOP_CONFIGURE): bind FILE_FD to the loop device and set its flags in one step."""
    config = _LoopConfig()
    config.fd = file_fd
    config.info.lo_flags = flags
    config.info.lo_file_name = name[:LO_NAME_SIZE - 1]
    _ioctl(loop_fd, LOOP_CONFIGURE, ctypes.byref(config), "ioctl(LOOP_CONFIGURE)")


def loop_set_fd(loop_fd: int, file_fd: int) -> None:
    """ioctl(LOOP_SET_FD): the older two-step binding (kernels before 5.8 lack LOOP_CONFIGURE)."""
    _ioctl(loop_fd, LOOP_SET_FD, ctypes.c_ulong(file_fd), "ioctl(LOOP_SET_FD)")


def loop_set_status64(loop_fd: int, flags: int, name: bytes = b"") -> None:
    """ioctl(LOOP_SET_STATUS64) with FLAGS (the settable ones: AUTOCLEAR, PARTSCAN)."""
    info = LoopInfo64()
    info.lo_flags = flags
    info.lo_file_name = name[:LO_NAME_SIZE - 1]
    _ioctl(loop_fd, LOOP_SET_STATUS64, ctypes.byref(info), "ioctl(LOOP_SET_STATUS64)")


def loop_get_status64(loop_fd: int) -> LoopInfo64:
    """ioctl(LOOP_GET_STATUS64): what the bound loop device holds (ENXIO when it is free)."""
    info = LoopInfo64()
    _ioctl(loop_fd, LOOP_GET_STATUS64, ctypes.byref(info), "ioctl(LOOP_GET_STATUS64)")
    return info


def loop_clr_fd(loop_fd: int) -> None:
    """ioctl(LOOP_CLR_FD): unbind (deferred by the kernel while the device is open elsewhere)."""
    _ioctl(loop_fd, LOOP_CLR_FD, ctypes.c_ulong(0), "ioctl(LOOP_CLR_FD)")


def blkrrpart(fd: int) -> None:
    """ioctl(BLKRRPART): have the kernel read the partition table again."""
    _ioctl(fd, BLKRRPART, ctypes.c_ulong(0), "ioctl(BLKRRPART)")


BLKPG = 0x1269
BLKPG_ADD_PARTITION = 1
BLKPG_DEVNAMELTH = 64


class _BlkpgPartition(ctypes.Structure):
    _fields_ = [("start", ctypes.c_longlong), ("length", ctypes.c_longlong), ("pno", ctypes.c_int),
                ("devname", ctypes.c_char * BLKPG_DEVNAMELTH), ("volname", ctypes.c_char * BLKPG_DEVNAMELTH)]


class _BlkpgIoctlArg(ctypes.Structure):
    _fields_ = [("op", ctypes.c_int), ("flags", ctypes.c_int), ("datalen", ctypes.c_int),
                ("data", ctypes.c_void_p)]


def blkpg_add_partition(fd: int, number: int, start: int, length: int) -> None:
    """ioctl(BLKPG, BLKPG_ADD_PARTITION): partition NUMBER of the disk FD at START for LENGTH bytes
    (what systemd adds itself when the kernel's own table parsers do not know the table)."""
    part = _BlkpgPartition(start, length, number)
    arg = _BlkpgIoctlArg(BLKPG_ADD_PARTITION, 0, ctypes.sizeof(part), ctypes.cast(ctypes.pointer(part), ctypes.c_void_p))
    _ioctl(fd, BLKPG, ctypes.byref(arg), "ioctl(BLKPG_ADD_PARTITION)")


# ---- FIEMAP (added for system/unlink: which files' data is on the disk) ----------

FS_IOC_FIEMAP = 0xC020660B  # _IOWR('f', 11, struct fiemap)
FIEMAP_EXTENT_UNKNOWN = 0x2  # no location on the disk yet ...
FIEMAP_EXTENT_DELALLOC = 0x4  # ... because the data waits for delayed allocation


# struct fiemap (start, length, flags, mapped extents, extent count, reserved) and room for one
# struct fiemap_extent (logical, physical, length, 2 reserved, flags, 3 reserved): 32 + 56 bytes.
_FIEMAP_ONE = struct.Struct("=QQIIII QQQQQ I III")


def fiemap_first_flags(fd: int) -> int | None:
    """ioctl(FS_IOC_FIEMAP) for the first extent of the file FD: its FIEMAP_EXTENT_* flags, or
    None when the file has none.  OSError where the filesystem cannot tell (tmpfs: EOPNOTSUPP)."""
    import fcntl  # (fcntl.ioctl: a buffer in and out without ctypes' structures)

    request = _FIEMAP_ONE.pack(0, 0xFFFFFFFFFFFFFFFF, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    fields = _FIEMAP_ONE.unpack(fcntl.ioctl(fd, FS_IOC_FIEMAP, request))
    return fields[11] if fields[3] else None
