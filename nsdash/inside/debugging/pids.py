"""A machine's processes seen from the host: its PIDs, host PIDs, units.

A machine numbers its processes in its own PID namespace; the host's tools
(ptrace, perf) take host PIDs.  /proc/HOSTPID/status' NSpid line lists a
process's PID in every namespace from the host's down; the machine's number
is the one at the level of the machine's init (NSpid of the leader has one
entry more than the host's level), which is right also for a process of a
container nested inside the machine.

Which processes belong to the machine is read from its cgroup (the host's
view, never the guest's files): the whole machine, or the cgroup of one of
its units.  A host PID can be reused once its process is gone, so every
translation is checked against the machine's cgroup, not remembered.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nsdash.errors import NsdashError, UsageError
from nsdash.inside.procs import machine_cgroup_root, machine_relative
from nsdash.inside.target import Target
from nsdash.system import cgroupfs
from nsdash.system.text import escape

# Unit types systemd makes cgroups for; a bare name means a service, as with systemctl.
_CGROUP_UNIT_TYPES = ("service", "scope", "slice", "socket", "mount", "swap")


class ProcessGone(NsdashError):
    """The process named is not (or no longer) one of the machine's."""


@dataclass(frozen=True)
class MachineProcess:
    """One process of a machine."""

    pid: int  # as the machine sees it
    host_pid: int
    comm: str


def nspid(host_pid: int, proc: Path = Path("/proc")) -> list[int] | None:
    """The NSpid line of /proc/HOSTPID/status (host's PID first), or None if the process is gone.

    Read as bytes: the Name: line above it is the process's comm, any bytes its owner chose."""
    try:
        with open(proc / str(host_pid) / "status", "rb") as f:
            for line in f:
                if line.startswith(b"NSpid:"):
                    return [int(x) for x in line.split()[1:]]
    except (OSError, ValueError):
        return None
    return None


def comm(host_pid: int, proc: Path = Path("/proc")) -> str:
    """The kernel's short name of the process ('?' when gone); the guest chose it: escape before showing."""
    try:
        return (proc / str(host_pid) / "comm").read_text(errors="replace").rstrip("\n")
    except OSError:
        return "?"


def pid_at_level(ids: list[int] | None, level: int) -> int | None:
    """The PID at namespace LEVEL (0 = the host's) from an NSpid list."""
    if ids is None or len(ids) <= level:
        return None
    return ids[level]


