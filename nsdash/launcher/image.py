"""--image=FILE: a disk image on a loop device, mounted for one boot of a machine.

    img = AttachedImage(Path("/var/lib/machines/web.raw"), "web", read_only=False)
    img.attach()              # loop device, partitions mounted at root_dir("web")
    ...build the plan, fork: PID 1's new mount namespace copies those mounts...
    img.release_host_view()   # the host's copy goes; the machine's stays
    img.close()               # (on every path) whatever is still ours goes

What is mounted where comes from nsdash.launcher.dissect (the image's GPT, read
by nsdash itself).  The image is bound to one loop device with LOOP_CONFIGURE
(LOOP_SET_FD and LOOP_SET_STATUS64 on kernels without it), flags AUTOCLEAR
and, for a partition table, PARTSCAN: the kernel makes loopNpM for each partition, and
each one we mount is checked against our own reading of the table (start and
size from sysfs).  Our descriptor of the loop device is closed once the
mounts hold it, so the device stays bound exactly as long as a mount of it
exists: when the machine's mount namespace goes (its last process exits, also
after its supervisor was killed and the orphan clean-up killed the machine),
the kernel unbinds the device by itself.

The mounts are made under a per-machine directory of the state root that is
first bound onto itself and made private, so nothing propagates to other
mount namespaces (on a systemd host / is shared: a service's private
namespace would otherwise keep a copy, and the loop device, forever).  The
host's copy is detached once PID 1 has its own; the orphan clean-up detaches
it if a supervisor died in between (clean_stale()).

A writable image is refused while any loop device holds it (two writers
would corrupt its file system); a read-only one while a writable one does.
The image file's flock serialises those checks between concurrent starts.
With --ephemeral the image is copied beside itself (a reflink where the file
system can) and the copy is unlinked as soon as the loop device holds it, as
systemd-nspawn does: nothing of it is left after the run, whatever kills it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import stat
import subprocess
import time
from pathlib import Path

from nsdash.launcher import dissect, sandbox
from nsdash.launcher.dissect import ImageError
from nsdash.system import mountinfo, paths
from nsdash.system import syscalls as sc
from nsdash.system.kernfiles import read_value

HOLDER = "image-root"  # under the state root: HOLDER/MACHINE is bound private, the image at .../root
SYS_BLOCK = "/sys/block"
ATTACH_TRIES = 16  # LOOP_CTL_GET_FREE races with other processes taking the same device: try again
RELEASE_WAIT = 3.0  # seconds a loop device of the same image may take to unbind (a reboot's old boot)


def holder_dir(machine: str) -> Path:
    return paths.state_root() / HOLDER / machine


def root_dir(machine: str) -> Path:
    """Where the image of MACHINE is mounted on the host while it starts (the spec's directory)."""
    return holder_dir(machine) / "root"


def clean_stale(machine: str) -> list[str]:
    """Detach what a dead supervisor left mounted for MACHINE (the orphan clean-up calls this)."""
    holder = str(holder_dir(machine))
    done = []
    for point in sorted(mountinfo.mounts_under(holder), key=len, reverse=True):
        with contextlib.suppress(OSError):
            sc.umount2(point, sc.MNT_DETACH)
            done.append(f"unmounted {point}")
    _remove_dirs(holder)
    return done


def _remove_dirs(holder: str) -> None:
    for path in (os.path.join(holder, "root"), holder, os.path.dirname(holder)):
        with contextlib.suppress(OSError):
            os.rmdir(path)


class LoopUser:
    """A bound loop device and what it holds."""

    def __init__(self, name: str, backing: str, read_only: bool) -> None:
        self.name, self.backing, self.read_only = name, backing, read_only


def loop_devices(sys_block: str = SYS_BLOCK) -> list[LoopUser]:
    """Every bound loop device with its backing file, from sysfs (no device is opened)."""
    found = []
    with contextlib.suppress(OSError):
        for name in sorted(os.listdir(sys_block)):
            if not name.startswith("loop"):
                continue
            backing = read_value(os.path.join(sys_block, name, "loop", "backing_file"))
            if backing is None:
                continue  # not bound
            found.append(LoopUser(name, backing, read_value(os.path.join(sys_block, name, "ro")) == "1"))
    return found


def image_users(st: os.stat_result, want_write: bool) -> list[LoopUser]:
    """Bound loop devices that hold the image of ST in a way that conflicts with WANT_WRITE."""
    out = []
    for dev in loop_devices():
        try:
            other = os.stat(dev.backing)
        except OSError:
            continue  # deleted (an ephemeral copy), or gone meanwhile
        if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino) and (want_write or not dev.read_only):
            out.append(dev)
    return out


