"""systemd units for machines, on hosts booted with systemd.

There systemd owns the cgroup tree, so nsdash asks it, as systemd-nspawn does:
- the machine's payload runs in a transient scope, machine-NAME.scope in
  machine.slice (or --slice), with delegation (the container's own init makes
  its cgroups below), nspawn's defaults (TasksMax=16384, DevicePolicy=closed
  with nspawn's device list) and the user's --property= assignments.  The
  container's first process waits until systemd has moved it there
  (ScopeCgroup.place), so everything it forks, PID 1 included, starts inside;
  machined then finds that unit when the machine registers.
- a detached supervisor runs in a transient service of its own,
  nsdash@NAME.service (named like systemd-nspawn@NAME.service: one instance
  per machine of one kind of service; `systemctl status 'nsdash@*'` lists
  them), so the machine outlives whoever started it; its stderr goes to the
  journal.
Hosts without systemd, and --keep-unit, keep the cgroupfs backend
(launcher/cgroup.py) and the caller's own unit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import time

from nsdash.errors import MachineExists, NsdashError
from nsdash.launcher import properties as props
from nsdash.launcher.cgroup import TASKS_MAX, MachineCgroup  # nspawn's (and machined's) default for a scope
from nsdash.launcher.spec import ContainerSpec
from nsdash.machines.limits import booted, one_line, systemd_scope
from nsdash.system import cgroupfs, unitname

BUS = "org.freedesktop.systemd1"
PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
UNIT = "org.freedesktop.systemd1.Unit"
NO_SUCH_UNIT = "org.freedesktop.systemd1.NoSuchUnit"
# nspawn's device list: with DevicePolicy=closed systemd also allows the pseudo devices
# (/dev/null, zero, full, random, urandom, tty, ptmx); the container may use, never make, PTYs.
DEVICE_ALLOW = (("/dev/net/tun", "rwm"), ("char-pts", "rw"))
LIVE = ("running", "active", "activating", "deactivating", "reloading")

# typing, and the D-Bus client (socket, dbus-fast's message code), are imported where used: on a
# host without systemd `nsdash status` reads the limits from cgroup files and needs neither.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    Triple = tuple[str, str, Any]  # (D-Bus property name, signature, value)


def manages(spec: ContainerSpec) -> bool:
    """Whether systemd makes this machine's units: a host booted with systemd whose bus
    answers, unless --keep-unit keeps the machine in the caller's unit."""
    if spec.keep_unit or not booted():
        return False
    from nsdash.system import dbus

    return dbus.system_bus_reachable()


def _manager(member: str, signature: str = "", body: list[Any] | None = None,
             unix_fds: list[int] | None = None) -> list[Any]:
    from nsdash.system import dbus

    return dbus.call(BUS, PATH, MANAGER, member, signature, body, unix_fds=unix_fds)


def start_transient(unit: str, properties: list[Triple], unix_fds: list[int] | None = None) -> None:
    """StartTransientUnit; systemd's refusal (a bad property among them) as one line."""
    from nsdash.system import dbus

    body = [unit, "fail", [[name, dbus.variant(sig, value)] for name, sig, value in properties], []]
    try:
        _manager("StartTransientUnit", "ssa(sv)a(sa(sv))", body, unix_fds=unix_fds)
    except dbus.BusError as e:
        if "already exists" in e.message or "already loaded" in e.message:
            raise MachineExists(f"unit {unit} already exists: {one_line(e.message)}",
                                f"see 'systemctl status {unit}'") from None
        raise NsdashError(f"systemd refused to start {unit}: {one_line(e.message)}",
                          "check the --property= assignments against systemd.resource-control(5)") from None


def unit_state(unit: str) -> str | None:
    """The unit's ActiveState, or None when systemd has no such unit loaded."""
    from nsdash.system import dbus

    try:
        (path,) = _manager("GetUnit", "s", [unit])
        (value,) = dbus.call(BUS, path, "org.freedesktop.DBus.Properties", "Get", "ss", [UNIT, "ActiveState"])
    except dbus.BusError as e:
        if e.name in (NO_SUCH_UNIT, "org.freedesktop.DBus.Error.UnknownObject"):
            return None
        raise NsdashError(f"cannot ask systemd about {unit}: {one_line(e.message)}") from None
    return str(dbus.plain(value))