class MachineProcesses:
    """The processes of one running machine, read from the host's cgroup view."""

    def __init__(self, target: Target, layout: cgroupfs.Layout | None = None) -> None:
        self.target = target
        self.proc = Path(target.proc)
        self.layout = layout or cgroupfs.detect()
        ids = nspid(target.leader, self.proc)
        if ids is None:
            raise ProcessGone(f"machine '{target.name}' stopped (its init {target.leader} is gone)",
                              "see 'nsdash list'")
        self.level = len(ids) - 1  # the machine's PID namespace, counted from the host's
        base = machine_cgroup_root(target, proc=self.proc)
        if base is None:
            raise NsdashError(f"cannot find the cgroup of machine '{target.name}'",
                              "is its init still running? see 'nsdash status'")
        self.cgroup = base  # the machine's cgroup, relative to each hierarchy's root

    # ---- where the processes are -------------------------------------------

    def hierarchy(self) -> Path:
        """The mount of a hierarchy that holds every process: cgroup2, else name=systemd, else pids."""
        if self.layout.unified is not None:
            return self.layout.unified
        for ctrl in ("name=systemd", "systemd", "pids", "cpu"):
            if ctrl in self.layout.v1:
                return self.layout.v1[ctrl]
        raise NsdashError("no cgroup hierarchy is mounted on this host", "mount cgroup2 on /sys/fs/cgroup")

    def directory(self, relative: str = "/") -> Path:
        """The host directory of the machine's cgroup RELATIVE ('/system.slice/x.service')."""
        return self.hierarchy() / (self.cgroup + relative.rstrip("/")).lstrip("/")

    def host_pids(self, relative: str = "/") -> list[int]:
        """Host PIDs of every process in the cgroup RELATIVE of the machine and below."""
        found: set[int] = set()
        for directory in cgroupfs.subtree(self.directory(relative)):  # no recursion: a guest nests at will
            try:
                with open(os.path.join(directory, "cgroup.procs")) as f:
                    found.update(int(x) for x in f.read().split())
            except (OSError, ValueError):
                continue  # removed while we walked
        return sorted(found)

    def belongs(self, host_pid: int) -> bool:
        """Whether HOST_PID is now a process (or thread) of the machine, by its cgroup."""
        try:
            path = cgroupfs.own_cgroup(host_pid, self.proc).get("")
        except (OSError, ValueError):
            return False
        if path is None or self.layout.unified is None:
            return host_pid in self.host_pids()
        return machine_relative(path, self.cgroup) is not None

    # ---- translations ------------------------------------------------------

    def machine_pid(self, host_pid: int) -> int | None:
        """The machine's number for HOST_PID (None when gone or in another PID namespace)."""
        return pid_at_level(nspid(host_pid, self.proc), self.level)

    def processes(self, relative: str = "/") -> list[MachineProcess]:
        """The processes in the cgroup RELATIVE and below, sorted by the machine's PID."""
        out = []
        for host_pid in self.host_pids(relative):
            pid = self.machine_pid(host_pid)
            if pid is not None:
                out.append(MachineProcess(pid, host_pid, comm(host_pid, self.proc)))
        return sorted(out, key=lambda p: p.pid)

    def by_pid(self, pid: int, host: bool = False) -> MachineProcess:
        """The process the machine calls PID (or, with HOST, the host's PID of one of its processes).

        A number that is no PID of the machine but is the host PID of one of its
        processes is taken as that (the PIDs the dashboard and 'nsdash ps' show).
        """
        if not host:
            for p in self.processes():
                if p.pid == pid:
                    return p
        if self.belongs(pid):
            inner = self.machine_pid(pid)
            if inner is not None:
                return MachineProcess(inner, pid, comm(pid, self.proc))
        what = "host PID" if host else "PID"
        raise ProcessGone(f"machine '{self.target.name}' has no process with {what} {pid} (it exited, or "
                          "never ran there)", f"see 'nsdash ps -M {self.target.name}'")

    # ---- units ----------------------------------------------------------------

    def unit_cgroup(self, unit: str) -> str:
        """The machine-relative cgroup of UNIT ('nginx' means nginx.service), found in the host's view.

        Read from the cgroup tree, not the machine's bus, so it also works for a
        machine whose D-Bus is down; a unit without a cgroup has no processes.
        """
        name = unit if unit.rsplit(".", 1)[-1] in _CGROUP_UNIT_TYPES else f"{unit}.service"
        if "/" in name or name in (".", ".."):
            raise UsageError(f"'{unit}' is not a unit name", "give a unit such as nginx.service, or a PID")
        top = self.directory()
        for directory in cgroupfs.subtree(top):  # by name, parents first, as the walk went
            if os.path.basename(directory) == name:
                return directory[len(str(top)):] or "/"
        raise ProcessGone(f"machine '{self.target.name}' has no running unit '{name}'",
                          f"see 'nsdash systemctl -M {self.target.name} list-units'")

    # ---- what to trace -----------------------------------------------------------

    def select(self, target: str | None, host: bool = False) -> tuple[list[int], str]:
        """The host PIDs for TARGET (a PID, a unit, or None for the whole machine) and what they are, in words."""
        if target is None:
            pids = self.host_pids()
            return pids, f"all {len(pids)} processes"
        if target.isdigit():
            p = self.by_pid(int(target), host=host)
            return [p.host_pid], f"PID {p.pid} ({escape(p.comm)}, host PID {p.host_pid})"
        cgroup = self.unit_cgroup(target)
        pids = self.host_pids(cgroup)
        if not pids:
            raise ProcessGone(f"unit '{target}' of machine '{self.target.name}' has no processes",
                              "start it first")
        return pids, f"{len(pids)} process(es) of {cgroup}"