class AttachedImage:
    """One boot's loop device and mounts of an image (see the module docstring)."""

    def __init__(self, image: Path, machine: str, *, read_only: bool = False, ephemeral: bool = False) -> None:
        self.image = image
        self.machine = machine
        self.read_only = read_only
        self.ephemeral = ephemeral
        self.loop: str | None = None  # /dev/loopN
        self.dissection: dissect.Dissection | None = None
        self._holder_mounted = False
        self._copy: str | None = None  # the ephemeral copy while it still has a name

    @property
    def root(self) -> str:
        return str(root_dir(self.machine))

    # ---- attach -----------------------------------------------------------

    def attach(self) -> str:
        """Bind the image to a loop device and mount it at root_dir(); return that path.
        On failure nothing is left (no loop device, no mount, no copy)."""
        try:
            self._attach()
        except BaseException:
            self.close()
            raise
        return self.root

    def _open(self) -> int:
        with contextlib.suppress(OSError):  # (a missing one is named below)
            dissect.check_kind(os.stat(self.image).st_mode, str(self.image))  # (a FIFO would hang the open)
        # -x only reads the image (its copy is what the machine writes)
        mode = os.O_RDONLY if self.read_only or self.ephemeral else os.O_RDWR
        try:
            return os.open(self.image, mode | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ImageError(f"--image: {self.image} does not exist", "pass an existing disk image file") from None
        except OSError as e:
            if self.read_only or self.ephemeral or e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM,
                                                                   errno.ETXTBSY):
                raise ImageError(f"--image: cannot open {self.image}: {e.strerror}", None) from None
        # nspawn: an image that cannot be written (immutable, a read-only file system) boots read-only
        self.read_only = True
        return self._open()

    def _attach(self) -> None:
        fd = self._open()
        try:
            self.dissection = dissect.dissect_open(fd, str(self.image))
            # One start at a time decides who may use the image.  On a descriptor of its own:
            # the loop device keeps the file it is given open, and with it that file's flocks.
            lock = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX)
                self._check_users(os.fstat(fd))
                backing = self._ephemeral_copy(fd) if self.ephemeral else fd
                try:
                    loop_fd = self._bind(backing)
                finally:
                    if backing != fd:
                        os.close(backing)
            finally:
                os.close(lock)
        finally:
            os.close(fd)
        try:
            self._mount_all(loop_fd)
        finally:
            os.close(loop_fd)  # the mounts hold the device now; autoclear unbinds it after the last one

    def _check_users(self, st: os.stat_result) -> None:
        if not stat.S_ISREG(st.st_mode):
            return
        deadline = time.monotonic() + RELEASE_WAIT
        while True:
            users = image_users(st, not self.read_only and not self.ephemeral)  # -x copies: it only reads
            if not users:
                return
            if time.monotonic() > deadline:
                dev = users[0]
                how = "read-write" if not dev.read_only else "read-only"
                raise ImageError(f"--image: {self.image} is in use: /dev/{dev.name} holds it {how}",
                                 "stop the machine using it, or boot a copy with --ephemeral (-x)"
                                 + ("" if not dev.read_only else ", or boot it with --read-only too"))
            time.sleep(0.05)  # a reboot: the last boot's device unbinds as its namespace goes

    def _ephemeral_copy(self, fd: int) -> int:
        """A copy of the image beside it, opened and already unlinked when this returns."""
        directory, name = os.path.split(os.path.abspath(self.image))
        copy = os.path.join(directory, f".#{name}.nsdash-{os.urandom(6).hex()}")
        self._copy = copy
        result = subprocess.run(["cp", "--reflink=auto", "--sparse=always", f"/proc/self/fd/{fd}", copy],
                                capture_output=True, text=True, pass_fds=(fd,))
        if result.returncode != 0:
            raise ImageError(f"--ephemeral: cannot copy {self.image}: "
                             + (result.stderr.strip().splitlines() or ["cp failed"])[-1],
                             f"free space in {directory}, or boot with --read-only instead")
        try:
            return os.open(copy, os.O_RDWR | os.O_CLOEXEC)
        finally:
            self._drop_copy()

    def _drop_copy(self) -> None:
        if self._copy is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._copy)
            self._copy = None

    def _bind(self, file_fd: int) -> int:
        """A free loop device bound to FILE_FD; returns its open descriptor."""
        assert self.dissection is not None
        flags = sc.LO_FLAGS_AUTOCLEAR | (sc.LO_FLAGS_READ_ONLY if self.read_only else 0)
        if self.dissection.kind != "filesystem":
            flags |= sc.LO_FLAGS_PARTSCAN
        name = f"nsdash:{self.machine}".encode()
        try:
            control = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            raise ImageError(f"--image: cannot open /dev/loop-control: {e.strerror}",
                             "load the loop module (modprobe loop)") from None
        try:
            for _ in range(ATTACH_TRIES):
                number = sc.loop_ctl_get_free(control)
                path = f"/dev/loop{number}"
                loop_fd = os.open(path, (os.O_RDONLY if self.read_only else os.O_RDWR) | os.O_CLOEXEC)
                try:
                    _configure(loop_fd, file_fd, flags, name)
                except OSError as e:
                    os.close(loop_fd)
                    if e.errno == errno.EBUSY:
                        continue  # another process bound it between GET_FREE and ours
                    raise
                self.loop = path
                return loop_fd
        finally:
            os.close(control)
        raise ImageError("--image: no free loop device after several tries", "try again")

    # ---- mount --------------------------------------------------------------

    def _partition_device(self, loop_fd: int, mount: dissect.Mount) -> str:
        """/dev/loopNpM for the mount's partition.  The kernel's own scan (PARTSCAN) made it
        where its GPT parser is built in, and it must agree with our reading of the table;
        elsewhere it is added here with BLKPG, as systemd does, from that reading."""
        assert self.loop is not None and mount.partition is not None
        number = mount.partition
        base = os.path.basename(self.loop)
        part = f"{base}p{number}"
        sysdir = os.path.join(SYS_BLOCK, base, part)
        if not os.path.isdir(sysdir):
            try:
                sc.blkpg_add_partition(loop_fd, number, mount.offset, mount.size)
            except OSError as e:
                raise ImageError(f"--image: cannot add partition {number} of {self.image} to {self.loop}: "
                                 f"{os.strerror(e.errno or 0)}", "check the table with 'sfdisk --verify'") from None
        try:
            with open(os.path.join(sysdir, "start")) as f:
                start = int(f.read()) * 512
            with open(os.path.join(sysdir, "size")) as f:
                size = int(f.read()) * 512
        except (OSError, ValueError):
            raise ImageError(f"--image: the kernel shows no partition {number} of {self.image}",
                             "check the table with 'sfdisk --verify'") from None
        if (start, size) != (mount.offset, mount.size):
            raise ImageError(f"--image: the kernel reads partition {number} of {self.image} differently",
                             "check the table with 'sfdisk --verify'")
        device = f"/dev/{part}"
        deadline = time.monotonic() + 2.0
        while not os.path.exists(device):  # devtmpfs makes it at once; udev may make it again
            if time.monotonic() > deadline:
                raise ImageError(f"--image: {device} did not appear", "is /dev a devtmpfs?")
            time.sleep(0.02)
        return device

    def _mount_all(self, loop_fd: int) -> None:
        assert self.dissection is not None and self.loop is not None
        holder = str(holder_dir(self.machine))
        clean_stale(self.machine)  # a dead supervisor's (we hold the name's start lock)
        os.makedirs(holder, mode=0o700, exist_ok=True)
        sc.mount(holder, holder, None, sc.MS_BIND)
        self._holder_mounted = True
        sc.mount(None, holder, None, sc.MS_PRIVATE)
        os.makedirs(self.root, mode=0o755, exist_ok=True)
        mounts = self.dissection.mounts
        has_xbootldr = any(m.designator == "xbootldr" for m in mounts)
        for m in mounts:
            device = self.loop if m.partition is None else self._partition_device(loop_fd, m)
            ro = self.read_only or m.read_only
            flags = sc.MS_NODEV | (sc.MS_RDONLY if ro else 0)
            data = "umask=0077" if m.fstype == "vfat" else None
            if m.designator == "root":
                self._mount(device, self.root, m, flags, data)
                continue
            root_ro = self.read_only or mounts[0].read_only
            root_fd = sandbox.open_root(self.root)
            try:
                where = m.where or dissect.efi_target(functools.partial(_empty_dir, root_fd), has_xbootldr)
                if where is None:
                    continue
                try:
                    # inside the image's root, never through its symlinks out of it
                    target_fd = sandbox.open_in_root(root_fd, where, directory=True, create=not root_ro)
                except OSError as e:
                    raise ImageError(f"--image: cannot mount partition {m.partition} ({m.designator}) at {where}: "
                                     f"{e.strerror}", "create the directory in the root file system") from None
                try:
                    self._mount(device, sandbox.fd_path(target_fd), m, flags, data)
                finally:
                    os.close(target_fd)
            finally:
                os.close(root_fd)

    def _mount(self, device: str, target: str, m: dissect.Mount, flags: int, data: str | None) -> None:
        try:
            sc.mount(device, target, m.fstype, flags, data)
        except OSError as e:
            what = "the image" if m.partition is None else f"partition {m.partition} ({m.designator})"
            hint = ("this kernel has no such file system (see /proc/filesystems)" if e.errno == errno.ENODEV
                    else "check it with fsck, or boot it with --read-only")
            raise ImageError(f"--image: cannot mount {what} of {self.image} ({m.fstype}): "
                             f"{os.strerror(e.errno or 0)}", hint) from None

    # ---- teardown -----------------------------------------------------------

    def release_host_view(self) -> None:
        """Detach the host's copy of the mounts (the machine's mount namespace keeps its own)."""
        holder = str(holder_dir(self.machine))
        if self._holder_mounted:
            with contextlib.suppress(OSError):
                sc.umount2(holder, sc.MNT_DETACH)
            self._holder_mounted = False
        _remove_dirs(holder)

    def close(self) -> None:
        self.release_host_view()
        self._drop_copy()


def _configure(loop_fd: int, file_fd: int, flags: int, name: bytes) -> None:
    try:
        sc.loop_configure(loop_fd, file_fd, flags, name)
        return
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTTY):
            raise
    # Before Linux 5.8: bind, then set the flags (AUTOCLEAR and PARTSCAN are settable).
    sc.loop_set_fd(loop_fd, file_fd)
    try:
        sc.loop_set_status64(loop_fd, flags & ~sc.LO_FLAGS_READ_ONLY, name)
    except OSError:
        sc.loop_clr_fd(loop_fd)
        raise
    if flags & sc.LO_FLAGS_PARTSCAN:
        with contextlib.suppress(OSError):
            sc.blkrrpart(loop_fd)


def _empty_dir(root_fd: int, path: str) -> bool:
    try:
        fd = sandbox.open_in_root(root_fd, path, directory=True, create=False)
    except OSError:
        return False
    try:
        return not os.listdir(sandbox.fd_path(fd))
    finally:
        os.close(fd)