def set_properties(unit: str, assignments: list[props.Property], runtime: bool = True) -> None:
    """systemctl set-property [--runtime] UNIT NAME=VALUE...: systemd's refusal as one line."""
    from nsdash.system import dbus

    body = [unit, runtime, [[n, dbus.variant(s, v)] for n, s, v in (props.dbus_value(p) for p in assignments)]]
    try:
        _manager("SetUnitProperties", "sba(sv)", body)
    except dbus.BusError as e:
        raise NsdashError(f"systemd refused to set {' '.join(p.assignment for p in assignments)} "
                          f"on {unit}: {one_line(e.message)}") from None


def _device_binds(spec: ContainerSpec) -> list[Triple]:
    """Device nodes bound in with --bind stay usable, as nspawn allows them in its scope."""
    out: list[Triple] = []
    for bind in spec.binds:
        if bind.source is None:  # an empty --bind source: a temporary directory, no device
            continue
        with contextlib.suppress(OSError):
            mode = os.stat(bind.source).st_mode
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                out.append(("DeviceAllow", "a(ss)", [[str(bind.source), "r" if bind.read_only else "rw"]]))
    return out


def scope_properties(spec: ContainerSpec, pid: int) -> list[Triple]:
    """What the machine's scope is made with: nspawn's defaults, then the user's --property=
    assignments (systemd takes the last assignment of a property)."""
    out: list[Triple] = [
        ("Description", "s", f"Container {spec.machine}"),
        ("Slice", "s", spec.slice or unitname.DEFAULT_SLICE),
        ("Delegate", "b", True),
        ("CollectMode", "s", "inactive-or-failed"),
        ("TasksMax", "t", TASKS_MAX),
        ("DevicePolicy", "s", "closed"),
        ("DeviceAllow", "a(ss)", [list(d) for d in DEVICE_ALLOW]),
        *_device_binds(spec),
        # machinectl terminate (and systemctl stop) mean "kill everything now" (machinectl(1));
        # the supervisor's service stops first at shutdown and powers the machine off cleanly.
        ("KillSignal", "i", int(signal.SIGKILL)),
    ]
    out += [props.dbus_value(p) for p in props.parse_all(spec.properties)]
    out.append(("PIDs", "au", [pid]))
    return out


class ScopeCgroup(MachineCgroup):
    """The machine's cgroup as a scope unit systemd makes around the container's first
    process; it reads, signals and waits on the cgroup systemd made."""

    child_joins = False

    def __init__(self, spec: ContainerSpec, layout: cgroupfs.Layout | None = None) -> None:
        super().__init__(spec.machine, layout)  # no properties here: systemd applies them
        self.spec = spec
        self.unit = unitname.machine_scope(spec.machine)
        self.path = f"{unitname.slice_path(spec.slice or unitname.DEFAULT_SLICE)}/{self.unit}"
        self.dirs = self._dirs()

    @property
    def filters_devices(self) -> bool:
        return True  # DevicePolicy=closed: systemd's device program

    def create(self) -> None:
        """Nothing is made before place(); refuse a machine whose scope still runs."""
        if not self.dirs:
            raise NsdashError(f"no usable cgroup hierarchy under {self.layout.root}",
                              "systemd should have mounted cgroup2 at /sys/fs/cgroup")
        state = unit_state(self.unit)
        if state in LIVE:
            raise MachineExists(f"machine '{self.machine}' is already running ({self.unit} is {state})",
                                f"pick another name with -M, or stop it with 'machinectl poweroff {self.machine}'")

    def place(self, pid: int, timeout: float = 10.0) -> None:
        """Ask systemd for the scope around PID and wait until PID is in it."""
        start_transient(self.unit, scope_properties(self.spec, pid))
        deadline = time.monotonic() + timeout
        while _cgroup_of(pid) != self.path:
            if time.monotonic() > deadline:
                raise NsdashError(f"systemd did not move the container into {self.unit} within "
                                  f"{timeout:.0f} s (the unit is {unit_state(self.unit) or 'gone'})",
                                  f"see 'systemctl status {self.unit}' and the journal")
            time.sleep(0.002)

    def apply(self, prop: props.Property) -> None:
        """A live change goes through systemd (and so shows in systemctl show)."""
        set_properties(self.unit, [prop])

    def remove(self, timeout: float = 10.0) -> None:
        """Kill what remains and wait until systemd has stopped and unloaded the scope (it
        does once the cgroup is empty), so the next boot may make it again."""
        deadline = time.monotonic() + timeout
        while True:
            # The cgroup goes first (systemd stops the emptied scope); only then ask over the bus
            # whether the unit is unloaded, which is slower than looking at a directory.
            state = unit_state(self.unit) if not self.main_dir.exists() else "active"
            if state is None:
                return
            if time.monotonic() > deadline:
                raise NsdashError(f"{self.unit} did not go away within {timeout:.0f} s (it is {state})",
                                  f"see 'systemctl status {self.unit}'")
            if self.main_dir.exists():
                self.kill(signal.SIGKILL)
            time.sleep(0.01)


