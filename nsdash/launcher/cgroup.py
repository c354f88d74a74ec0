"""The machine's cgroup: machine.slice/machine-NAME.scope in every hierarchy we use.

On a unified host that is one directory in the cgroup2 tree.  On hybrid and
legacy hosts the machine also gets the same directory in the v1 cpu, cpuacct,
memory, pids and blkio hierarchies, so monitors find memory and task figures
there (cgroup2 on a hybrid host has no controllers), and in the v1 devices
hierarchy, where a whitelist stops the container from using device nodes it
creates.  Wherever cgroup2 is mounted, the same rules are also attached to the
machine's cgroup2 directory as an eBPF device program (device_filter.py): on a
unified host that program is the only device filter; on a hybrid host the
kernel asks both, and the program already holds while the container's first
processes have joined cgroup2 but not yet the v1 hierarchies.
The truth of "running" is a populated cgroup, never a state file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
import time
from pathlib import Path

from nsdash.errors import MachineExists, NsdashError
from nsdash.launcher import device_filter, names
from nsdash.system import cgroupfs

SLICE = names.SLICE

# The device whitelist (v1 devices.allow lines; the cgroup2 BPF program is built from the
# same lines): the nodes the plan binds into /dev, plus PTYs.  Everything else (a disk
# node made with mknod, say) cannot be opened.
DEVICE_ALLOW = (
    "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",  # null zero full random urandom
    "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm",  # tty console ptmx
    "c 136:* rwm",  # pts
    "c 10:200 rwm",  # net/tun
)


# The device program, loaded once per process and attached to each machine's cgroup2
# directory (each attachment holds its own reference).  None: the kernel refused it.
_PROGRAM_LOCK = threading.Lock()
_program: list[int | None] = []
device_filter_error: OSError | None = None  # why the kernel refused it, for diagnostics


def device_program() -> int | None:
    """The fd of the BPF device program for DEVICE_ALLOW, or None where bpf(2) cannot load it
    (no CONFIG_CGROUP_BPF, or a seccomp filter around us, as inside another container)."""
    global device_filter_error
    with _PROGRAM_LOCK:
        if not _program:
            try:
                _program.append(device_filter.load(device_filter.parse_rules(DEVICE_ALLOW)))
            except OSError as e:
                device_filter_error = e
                _program.append(None)
        return _program[0]


scope_path = names.scope_path  # the machine's cgroup path, relative to each hierarchy's root


class MachineCgroup:
    """Create, join, signal and remove one machine's cgroup in every hierarchy."""

    def __init__(self, machine: str, layout: cgroupfs.Layout | None = None, path: str | None = None) -> None:
        """PATH: where the machine's cgroup is, if not at scope_path (as its supervisor reports it)."""
        self.machine = machine
        self.path = path or scope_path(machine)
        self.layout = layout or cgroupfs.detect()
        self.dirs = self._dirs()

    def _dirs(self) -> list[Path]:
        dirs: list[Path] = []
        unified = self.layout.unified_path(self.path)
        if unified is not None:
            dirs.append(unified)
        # perf_event: where it is a v1 hierarchy, `perf record -G` (nsdash profile) finds the
        # machine there only; on cgroup2 the controller is implicit and needs no directory.
        for ctrl in (*cgroupfs.V1_CONTROLLERS, "devices", "perf_event"):
            p = self.layout.v1_path(ctrl, self.path)
            if p is not None and p not in dirs:
                dirs.append(p)
        return dirs

    @property
    def filters_devices(self) -> bool:
        """Whether opening device nodes outside DEVICE_ALLOW is refused: by the v1 devices
        whitelist, or by the BPF program on cgroup2 when the kernel takes it."""
        if self.layout.v1_path("devices", self.path) is not None:
            return True
        return self.layout.unified is not None and device_program() is not None

    @property
    def main_dir(self) -> Path:
        """The directory that holds every process of the machine (cgroup2 if present)."""
        return self.dirs[0]

    # ---- queries -----------------------------------------------------------

    def pids(self) -> list[int]:
        """Every process in the machine's cgroup and its descendants."""
        found: list[int] = []
        for d in self.dirs:
            for sub, _, _ in os.walk(d):
                try:
                    with open(os.path.join(sub, "cgroup.procs")) as f:
                        found.extend(int(line) for line in f if line.strip())
                except OSError:
                    continue
        return sorted(set(found))

    def populated(self) -> bool:
        events = self.main_dir / "cgroup.events"
        try:
            with open(events) as f:
                for line in f:
                    if line.startswith("populated "):
                        return line.split()[1] == "1"
        except FileNotFoundError:
            if not self.main_dir.exists():
                return False
        except OSError:
            pass
        return bool(self.pids())

    # ---- effects -----------------------------------------------------------

    def create(self) -> None:
        """Make the cgroup everywhere; refuse if a machine of that name is running."""
        if not self.dirs:
            raise NsdashError(f"no usable cgroup hierarchy under {self.layout.root} (neither cgroup2 nor "
                              "v1 cpu/memory/pids controllers are mounted)",
                              "mount cgroup2 at /sys/fs/cgroup (or the v1 controllers) and try again")
        if self.main_dir.exists() and self.populated():
            raise MachineExists(f"machine '{self.machine}' is already running",
                                f"pick another name with -M, or stop it with 'nsdash poweroff {self.machine}'")
        try:
            for d in self.dirs:
                d.mkdir(parents=True, exist_ok=True)
            self._restrict_devices()
        except OSError as e:
            # What was made in the other hierarchies goes again (a read-only one, a full one).
            self.remove()
            where = f" in {Path(e.filename).parent}" if e.filename else ""
            raise NsdashError(f"cannot create cgroup {self.path}{where}: {e.strerror or e}",
                              "run nsdash as root" if isinstance(e, PermissionError)
                              else "check that every cgroup hierarchy is mounted read-write") from None

    def _restrict_devices(self) -> None:
        d = self.layout.v1_path("devices", self.path)
        if d is not None and d.is_dir():
            _write_each(d / "devices.deny", ("a",))
            _write_each(d / "devices.allow", DEVICE_ALLOW)  # the kernel takes one rule per write
        unified = self.layout.unified_path(self.path)
        prog = device_program() if unified is not None else None
        if unified is None or prog is None:
            return
        try:
            device_filter.attach(unified, prog)
        except OSError as e:
            # The program loaded, so the container keeps CAP_MKNOD on its strength: fail closed.
            self.remove()
            raise NsdashError(f"cannot attach the device filter to cgroup {unified}: {e.strerror or e}",
                              "check that cgroup2 is mounted read-write and nsdash runs as root") from None

    def join(self, pid: int | str = 0) -> None:
        """Move PID (0 = the caller) into the cgroup of every hierarchy."""
        for d in self.dirs:
            with open(d / "cgroup.procs", "w") as f:
                f.write(str(pid))

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send SIG to every process of the machine."""
        kill_file = self.main_dir / "cgroup.kill"
        if sig == signal.SIGKILL and kill_file.exists():
            with contextlib.suppress(OSError):
                kill_file.write_text("1")
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def remove(self, timeout: float = 5.0) -> None:
        """Kill what remains, wait until empty, rmdir deepest first.  Idempotent."""
        deadline = time.monotonic() + timeout
        while True:
            # Usually everything is gone already: try the rmdirs before scanning for processes.
            if all([_rmtree_cgroup(d) for d in self.dirs]):
                return
            if time.monotonic() > deadline:
                raise NsdashError(f"cgroup {self.path} did not empty within {timeout:.0f} s",
                                  "check for processes stuck in uninterruptible sleep (ps -eo stat,pid,cmd)")
            self.kill(signal.SIGKILL)
            time.sleep(0.005)


def _rmtree_cgroup(top: Path) -> bool:
    """rmdir a cgroup and its children, deepest first; False while some stay busy."""
    if _rmdir(str(top)):
        return True  # the common case: no child cgroups, no processes
    if not os.path.isdir(top):
        return True
    ok = True
    for sub, dirs, _ in os.walk(top, topdown=False):
        for name in dirs:
            ok &= _rmdir(os.path.join(sub, name))
    return _rmdir(str(top)) and ok


def _write_each(path: Path, lines: tuple[str, ...]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        for line in lines:
            os.write(fd, line.encode())
    finally:
        os.close(fd)


def _rmdir(path: str) -> bool:
    try:
        os.rmdir(path)
        return True
    except FileNotFoundError:
        return True
    except OSError as e:
        if e.errno in (errno.EBUSY, errno.ENOTEMPTY):
            return False
        if e.errno == errno.EROFS and not os.path.lexists(path):
            return True  # rmdir checks for a writable mount before it looks the name up
        raise
