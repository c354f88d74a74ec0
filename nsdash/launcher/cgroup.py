"""The machine's cgroup: machine.slice/machine-NAME.scope in every hierarchy we use.

On a unified host that is one directory in the cgroup2 tree.  On hybrid and
legacy hosts the machine also gets the same directory in the v1 cpu, cpuacct,
memory, pids and blkio hierarchies, so monitors find memory and task figures
there (cgroup2 on a hybrid host has no controllers), and in the v1 devices
hierarchy, where a whitelist stops the container from using device nodes it
creates.  It also joins its own cgroup in every other v1 hierarchy mounted
(cpuset, freezer, name=systemd...): the container's cgroup namespace is rooted
where it stands in each, so a hierarchy it mounts inside shows its own
subtree, never the host's or another machine's.  Wherever cgroup2 is mounted,
the same rules are also attached to the machine's cgroup2 directory as an
eBPF device program (device_filter.py): on a unified host that program is the
only device filter; on a hybrid host the kernel asks both, and the program
already holds while the container's first processes have joined cgroup2 but
not yet the v1 hierarchies.  pids.max is systemd-nspawn's TasksMax.
The truth of "running" is a populated cgroup, never a state file.

MachineCgroup is the cgroupfs backend: nsdash makes the directories itself
(hosts without systemd, and --keep-unit).  On a host booted with systemd the
machines layer hands Container a subclass whose cgroup systemd makes (a scope
unit with delegation, machines/units.py); the engine code is the same for both:
create() before anything, place(PID) while the container's first process waits,
remove() at the end.
"""

from __future__ import annotations

import _thread
import contextlib
import errno
import os
import signal
import time
from pathlib import Path

from nsdash.errors import MachineExists, NsdashError
from nsdash.launcher import device_filter, names
from nsdash.launcher import properties as props
from nsdash.system import cgroupfs

