"""Run from a sealed in-memory copy of the interpreter before joining a container.

A helper that joins a running container (`nsdash shell`, anything that setns()
into a machine and execs there) is, for a moment, a host binary running
inside the container's PID namespace.  Root in the container can open
/proc/PID/exe of that process (or make the helper re-exec itself by planting
`#!/proc/self/exe` as the program it runs), wait for it to exit and then
write through the handle: the host's interpreter is overwritten
(runc's CVE-2019-5736).

The same cure as runc's, in our own code: before joining, re-exec the
interpreter from a memfd copy sealed against writing, shrinking and growing.
/proc/self/exe then names that memfd; writes fail with EPERM (the seals) and
the copy dies with the last process using it.  The host file is never
reachable through /proc/PID/exe.  The process is also made non-dumpable until
it execs, which closes /proc/PID/ to container processes without
CAP_SYS_PTRACE.

Without -U container root keeps CAP_SYS_ADMIN and CAP_SYS_PTRACE in the host's
user namespace, so non-dumpable does not stop it, and every other file the
helper maps (ld.so, libc, libpython, extension modules) would be open to it
read-write through /proc/PID/map_files/.  So the re-exec happens in a mount
namespace of the helper's own where every mount is read-only (cgroup
hierarchies excepted: the helper joins the machine's cgroup): all it maps
comes through read-only mounts, and reopening a mapping for writing fails
with EROFS.  That namespace is left behind when the helper joins the
machine's; its mounts can be neither reached nor changed from inside.
"""

from __future__ import annotations

import fcntl
import os
import sys

MEMFD_NAME = "nsdash-sealed-python"
SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


def running_sealed() -> bool:
    """True if this process's executable is our sealed memfd copy."""
    try:
        return os.readlink("/proc/self/exe").startswith(f"/memfd:{MEMFD_NAME}")
    except OSError:
        return False


def sealed_copy(path: str) -> int:
    """A memfd holding PATH's bytes, sealed so nothing can change it."""
    fd = os.memfd_create(MEMFD_NAME, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(src).st_size
            off = 0
            while off < size:
                sent = os.sendfile(fd, src, off, size - off)
                if sent == 0:
                    raise OSError(f"{path} shrank while it was copied")
                off += sent
        finally:
            os.close(src)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS)
        return fd
    except BaseException:
        os.close(fd)
        raise


def ensure_sealed_exe() -> None:
    """Re-exec this very command from a sealed interpreter copy, once; then return.

    Call it first thing in a verb that will join a container.  Arguments and
    the venv are kept (argv[0] stays sys.executable, so the interpreter finds
    its prefix as before); of the environment only what nsdash and Python read
    (KEPT_ENV): until it execs, root inside could read the helper's
    /proc/PID/environ, and the caller's tokens have no business there.
    """
    if running_sealed():
        _not_dumpable()
        return
    fd = sealed_copy(os.path.realpath(sys.executable))
    read_only_view()
    # An ELF image may be exec'd from a close-on-exec fd (only scripts cannot).
    env = {k: v for k, v in os.environ.items() if k in KEPT_ENV or k.startswith(KEPT_ENV_PREFIXES)}
    os.execve(f"/proc/self/fd/{fd}", [sys.executable, *sys.orig_argv[1:]], env)


KEPT_ENV = ("TERM", "LANG", "PATH", "COLUMNS", "LINES")
KEPT_ENV_PREFIXES = ("NSDASH_", "PYTHON", "LC_")
WRITABLE_TYPES = ("cgroup", "cgroup2")


def read_only_view() -> None:
    """Move this process into a private mount namespace where every mount is read-only,
    except the cgroup hierarchies that were writable.  Raises NsdashError if it cannot."""
    from nsdash.errors import NsdashError
    from nsdash.system import syscalls as sc

    try:
        with open("/proc/self/mountinfo") as f:
            keep = [_unescape(fields[4]) for fields in (line.split() for line in f)
                    if _fstype(fields) in WRITABLE_TYPES and "rw" in fields[5].split(",")]
        sc.unshare(sc.CLONE_NEWNS)
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_SLAVE)  # nothing of ours reaches the host
        sc.mount_setattr(-100, "/", sc.AT_RECURSIVE, sc.MOUNT_ATTR_RDONLY)
        for path in keep:
            sc.mount_setattr(-100, path, 0, 0, sc.MOUNT_ATTR_RDONLY)
    except OSError as e:
        raise NsdashError(f"cannot make the joining helper's read-only view of the host: {e.strerror or e}",
                          "nsdash shell needs root and a kernel with mount_setattr (Linux 5.12 or later)") from None


def _fstype(fields: list[str]) -> str:
    return fields[fields.index("-") + 1] if "-" in fields else ""


def _unescape(path: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    return path.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def _not_dumpable() -> None:
    from nsdash.system import syscalls as sc

    sc.prctl(sc.PR_SET_DUMPABLE, 0)
