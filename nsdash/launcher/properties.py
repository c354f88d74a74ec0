"""--property=NAME=VALUE: systemd's unit properties, for systemd and for cgroupfs.

systemd-nspawn passes --property= assignments to the scope it asks systemd for;
so does nsdash on a host booted with systemd (to_dbus(), the typed value
systemd's StartTransientUnit and SetUnitProperties take; a name systemd does
not know goes as a string, and systemd's own refusal is passed through).
Without systemd nsdash makes the machine's cgroups itself and maps what has
a cgroup file (cgroup_writes(): cgroup2's files, else the v1 equivalent on
hybrid and legacy hosts); anything else is refused with one line.

The syntax follows systemd.resource-control(5) and systemd.kill(5): sizes take
K, M, G, T, P, E (base 1024), "infinity" or a percentage of physical memory;
CPUQuota= a percentage of one CPU; weights 1..10000; time spans such as "5s",
"1min 30s" or "250ms".
"""

from __future__ import annotations

import posix

from nsdash.errors import UsageError
from nsdash.system import unitname
from nsdash.system.frozen import Frozen
from nsdash.system.kernfiles import read_value

UINT64_MAX = 2**64 - 1
UINT32_MAX = 2**32 - 1
CFS_PERIOD_USEC = 100_000  # systemd's default CPUQuotaPeriodSec= for cgroup2 and v1 alike

# Properties by the D-Bus type systemd takes them as (org.freedesktop.systemd1(5)).
_BYTES = ("MemoryMax", "MemoryHigh", "MemoryLow", "MemoryMin", "MemorySwapMax", "MemoryLimit")
_WEIGHTS = ("CPUWeight", "StartupCPUWeight", "IOWeight", "StartupIOWeight")
_BOOLS = ("Delegate", "CPUAccounting", "MemoryAccounting", "TasksAccounting", "IOAccounting",
          "IPAccounting", "SendSIGKILL", "SendSIGHUP")
_STRINGS = ("DevicePolicy", "KillMode", "CollectMode", "Description", "Slice")
_SIGNALS = ("KillSignal", "FinalKillSignal", "RestartKillSignal")
_USECS = ("TimeoutStopSec", "RuntimeMaxSec", "CPUQuotaPeriodSec")

# What nsdash can apply without systemd: property -> ((hierarchy key, file), ...) in order of
# preference; hierarchy key "" is cgroup2, anything else a v1 controller.
CGROUP_FILES: dict[str, tuple[tuple[str, str], ...]] = {
    "CPUQuota": (("", "cpu.max"), ("cpu", "cpu.cfs_quota_us")),
    "CPUWeight": (("", "cpu.weight"), ("cpu", "cpu.shares")),
    "MemoryMax": (("", "memory.max"), ("memory", "memory.limit_in_bytes")),
    # v1 has no throttling limit; its soft limit is what reclaim aims at under pressure, the
    # nearest thing to MemoryHigh= ("reclaim above this") the v1 controller offers.
    "MemoryHigh": (("", "memory.high"), ("memory", "memory.soft_limit_in_bytes")),
    "MemoryLow": (("", "memory.low"),),
    "MemoryMin": (("", "memory.min"),),
    "MemorySwapMax": (("", "memory.swap.max"),),
    "TasksMax": (("", "pids.max"), ("pids", "pids.max")),
    "IOWeight": (("", "io.weight"), ("blkio", "blkio.weight"), ("blkio", "blkio.bfq.weight")),
}
# The v2 controller each cgroup2 file needs enabled in the parents' cgroup.subtree_control.
V2_CONTROLLER = {"cpu.max": "cpu", "cpu.weight": "cpu", "memory.max": "memory", "memory.high": "memory",
                 "memory.low": "memory", "memory.min": "memory", "memory.swap.max": "memory",
                 "pids.max": "pids", "io.weight": "io"}

# Patterns for re, imported only where a size, a percentage or a time span is parsed (the
# TasksMax= every spawn sets needs none): re costs a spawn a few milliseconds to import,
# and caches what it compiles.
_SIZE = r"(?i)^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGTPE]?)(?:i?B)?\s*$"
_PERCENT = r"^\s*([0-9]+(?:\.[0-9]+)?)%\s*$"
_SPAN = r"([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)"
_SPAN_UNITS = {"": 1_000_000, "us": 1, "usec": 1, "ms": 1000, "msec": 1000, "s": 1_000_000, "sec": 1_000_000,
               "second": 1_000_000, "seconds": 1_000_000, "m": 60_000_000, "min": 60_000_000,
               "minute": 60_000_000, "minutes": 60_000_000, "h": 3_600_000_000, "hr": 3_600_000_000,
               "hour": 3_600_000_000, "hours": 3_600_000_000}