# systemd-nspawn's scope (and systemd-nspawn@.service) has TasksMax=16384: a fork bomb
# inside stops there, not at the host's pid_max.
TASKS_MAX = 16384

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
_PROGRAM_LOCK = _thread.allocate_lock()  # threading.Lock, without threading's import
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

    # The container's first process joins the cgroup itself (True), or waits until
    # place() has had it moved there (a cgroup some manager makes around a PID).
    child_joins = True

    def __init__(self, machine: str, layout: cgroupfs.Layout | None = None, path: str | None = None,
                 slice_name: str | None = None, properties: tuple[str, ...] = ()) -> None:
        """PATH: where the machine's cgroup is, if not at scope_path (as its supervisor reports it)."""
        self.machine = machine
        self.path = path or scope_path(machine, slice_name)
        self.layout = layout or cgroupfs.detect()
        self.properties = props.parse_all(properties)
        self.dirs = self._dirs()

    def _dirs(self) -> list[Path]:
        return [Path(d) for d in cgroupfs.machine_dirs(self.layout, self.path)]

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
        return cgroupfs.procs(self.dirs)

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
        refused = props.refusal(list(self.properties))
        if refused is not None:
            raise refused
        if not self.dirs:
            raise NsdashError(f"no usable cgroup hierarchy under {self.layout.root} (neither cgroup2 nor "
                              "v1 cpu/memory/pids controllers are mounted)",
                              "mount cgroup2 at /sys/fs/cgroup (or the v1 controllers) and try again")
        if self.main_dir.exists() and self.populated():
            raise MachineExists(f"machine '{self.machine}' is already running",
                                f"pick another name with -M, or stop it with 'nsdash poweroff {self.machine}'")
        try:
            for d in self.dirs:
                _make(d)
            cpuset = self.layout.v1_path("cpuset", self.path)
            if cpuset is not None:
                _inherit_cpuset(cpuset, self.layout.v1["cpuset"])
            self._limit_tasks()
            self._restrict_devices()
            for prop in self.properties:
                self.apply(prop)
        except NsdashError:
            self.remove()
            raise
        except OSError as e:
            # What was made in the other hierarchies goes again (a read-only one, a full one).
            self.remove()
            where = f" in {Path(e.filename).parent}" if e.filename else ""
            raise NsdashError(f"cannot create cgroup {self.path}{where}: {e.strerror or e}",
                              "run nsdash as root" if isinstance(e, PermissionError)
                              else "check that every cgroup hierarchy is mounted read-write") from None

    def _limit_tasks(self) -> None:
        """systemd-nspawn's TasksMax unless --property=TasksMax= says otherwise (applied after);
        nothing where no pids controller is there at all."""
        if any(p.name == "TasksMax" for p in self.properties):
            return
        with contextlib.suppress(NsdashError):
            self.apply(props.parse(f"TasksMax={TASKS_MAX}"))

    def place(self, pid: int) -> None:
        """Have PID (the container's first process, waiting) moved into the cgroup by whoever
        makes it.  cgroupfs: nothing to do, the process joins by itself (child_joins)."""

    def apply(self, prop: props.Property) -> None:
        """Write PROP (--property=, or a live change) into the machine's cgroup files: cgroup2's
        where its controller is enabled or can be, else the v1 equivalent; one line if neither."""
        for hierarchy, filename in props.CGROUP_FILES.get(prop.name, ()):
            d = self._dir_for(hierarchy, filename)
            if d is None:
                continue
            for name, text in props.file_value(prop, hierarchy, filename):
                try:
                    (d / name).write_text(text)
                except OSError as e:
                    raise NsdashError(f"cannot set {prop.assignment} on cgroup {self.path}: "
                                      f"{name}: {e.strerror or e}",
                                      "check the value against the limits of the cgroup above it") from None
            return
        raise NsdashError(f"cannot set {prop.assignment}: no cgroup controller for it on this host "
                          f"({', '.join(f for _, f in props.CGROUP_FILES.get(prop.name, ()))} all missing)",
                          "mount the controller (cgroup2, or the v1 hierarchy) or drop the property")

    def _dir_for(self, hierarchy: str, filename: str) -> Path | None:
        """The directory holding FILENAME in HIERARCHY, enabling a cgroup2 controller in the
        parents' cgroup.subtree_control when it is available but not yet enabled there."""
        if hierarchy:
            d = self.layout.v1_path(hierarchy, self.path)
            return d if d is not None and (d / filename).exists() else None
        d = self.layout.unified_path(self.path)
        if d is None or self.layout.unified is None:
            return None
        if (d / filename).exists():
            return d
        controller = props.V2_CONTROLLER[filename]
        parents = [self.layout.unified] + [self.layout.unified / Path(*d.relative_to(self.layout.unified).parts[:i])
                                           for i in range(1, len(d.relative_to(self.layout.unified).parts))]
        for parent in parents:
            try:
                if controller not in (parent / "cgroup.controllers").read_text().split():
                    return None
                (parent / "cgroup.subtree_control").write_text(f"+{controller}")
            except OSError:
                return None
        return d if (d / filename).exists() else None

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
        """Move PID (0 = the caller) into the cgroup of every hierarchy (those a machine started
        by an older nsdash never had, it has not: the main one must be there)."""
        for d in self.dirs:
            try:
                with open(d / "cgroup.procs", "w") as f:
                    f.write(str(pid))
            except FileNotFoundError:
                if d == self.main_dir:
                    raise

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
                self._remove_slices()
                return
            if time.monotonic() > deadline:
                raise NsdashError(f"cgroup {self.path} did not empty within {timeout:.0f} s",
                                  "check for processes stuck in uninterruptible sleep (ps -eo stat,pid,cmd)")
            self.kill(signal.SIGKILL)
            time.sleep(0.005)


    def _remove_slices(self) -> None:
        """The slices nsdash made go with their last machine, machine.slice too (systemd
        stops an unneeded slice and removes its cgroup alike); a slice still holding another
        machine is busy and stays."""
        parents = Path(self.path).parents
        for parent in list(parents)[:-1]:  # deepest first, never the hierarchy root
            for d in self.dirs:
                with contextlib.suppress(OSError):
                    os.rmdir(str(d)[:-len(self.path)] + str(parent))


def _make(cgroup: Path, tries: int = 5) -> None:
    """mkdir -p, again when a parent slice went between our mkdirs (its last machine
    stopped meanwhile and took it away: _remove_slices)."""
    for _ in range(tries - 1):
        try:
            cgroup.mkdir(parents=True, exist_ok=True)
            return
        except FileNotFoundError:
            continue
    cgroup.mkdir(parents=True, exist_ok=True)


def _rmtree_cgroup(top: Path) -> bool:
    """rmdir a cgroup and its children, deepest first; False while some stay busy."""
    if _rmdir(str(top)):
        return True  # the common case: no child cgroups, no processes
    # (busy, so it is there: a booted guest's init.scope, say; one gone meanwhile lists nothing)
    ok = True
    for sub in reversed(list(cgroupfs.subtree(top))[1:]):  # deepest first; the first is TOP itself
        ok &= _rmdir(sub)
    return _rmdir(str(top)) and ok


def _inherit_cpuset(leaf: Path, top: Path) -> None:
    """A new v1 cpuset cgroup has no CPUs and no memory nodes (nothing can join it)
    until given some: each level from TOP down to LEAF takes its parent's."""
    levels = [leaf, *leaf.parents]
    chain = list(reversed(levels[:levels.index(top)]))
    for d in chain:
        for name in ("cpuset.cpus", "cpuset.mems"):
            if not (d / name).read_text().strip():
                (d / name).write_text((d.parent / name).read_text())


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
