"""Which machine a cgroup (or a process) belongs to.

Machines live in `/machine.slice/machine-NAME.scope` (nsdash.launcher.names:
NAME escaped as systemd escapes unit names, '-' as '\\x2d'), nsdash's own in
every hierarchy and systemd-nspawn's alike.  nsdash's state directory may also name a
machine's cgroup explicitly (state.json, field "cgroup"); that wins.
"""

from __future__ import annotations

import posix

from nsdash.errors import UsageError
from nsdash.launcher import names
from nsdash.machines import state as st
from nsdash.machines.state import MachineState
from nsdash.system import bareos, paths

TYPE_CHECKING = False  # mypy reads this as True; collections and pathlib stay off cgls's path
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from pathlib import Path

machine_from_scope = names.machine_from_scope  # the one copy of the rule lives in launcher/names


def _state_records(state_root: Path | None) -> dict[str, MachineState]:
    """Every machine's state as machines/state reads it (unreadable entries skipped: as a
    user who may not read /run/nsdash, cgls and cgtop simply know no machine names)."""
    # (strings: paths.state_root()'s pathlib would load re, enum, urllib and ipaddress for cgtop -M)
    root = bareos.join(paths.state_path() if state_root is None else state_root, "machines")
    found: dict[str, MachineState] = {}
    try:
        names = sorted(posix.listdir(root))
    except OSError:
        return found
    for name in names:
        try:
            record = st.read_state(f"{root}/{name}")
        except OSError:
            continue
        if record is not None:
            found[name] = record
    return found


def registered_cgroups(state_root: Path | None = None) -> dict[str, str]:
    """Machine name -> cgroup path, from nsdash's state directory (missing or broken files skipped)."""
    found: dict[str, str] = {}
    for name, record in _state_records(state_root).items():
        cgroup = record.cgroup
        if isinstance(cgroup, str) and cgroup.startswith("/"):
            found[name] = cgroup.rstrip("/") or "/"
    return found


def registered_leaders(state_root: Path | None = None) -> dict[str, int]:
    """Machine name -> its recorded leader PID (may be stale: check before trusting it)."""
    return {name: record.leader for name, record in _state_records(state_root).items()
            if isinstance(record.leader, int) and record.leader > 0}


class MachineMap:
    """Maps cgroup paths to machine names; build one per refresh (state files change)."""

    def __init__(self, registered: Mapping[str, str] | None = None) -> None:
        reg = registered_cgroups() if registered is None else registered
        # Longest cgroup first, so a nested machine wins over its parent.
        self._by_cgroup = sorted(((c, n) for n, c in reg.items()), key=lambda cn: -len(cn[0]))
        self.registered = dict(reg)

    def machine_of(self, cgroup: str) -> str | None:
        for prefix, name in self._by_cgroup:
            if cgroup == prefix or cgroup.startswith(prefix + "/"):
                return name
        return machine_from_scope(cgroup)

    def cgroup_of(self, machine: str, existing: Iterable[str] = ()) -> str | None:
        """The machine's cgroup: registered, else nsdash's or nspawn's scope if it exists."""
        if machine in self.registered:
            return self.registered[machine]
        candidates = (f"/machine.slice/machine-{machine}.scope",
                      names.scope_path(machine))
        present = set(existing)
        for c in candidates:
            if c in present:
                return c
        return None

    def map_all(self, cgroups: Iterable[str]) -> dict[str, str]:
        """cgroup -> machine, for the cgroups that belong to one."""
        out = {}
        for c in cgroups:
            name = self.machine_of(c)
            if name is not None:
                out[c] = name
        return out


def process_cgroup(pid: int, proc: str = "/proc") -> str | None:
    """A process's cgroup in the hierarchy that holds every process (cgroup2, else name=systemd)."""
    try:
        # A guest names its cgroups with any bytes but '/': not always UTF-8.
        with open(f"{proc}/{pid}/cgroup", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    fallback = None
    for line in lines:
        _, ctrls, path = line.split(":", 2)
        if ctrls == "":
            return path
        if ctrls == "name=systemd":
            fallback = path
    return fallback


def machine_of_process(pid: int, mapping: MachineMap | None = None, proc: str = "/proc") -> str | None:
    cgroup = process_cgroup(pid, proc)
    if cgroup is None:
        return None
    return (mapping or MachineMap()).machine_of(cgroup)


def machine_cgroup(machine: str, mount_dirs: Iterable[str], mapping: MachineMap | None = None) -> str:
    """The cgroup of MACHINE in one of the hierarchies at MOUNT_DIRS (cgls -M, cgtop -M); a
    UsageError for a name that is not a machine name ('' is not the host) or none running."""
    names.check_machine_name(machine)
    mapping = mapping or MachineMap()
    dirs = list(mount_dirs)
    candidates = []
    if machine in mapping.registered:
        candidates.append(mapping.registered[machine])
    candidates += [f"/machine.slice/machine-{machine}.scope",
                   names.scope_path(machine)]
    for c in candidates:
        if any(bareos.isdir(d + c) for d in dirs):
            return c
    raise UsageError(f"no machine '{names.printable(machine)}' is running", "see 'nsdash list' for the running machines")