class Property(Frozen):
    """One NAME=VALUE assignment, checked; `value` stays as the user wrote it."""

    name: str
    value: str

    @property
    def assignment(self) -> str:
        return f"{self.name}={self.value}"


def _bad(prop: str, value: str, why: str) -> UsageError:
    # systemd-run's wording for a value it cannot parse, so a script's error text carries over
    return UsageError(f"Failed to parse {prop}= value '{value}': {why}",
                      "see systemd.resource-control(5) for the property's syntax")


def parse(text: str, option: str = "--property") -> Property:
    """NAME=VALUE as systemd-nspawn's --property= takes it; the value is checked where
    nsdash knows the property, else left to systemd."""
    name, eq, value = text.partition("=")
    if not eq or not name or not (name.isascii() and name.isalnum() and name[0].isalpha()):
        raise UsageError(f"Not an assignment: {text!r}", f"use {option}=NAME=VALUE, e.g. {option}=MemoryMax=1G")
    prop = Property(name, value)
    dbus_value(prop)  # every known property is checked here, once
    return prop


def _size(prop: Property) -> tuple[str, str, int]:
    """(D-Bus name, signature, value) for a size: bytes, infinity or a percentage (a Scale)."""
    value = prop.value.strip()
    if value in ("", "infinity"):
        return prop.name, "t", UINT64_MAX
    share = _percent(value)
    if share is not None:
        if share > 100:
            raise _bad(prop.name, prop.value, "percentage above 100%")
        return prop.name + "Scale", "u", round(share * UINT32_MAX / 100)
    import re

    m = re.match(_SIZE, value)
    if not m:
        raise _bad(prop.name, prop.value, "not a size (bytes with K, M, G, T suffix, N%, or infinity)")
    factor = 1024 ** "KMGTPE".find(m.group(2).upper()) * 1024 if m.group(2) else 1
    size = int(float(m.group(1)) * factor)
    if size >= UINT64_MAX:  # (systemd's parse_size(): ERANGE; the value went to the kernel as given)
        raise _bad(prop.name, prop.value, "too large (at most 16E, or infinity)")
    return prop.name, "t", size


def _percent(value: str) -> float | None:
    """N for 'N%', else None.  Every spawn sets TasksMax: a plain number is told apart
    without re."""
    if not value.endswith("%"):
        return None
    import re

    m = re.match(_PERCENT, value)
    return float(m.group(1)) if m else None


def _span_usec(prop: Property) -> int:
    import re

    value = prop.value.strip()
    if value == "infinity":
        return UINT64_MAX
    total, pos = 0.0, 0
    for m in re.finditer(_SPAN, value):
        if value[pos:m.start()].strip() or m.group(2) not in _SPAN_UNITS:
            raise _bad(prop.name, prop.value, "not a time span (e.g. 5s, 1min 30s, 250ms)")
        total += float(m.group(1)) * _SPAN_UNITS[m.group(2)]
        pos = m.end()
    if not value or value[pos:].strip():
        raise _bad(prop.name, prop.value, "not a time span (e.g. 5s, 1min 30s, 250ms)")
    return int(total)


def dbus_value(prop: Property) -> tuple[str, str, object]:
    """(D-Bus property name, signature, value) as StartTransientUnit takes it."""
    name, value = prop.name, prop.value.strip()
    if name == "CPUQuota":
        if not value:
            return "CPUQuotaPerSecUSec", "t", UINT64_MAX
        quota = _percent(value)
        if quota is None or quota <= 0:
            raise _bad(name, prop.value, "CPU quota must be a percentage above 0% (e.g. 50% or 200%)")
        return "CPUQuotaPerSecUSec", "t", round(quota * 10_000)
    if name in _BYTES:
        return _size(prop)
    if name == "TasksMax":
        if value in ("", "infinity"):
            return name, "t", UINT64_MAX
        share = _percent(value)
        if share is not None:
            if share > 100:
                raise _bad(name, prop.value, "percentage above 100%")
            return "TasksMaxScale", "u", round(share * UINT32_MAX / 100)
        if not value.isdigit() or int(value) < 1:
            raise _bad(name, prop.value, "not a number of tasks (N >= 1, N% or infinity)")
        return name, "t", int(value)
    if name in _WEIGHTS:
        if not value.isdigit() or not 1 <= int(value) <= 10_000:
            raise _bad(name, prop.value, "weight must be between 1 and 10000")
        return name, "t", int(value)
    if name in _BOOLS:
        if value.lower() in ("1", "yes", "true", "on"):
            return name, "b", True
        if value.lower() in ("0", "no", "false", "off"):
            return name, "b", False
        raise _bad(name, prop.value, "not a boolean")
    if name in _SIGNALS:
        from nsdash.launcher import validate

        return name, "i", validate.parse_signal(value)
    if name in _USECS:
        return name.replace("Sec", "USec"), "t", _span_usec(prop)
    if name == "DeviceAllow":
        path, _, access = value.partition(" ")
        if not path:
            raise _bad(name, prop.value, "use DeviceAllow=PATH [rwm]")
        return name, "a(ss)", [[path, access.strip() or "rwm"]]
    # Unknown to nsdash (or a plain string): systemd judges it and its error is passed through.
    return name, "s", prop.value