def _cgroup_of(pid: int) -> str | None:
    """PID's cgroup2 path (the systemd hierarchy on hybrid hosts)."""
    try:
        paths = cgroupfs.own_cgroup(pid)
    except OSError:
        return None
    return paths.get("") or paths.get("name=systemd")


def cgroup_backend(spec: ContainerSpec) -> MachineCgroup | None:
    """The cgroup for one run of SPEC: a systemd scope where systemd manages the host, else
    None (Container's default: nsdash makes the cgroups itself)."""
    return ScopeCgroup(spec) if manages(spec) else None


# ---------------------------------------------------------------- the supervisor's service

ENVIRONMENT = ("PATH", "PYTHONPATH", "LANG", "LC_ALL", "TERM", "DBUS_SYSTEM_BUS_ADDRESS")


def start_supervisor(machine: str, argv: list[str], env: dict[str, str], stdin_fd: int, stdout_fd: int,
                     stop_timeout: float) -> str:
    """Run ARGV (the detached supervisor) as nsdash@MACHINE.service with STDIN_FD and
    STDOUT_FD as its stdin and stdout (the spec in, the start report out) and its stderr
    in the journal; returns the unit's name."""
    unit = unitname.supervisor_service(machine)
    keep = [f"{k}={v}" for k, v in env.items() if k in ENVIRONMENT or k.startswith("NSDASH_")]
    start_transient(unit, [
        ("Description", "s", f"nsdash supervisor of machine {machine}"),
        ("ExecStart", "a(sasb)", [[argv[0], argv, False]]),
        ("Environment", "as", keep),
        ("WorkingDirectory", "s", "/"),
        ("StandardInputFileDescriptor", "h", 0),
        ("StandardOutputFileDescriptor", "h", 1),
        ("StandardError", "s", "journal"),
        ("SyslogIdentifier", "s", "nsdash"),
        ("Slice", "s", unitname.DEFAULT_SLICE),  # as systemd-nspawn@.service
        ("CollectMode", "s", "inactive-or-failed"),
        # SIGTERM to the supervisor powers the machine off; what is left then is killed.
        ("KillMode", "s", "mixed"),
        ("TimeoutStopUSec", "t", int(stop_timeout * 1_000_000)),
    ], unix_fds=[stdin_fd, stdout_fd])
    return unit


# ---------------------------------------------------------------- limits, changed live (read: machines/limits.py)


def set_limit(machine: str, cgroup: str, assignment: str, layout: cgroupfs.Layout | None = None) -> None:
    """Change one property of a running machine: through systemd where it made the scope (as
    `systemctl set-property --runtime`), else in the cgroup files nsdash made."""
    prop = props.parse(assignment)
    unit = cgroup.rsplit("/", 1)[-1]
    if systemd_scope(unit):
        set_properties(unit, [prop])
        return
    refused = props.refusal([prop])
    if refused is not None:
        raise refused
    cg = MachineCgroup(machine, layout)
    cg.path = cgroup
    cg.dirs = cg._dirs()
    cg.apply(prop)
