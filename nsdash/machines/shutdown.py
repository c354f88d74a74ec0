"""Asking a machine's init to power off or reboot, in each init's own language.

Which init runs is read from /proc/LEADER/exe and, where the name alone does
not tell, from files in the machine's root:

- systemd: SIGRTMIN+4 powers off, SIGINT reboots (as machinectl sends them).
- BusyBox init: SIGUSR2 powers off, SIGTERM reboots (busybox init.c).
- SysV init (Debian's sysvinit-core, and OpenRC, which Debian runs under it): a
  runlevel-change request written to its control FIFO /run/initctl, as
  telinit 0 / telinit 6 does; signals would only run inittab's powerfail or
  ctrl-alt-del entries, which are no shutdown.
- runit: its stopit flag file made executable, its reboot flag executable for a
  reboot and not for a poweroff, then SIGCONT to PID 1 (runit(8); Debian's build
  keeps the flags in /run).
- a plain command (no -b): SIGTERM, or --kill-signal; an unknown init the
  machine's kill signal.

Files are written inside the machine's root (/proc/LEADER/root) with openat2
RESOLVE_IN_ROOT, so a guest's symlinks cannot aim the write at the host; and under -U
only files (and, to make one, directories) its root owns: a symlink inside may still
lead onto a host directory bound in (--bind), where host root would chmod and create
what the guest's root may not touch (root inside is the leader's UID on the host).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import struct

from nsdash.errors import NsdashError
from nsdash.system.syscalls import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2

SIGRTMIN = int(signal.SIGRTMIN)
_RESOLVE = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS

# sysvinit's initreq.h: struct init_request {int magic, cmd, runlevel, sleeptime; char data[368];}
INIT_MAGIC = 0x03091969
INIT_CMD_RUNLVL = 1
INITCTL_PATHS = ("run/initctl", "dev/initctl")  # sysvinit >= 2.89 / older
_INIT_REQUEST = struct.Struct("=iiii368s")
TELINIT_SLEEPTIME = 3  # seconds between SIGTERM and SIGKILL for processes init stops (telinit's -t)

# runit's flag files: upstream's, and Debian's build, which reads them from /run.
RUNIT_FLAGS = {"upstream": ("etc/runit/stopit", "etc/runit/reboot"),
               "debian": ("run/runit.stopit", "run/runit.reboot")}
EXE_SCAN_LIMIT = 4 << 20  # bytes of runit's binary searched for the flag paths it was built with

# Signals for the inits that take one; "sysv" and "runit" are handled by request() below.
POWEROFF_SIGNAL: dict[str, int] = {"systemd": SIGRTMIN + 4, "busybox": signal.SIGUSR2}
REBOOT_SIGNAL: dict[str, int] = {"systemd": signal.SIGINT, "busybox": signal.SIGTERM}


def detect_init(leader: int | None, boot: bool) -> str:
    """systemd | busybox | sysv | runit | unknown for a booted tree's init; 'command' without -b."""
    if not boot:
        return "command"
    if leader is None:
        return "unknown"
    try:
        exe = os.readlink(f"/proc/{leader}/exe")
    except OSError:
        return "unknown"
    base = os.path.basename(exe.removesuffix(" (deleted)"))
    if "systemd" in base:
        return "systemd"
    if base.startswith("busybox"):
        return "busybox"
    if base in ("runit", "runit-init"):
        return "runit"
    if base in ("init", "sysvinit") or _has_initctl(leader):
        return "sysv"
    return "unknown"


