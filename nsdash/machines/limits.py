"""A running machine's limits (CPUQuota, MemoryMax, MemoryHigh, TasksMax), read.

From systemd where it made the machine's scope (a host booted with systemd: the
unit files it wrote, unitfiles.py, where they say the values exactly, else one
GetAll on the unit's object path), else from the cgroup files nsdash wrote.  Apart from units.py, which makes units and so imports the launcher's
cgroup code (pathlib, signal, the device filter's BPF): `nsdash status` and
the dashboard read limits and need none of it.  Changing them is units.set_limit.
"""

from __future__ import annotations

from nsdash.launcher import properties as props
from nsdash.system import bareos, cgroupfs, unitname
from nsdash.system.kernfiles import read_value

TYPE_CHECKING = False  # mypy takes this as true; typing stays unimported at run time
if TYPE_CHECKING:
    from typing import Any

BUS = "org.freedesktop.systemd1"
LIMITS = ("CPUQuota", "MemoryMax", "MemoryHigh", "TasksMax")  # what status and the dashboard show
# systemd keeps a file there for each transient unit while it holds the unit loaded (and removes
# it when it lets the unit go): a machine's scope is there while systemd holds it.
TRANSIENT_UNITS = "/run/systemd/transient"


def booted() -> bool:
    """sd_booted(): the host runs systemd as its init."""
    return bareos.isdir("/run/systemd/system")


def one_line(text: str) -> str:
    """systemd's error text as one line, without its final full stop."""
    return " ".join(text.split()).rstrip(".")


def systemd_scope(unit: str) -> bool:
    """Whether UNIT is a scope systemd made and holds (a host booted with systemd).  Its transient
    unit file says so: no D-Bus round trip (three, with the bus check and ActiveState) to ask."""
    if not booted() or not unit.endswith(".scope"):
        return False
    return bareos.exists(bareos.join(TRANSIENT_UNITS, unit))


def unit_properties(unit: str, interface: str) -> dict[str, Any]:
    """Every property of INTERFACE (org.freedesktop.systemd1.Scope, ...) of a loaded unit: one call
    on the unit's object path (unitname.bus_path, what GetUnit would answer)."""
    from nsdash.errors import NsdashError
    from nsdash.system import dbus

    try:
        (values,) = dbus.call(BUS, unitname.bus_path(unit), "org.freedesktop.DBus.Properties", "GetAll", "s",
                              [interface])
    except dbus.BusError as e:
        raise NsdashError(f"cannot read {unit}'s properties: {one_line(e.message)}",
                          "is the machine running? see 'nsdash list'") from None
    return {k: dbus.plain(v) for k, v in values.items()}


def unit_limits(unit: str) -> dict[str, str]:
    """The limits systemd holds for UNIT (a scope)."""
    values = unit_properties(unit, "org.freedesktop.systemd1.Scope")
    out: dict[str, str] = {}
    quota = values.get("CPUQuotaPerSecUSec")
    if isinstance(quota, int) and quota != props.UINT64_MAX:
        out["CPUQuota"] = f"{quota / 10_000:g}%"
    for name in ("MemoryMax", "MemoryHigh", "TasksMax"):
        value = values.get(name)
        if isinstance(value, int) and value != props.UINT64_MAX:
            out[name] = str(value)
    return out


def cgroupfs_limits(cgroup: str, layout: cgroupfs.Layout) -> dict[str, str]:
    """The same figures from the cgroup files nsdash wrote (hosts without systemd); the
    hierarchies as strings (the Layout's Paths would bring pathlib)."""
    rel = cgroup.lstrip("/")

    def v1(hierarchy: str) -> str | None:
        base = layout.v1_dirs.get(hierarchy)
        return None if base is None else f"{base}/{rel}"

    out: dict[str, str] = {}
    v2 = None if layout.unified_dir is None else f"{layout.unified_dir}/{rel}"
    quota = read_value(f"{v2}/cpu.max") if v2 else None
    cpu = v1("cpu")
    if quota is None and cpu is not None:
        q, period = read_value(f"{cpu}/cpu.cfs_quota_us"), read_value(f"{cpu}/cpu.cfs_period_us")
        quota = None if q is None or period is None else f"{'max' if q == '-1' else q} {period}"
    if quota and not quota.startswith("max"):
        q, period = quota.split()
        out["CPUQuota"] = f"{int(q) * 100 / int(period):g}%"
    for name in ("MemoryMax", "MemoryHigh", "TasksMax"):
        for hierarchy, filename in props.CGROUP_FILES[name]:
            d = v1(hierarchy) if hierarchy else v2
            text = read_value(f"{d}/{filename}") if d is not None else None
            if text is None:
                continue
            if text != "max" and text.isdigit() and int(text) < 2**62:  # v1's "none" is about 2**63
                out[name] = text
            break
    return out


# The cgroup2 controllers whose files hold every limit above (cpu.max, memory.max, memory.high, pids.max)
LIMIT_CONTROLLERS = frozenset({"cpu", "memory", "pids"})


def files_hold_limits(cgroup: str, layout: cgroupfs.Layout) -> bool:
    """Whether CGROUP's cgroup2 files hold all its limits: cgroup2 has the cpu, memory and pids
    controllers enabled for it.  systemd writes a scope's limits there as it sets them, so on
    such a host (most pure cgroup2 ones) they are on disk; where it does not (a hybrid host, a
    nested one without controllers), only systemd knows them."""
    if layout.unified_dir is None:
        return False
    found = read_value(f"{layout.unified_dir}/{cgroup.lstrip('/')}/cgroup.controllers")
    return found is not None and set(found.split()) >= LIMIT_CONTROLLERS


def limits(machine: str, cgroup: str, layout: cgroupfs.Layout | None = None) -> dict[str, str]:
    """The machine's CPUQuota, MemoryMax, MemoryHigh and TasksMax where set (bytes and tasks as
    numbers): from its cgroup files where they hold them all (no D-Bus round trip for what is
    on disk), else from the scope unit systemd made: its unit files where they say them exactly
    (unitfiles.py), else its properties over D-Bus; else (no systemd) from the files nsdash wrote."""
    layout = layout or cgroupfs.detect()
    unit = cgroup.rsplit("/", 1)[-1]
    if systemd_scope(unit) and not files_hold_limits(cgroup, layout):
        from nsdash.machines import unitfiles

        found = unitfiles.scope_limits(unit)  # what systemd wrote of the unit: no D-Bus client
        return unit_limits(unit) if found is None else found
    return cgroupfs_limits(cgroup, layout)
