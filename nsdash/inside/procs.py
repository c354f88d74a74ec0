"""A unit's processes, read from the host's view of the machine's cgroup.

The machine's systemd names a unit's cgroup relative to the root of the
machine's cgroup namespace (ControlGroup=/system.slice/foo.service).  On the
host that is MACHINE_CGROUP + ControlGroup in the cgroup2 hierarchy (the one a
booted systemd uses, also on hybrid hosts).  PIDs are read there as host PIDs
and translated to the machine's own PIDs through /proc/PID/status (NSpid).
"""

from __future__ import annotations

from nsdash.inside.target import Target
from nsdash.system import bareos, cgroupfs
from nsdash.system.frozen import Frozen

TYPE_CHECKING = False  # paths are strings here: pathlib (with re, enum, urllib) cost `status` 3 ms
if TYPE_CHECKING:
    import os

    PathLike = str | os.PathLike[str]


class UnitProcess(Frozen):
    """One process in a unit's cgroup."""

    pid: int  # as the machine sees it (None-free: falls back to the host PID)
    host_pid: int
    cgroup: str  # the process's cgroup, relative to the machine's cgroup root
    cmdline: str
    comm: str  # the kernel's short process name (what "Main PID: 29 (dbus-daemon)" shows)


def parse_nspid(status_text: str) -> int | None:
    """The innermost PID from /proc/PID/status' NSpid line."""
    for line in status_text.splitlines():
        if line.startswith("NSpid:"):
            fields = line.split()[1:]
            return int(fields[-1]) if fields else None
    return None


def parse_cmdline(raw: bytes, comm: str = "") -> str:
    """/proc/PID/cmdline as ps shows it; kernel threads and zombies get [comm]."""
    args = [a.decode(errors="replace") for a in raw.rstrip(b"\0").split(b"\0") if a] if raw else []
    return " ".join(args) if args else f"[{comm}]"


def strip_suffix(path: str, suffix: str) -> str | None:
    """'/a/b/init.scope' minus '/init.scope' -> '/a/b'; None when PATH does not end with SUFFIX."""
    path, suffix = path.rstrip("/"), "/" + suffix.strip("/")
    if suffix == "/":
        return path
    if path == suffix:
        return ""
    return path[: -len(suffix)] if path.endswith(suffix) else None


def machine_cgroup_root(target: Target, init_cgroup: str = "/init.scope", proc: PathLike = "/proc") -> str | None:
    """The machine's cgroup namespace root on the host's cgroup2 hierarchy.

    Recorded by nsdash's supervisor when known; otherwise derived from where the
    machine's init sits (host view) minus where it thinks it sits (INIT_CGROUP).
    """
    if target.cgroup:
        return target.cgroup.rstrip("/")
    try:
        leader = cgroupfs.own_cgroup(target.leader, proc).get("")
    except OSError:
        return None
    if leader is None:
        return None
    return strip_suffix(leader, init_cgroup)


def unit_processes(target: Target, control_group: str, layout: cgroupfs.Layout | None = None,
                   init_cgroup: str = "/init.scope", proc: PathLike = "/proc") -> list[UnitProcess] | None:
    """Processes in CONTROL_GROUP and below; None when the host view is unavailable."""
    layout = layout or cgroupfs.detect()
    base = machine_cgroup_root(target, init_cgroup, proc)
    if base is None or layout.unified_dir is None:
        return None
    top = bareos.join(layout.unified_dir, (base + control_group).lstrip("/"))
    if not bareos.isdir(top):
        return []
    found: list[UnitProcess] = []
    for directory in cgroupfs.subtree(top):  # by name, parents first; no recursion (a guest nests at will)
        rel = control_group + directory[len(top):]
        try:
            with open(bareos.join(directory, "cgroup.procs")) as f:
                pids = [int(p) for p in f.read().split()]
        except (OSError, ValueError):
            continue  # the cgroup went away while we walked
        for host_pid in pids:
            found.append(_process(host_pid, rel, proc))
    return found


def _process(host_pid: int, cgroup: str, proc: PathLike) -> UnitProcess:
    pdir = bareos.join(proc, str(host_pid))
    try:
        # Name: is the process's own choice of bytes (any but NUL), not always UTF-8
        with open(bareos.join(pdir, "status"), errors="replace") as f:
            status = f.read()
    except OSError:
        status = ""
    try:
        with open(bareos.join(pdir, "cmdline"), "rb") as b:
            raw = b.read()
    except OSError:
        raw = b""
    comm = next((line.split(None, 1)[1] for line in status.splitlines()
                 if line.startswith("Name:") and len(line.split(None, 1)) > 1), "?")
    inner = parse_nspid(status)
    return UnitProcess(inner if inner is not None else host_pid, host_pid, cgroup, parse_cmdline(raw, comm), comm)


def unit_of_cgroup(cgroup: str) -> str | None:
    """The unit a machine-relative cgroup belongs to, without asking the bus (systemd's cg_path_get_unit).

    '/system.slice/nginx.service/worker' -> 'nginx.service'; '/user.slice' -> 'user.slice';
    '/init.scope' -> 'init.scope'.  Slices are skipped while a unit lies below them.
    """
    parts = [p for p in cgroup.split("/") if p]
    last_slice = None
    for part in parts:
        if part.endswith(".slice"):
            last_slice = part
            continue
        if "." in part and part.rsplit(".", 1)[1] in ("service", "scope", "socket", "mount", "swap"):
            return part
        break
    return last_slice


def machine_relative(host_cgroup: str, machine_cgroup: str) -> str | None:
    """A host cgroup path as the machine sees it ('/machine.slice/m/system.slice/x' -> '/system.slice/x')."""
    base = machine_cgroup.rstrip("/")
    if host_cgroup == base:
        return "/"
    if host_cgroup.startswith(base + "/"):
        return host_cgroup[len(base):]
    return None


def unit_of_process(target: Target, host_pid: int, proc: PathLike = "/proc") -> str | None:
    """The unit a host PID of the machine belongs to, from its cgroup alone (no bus); None if not the machine's."""
    try:
        cgroup = cgroupfs.own_cgroup(host_pid, proc).get("")
    except OSError:
        return None
    base = machine_cgroup_root(target, proc=proc)
    if cgroup is None or base is None:
        return None
    relative = machine_relative(cgroup, base) if base else cgroup
    return unit_of_cgroup(relative) if relative else None