def _has_initctl(leader: int) -> bool:
    try:
        root = os.open(f"/proc/{leader}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        for path in INITCTL_PATHS:
            try:
                fd = openat2(root, path, os.O_PATH | os.O_NOFOLLOW, _RESOLVE)
            except OSError:
                continue
            try:
                if stat.S_ISFIFO(os.fstat(fd).st_mode):
                    return True
            finally:
                os.close(fd)
        return False
    finally:
        os.close(root)


def initctl_request(runlevel: str) -> bytes:
    """The 384 bytes telinit writes to init's FIFO to change to RUNLEVEL ('0' halt, '6' reboot)."""
    return _INIT_REQUEST.pack(INIT_MAGIC, INIT_CMD_RUNLVL, ord(runlevel), TELINIT_SLEEPTIME, b"")


def request(kind: str, action: str, leader: int, kill_signal: int) -> str:
    """Ask init KIND (detect_init) running as host PID LEADER to ACTION ('poweroff' or 'reboot').

    Returns what was done, for the log; raises NsdashError when the init cannot be
    asked (its control FIFO is missing, say): the caller then says so, and the
    user may terminate the machine.
    """
    reboot = action == "reboot"
    if kind in POWEROFF_SIGNAL:
        sig = (REBOOT_SIGNAL if reboot else POWEROFF_SIGNAL)[kind]
        _kill(leader, sig)
        return f"sent {signal.Signals(sig).name if sig < SIGRTMIN else f'SIGRTMIN+{sig - SIGRTMIN}'}"
    if kind == "sysv":
        level = "6" if reboot else "0"
        _write_initctl(leader, initctl_request(level))
        return f"asked init for runlevel {level} through /run/initctl"
    if kind == "runit":
        _runit_files(leader, reboot)
        _kill(leader, signal.SIGCONT)
        return "set runit's stopit" + (" and reboot" if reboot else "") + " flags and sent SIGCONT"
    sig = signal.SIGTERM if kind == "command" and reboot else kill_signal
    _kill(leader, sig)
    return f"sent signal {sig}"


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it ended meanwhile: the caller sees the exit
        os.kill(pid, sig)


def _root_uid(leader: int) -> int:
    """The host UID of the machine's root: its PID 1's (0 without -U)."""
    try:
        with open(f"/proc/{leader}/status", errors="surrogateescape") as f:  # Name: the guest's bytes
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    raise NsdashError(f"cannot read the credentials of the machine's init (PID {leader})")


def _owned(fd: int, owner: int, path: str) -> None:
    """Refuse FD unless the machine's root owns it (always true of host root's own machines)."""
    if owner != 0 and os.fstat(fd).st_uid != owner:
        raise OSError(errno.EPERM, "not the machine's own file", path)


def _open_root(leader: int) -> int:
    try:
        return os.open(f"/proc/{leader}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise NsdashError(f"cannot reach the machine's root (PID {leader}): {e.strerror}") from None


def _write_initctl(leader: int, data: bytes) -> None:
    """Write DATA to init's FIFO: opened inside the root, write-only and non-blocking (ENXIO
    when init is not reading it), and only if it really is a FIFO (not a file the guest put there)."""
    owner = _root_uid(leader)
    root = _open_root(leader)
    try:
        last: OSError | None = None
        for path in INITCTL_PATHS:
            try:
                fd = _open_fifo(root, path, owner)
            except OSError as e:
                last = e
                continue
            try:
                if os.write(fd, data) != len(data):  # <= PIPE_BUF: all or nothing
                    raise OSError(errno.EIO, "short write", path)
                return
            except OSError as e:
                last = e
            finally:
                os.close(fd)
        why = last.strerror if last is not None and last.strerror else "missing"
        raise NsdashError(f"cannot ask the machine's SysV init to change runlevel: /run/initctl: {why}",
                          "is its init still starting? try again, or 'nsdash terminate' it")
    finally:
        os.close(root)


def _open_fifo(root: int, path: str, owner: int) -> int:
    """PATH inside ROOT opened for writing only if it is a FIFO of OWNER's: looked at through an
    O_PATH fd first (opening a device node the guest planted there could itself do something),
    then reopened write-only and non-blocking through that fd, the same inode."""
    probe = openat2(root, path, os.O_PATH | os.O_NOFOLLOW, _RESOLVE)
    try:
        if not stat.S_ISFIFO(os.fstat(probe).st_mode):
            raise OSError(errno.EINVAL, "not a FIFO", path)
        _owned(probe, owner, path)
        return os.open(f"/proc/self/fd/{probe}", os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    finally:
        os.close(probe)


def _runit_files(leader: int, reboot: bool) -> None:
    """runit(8): stage 3 starts on SIGCONT when the stopit file is executable by its owner;
    afterwards it reboots when the reboot file is, else halts.  Upstream keeps them in
    /etc/runit (Void links them to /run), Debian's build reads /run/runit.stopit and
    /run/runit.reboot: the binary says which.  Written only inside the machine's root."""
    stopit, reboot_flag = RUNIT_FLAGS[_runit_build(leader)]
    owner = _root_uid(leader)
    root = _open_root(leader)
    try:
        _set_mode(root, stopit, 0o100, owner, create=True)
        if reboot:
            _set_mode(root, reboot_flag, 0o100, owner, create=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                _set_mode(root, reboot_flag, 0o000, owner, create=False)
    except OSError as e:
        raise NsdashError(f"cannot ask the machine's runit to stop: /{e.filename or stopit}: "
                          f"{e.strerror}", "try again, or 'nsdash terminate' it") from None
    finally:
        os.close(root)


def _runit_build(leader: int) -> str:
    """'debian' if PID 1's binary names Debian's /run flag files, else 'upstream'."""
    try:
        with open(f"/proc/{leader}/exe", "rb") as f:
            return "debian" if b"/run/runit.stopit" in f.read(EXE_SCAN_LIMIT) else "upstream"
    except OSError:
        return "upstream"


def _set_mode(root: int, path: str, mode: int, owner: int, create: bool) -> None:
    """chmod PATH inside ROOT, a regular file of OWNER's (made empty if missing and CREATE, in a
    directory of OWNER's); an existing file is looked at through O_PATH and changed through that
    fd, never opened."""
    try:
        fd = openat2(root, path, os.O_PATH, _RESOLVE)
    except FileNotFoundError:
        if not create:
            raise
        fd = _create(root, path, mode, owner)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        _owned(fd, owner, path)
        os.chmod(f"/proc/self/fd/{fd}", mode)
    finally:
        os.close(fd)


def _create(root: int, path: str, mode: int, owner: int) -> int:
    """An empty PATH made inside ROOT.  Under -U in a directory OWNER owns, and never through a
    symlink at its end (O_EXCL): the link's target could be on a host directory bound in."""
    if owner == 0:
        return openat2(root, path, os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | os.O_NOCTTY, _RESOLVE, mode)
    parent, _, name = path.rpartition("/")
    directory = openat2(root, parent or ".", os.O_PATH | os.O_DIRECTORY, _RESOLVE)
    try:
        _owned(directory, owner, parent or "/")
        return openat2(directory, name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_NONBLOCK
                       | os.O_NOCTTY, _RESOLVE, mode)
    except OSError as e:
        raise OSError(e.errno, os.strerror(e.errno or errno.EIO), path) from None
    finally:
        os.close(directory)