# ---------------------------------------------------------------- cgroupfs (no systemd)


def _physical_memory() -> int:
    return posix.sysconf("SC_PAGE_SIZE") * posix.sysconf("SC_PHYS_PAGES")


def _system_tasks_max() -> int:
    """systemd's reference for TasksMax=N%: the smaller of pid_max - 1 and threads-max."""
    values = []
    for path in ("/proc/sys/kernel/pid_max", "/proc/sys/kernel/threads-max"):
        value = read_value(path)
        if value is not None and value.isdigit():
            values.append(int(value))
    return min([values[0] - 1] + values[1:]) if values else 4194303


def file_value(prop: Property, hierarchy: str, filename: str) -> list[tuple[str, str]]:
    """What to write for PROP into FILENAME of HIERARCHY ("" = cgroup2): (file, text) pairs,
    in order (v1's quota needs its period first)."""
    dname, sig, value = dbus_value(prop)
    assert isinstance(value, int)
    if dname.endswith("Scale"):  # a percentage of the machine's memory or the system's tasks
        whole = _system_tasks_max() if prop.name == "TasksMax" else _physical_memory()
        value = whole * value // UINT32_MAX
    infinite = value == UINT64_MAX
    if prop.name == "CPUQuota":
        quota = max(1000, value * CFS_PERIOD_USEC // 1_000_000)  # systemd's 1 ms floor
        if hierarchy == "":
            return [(filename, f"{'max' if infinite else quota} {CFS_PERIOD_USEC}")]
        return [("cpu.cfs_period_us", str(CFS_PERIOD_USEC)), (filename, "-1" if infinite else str(quota))]
    if filename == "cpu.shares":  # systemd's cgroup_cpu_weight_to_shares()
        return [(filename, str(min(262144, max(2, value * 1024 // 100))))]
    if filename in ("blkio.weight", "blkio.bfq.weight"):  # systemd's cgroup_weight_io_to_blkio()
        return [(filename, str(min(1000, max(10, value * 500 // 100))))]
    if filename == "io.weight":
        return [(filename, f"default {value}")]
    if hierarchy == "":
        return [(filename, "max" if infinite else str(value))]
    if infinite:
        return [(filename, "max" if filename == "pids.max" else "-1")]
    return [(filename, str(value))]


def refusal(props: list[Property]) -> UsageError | None:
    """The one-line refusal for the first property nsdash cannot map to a cgroup file."""
    for prop in props:
        if prop.name not in CGROUP_FILES:
            known = ", ".join(f"{n}=" for n in CGROUP_FILES)
            return UsageError(f"--property={prop.assignment}: this host is not booted with systemd, and "
                              f"nsdash maps only {known} to cgroup files itself",
                              "drop the property, or run on a host booted with systemd")
    return None


def parse_all(values: list[str] | tuple[str, ...]) -> tuple[Property, ...]:
    return tuple(parse(v) for v in values)


def parse_slice(value: str, option: str = "--slice") -> str:
    """--slice=NAME as systemd-nspawn takes it: 'foo' means foo.slice."""
    name = value if value.endswith(".slice") else value + ".slice"
    if not unitname.is_valid_slice(name):
        raise UsageError(f"invalid {option} value {value!r}: not a valid slice name",
                         f"use {option}=NAME[.slice] with letters, digits, ':', '_' and '.', and '-' "
                         "only between parent and child (machine-web.slice is inside machine.slice)")
    return name
