"""The host's snapshots: the machine list, the counters with their rates, the cgroup tree.

One refresh of the dashboard (nsdash.tui.poller, whose HostReaders add the
machines' journals) and one watch line of its far side over -H (nsdash.cli.
watch) are one HostSnapshots.snapshot(): the sampler, the rates, the machine
map and the machine list read whole only when it changed.  Headless: the far
side imports this without the dashboard's toolkit.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import Any

from nsdash.errors import NsdashError
from nsdash.monitor.snapshot import LinkRate, MachineInfo, Snapshot
from nsdash.system.text import SHOWN_FIELD_MAX, shown

REREAD = 5  # tree walks between two reads of one process's command line
# What the dashboard keeps of a command line: a guest's process may carry megabytes of arguments
# (ARG_MAX), read again every REREAD walks and held per process while it lives (issue 15).
COMMAND_COLUMNS = 4096  # characters kept (a tree label; as a journal message, SHOWN_MESSAGE_MAX)
COMMAND_BYTES = 4 * COMMAND_COLUMNS + 4  # bytes read for them (UTF-8: at most 4 a character; one more, and it is cut with …)
TREE_EVERY = 2  # refreshes between two walks of the cgroup tree (1 while the user is in the tree)
MACHINES_REREAD = 5.0  # seconds: the machine list is read whole at least this often (see _machines)


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class HostSnapshots:
    """The real readers of a refresh: nsdash.monitor and nsdash.machines (the dashboard's
    HostReaders, nsdash.tui.poller, add the journals; the far side of -H, nsdash.cli.watch,
    sends these as watch lines)."""

    def __init__(self, with_machined: bool = True) -> None:
        from nsdash.monitor.sampler import Sampler

        _raise_file_limit()  # the sampler keeps a few files open per cgroup: 5,000 cgroups need more
        from nsdash.monitor import tree

        self.sampler = Sampler()
        self.mount = tree.primary_mount(self.sampler.layout)
        # cgroup2's cgroup.procs kept open and re-read (tree.KeptProcs); a v1 file caches per open.
        # Its descriptors come out of the sampler's budget (5,000 cgroups need both).
        self._procs = (tree.KeptProcs(self.sampler.reserve(4096))
                       if self.mount == self.sampler.layout.unified_dir else None)
        self.with_machined = with_machined
        self._previous: Any = None
        self._commands: dict[int, str | None] = {}  # None: a kernel thread
        self._round = 0
        # The cgroup tree with its processes is two thirds of a refresh's cost with 5,000
        # cgroups; the tree pane follows it every other refresh unless the user is in it.
        self.tree_every = TREE_EVERY
        self._tree: tuple[Any, dict[int, str]] | None = None
        self._tree_round = 0
        self._mapping: Any = None
        self._owner: dict[str, str | None] = {}
        self._links: dict[tuple[str, int], tuple[float, Any]] = {}  # (machine, leader) -> (when, counters)
        self._host_net: set[tuple[str, int]] = set()  # (machine, leader) on the host's network
        # The machine list as last read whole, what its state files looked like then, when.
        self._listed: tuple[tuple[MachineInfo, ...], tuple[str, ...]] | None = None
        self._listed_look: tuple = ()
        self._listed_at = -1e18
        self._state_watch: Any = None  # nsdash.monitor.statewatch.StateWatch, made at the first look
        self.machine_reads = 0  # whole reads of the machine list (tests read it)
        self._os_releases: Any = None  # nsdash.machines.identity.OsReleaseCache, at the first read
        self._entries: dict[str, Any] = {}  # name -> registry.read_entry(name), while the watch is quiet
        self.state_looks = 0  # looks at the machines' entries (tests read it)

    def close(self) -> None:
        self.sampler.close()
        if self._state_watch is not None:
            self._state_watch.close()
        if self._procs is not None:
            self._procs.close()

    def snapshot(self) -> Snapshot:
        from nsdash.monitor import display
        from nsdash.monitor.rates import rates_between

        errors: list[str] = []
        machines = self._machines(errors)
        sample = self.sampler.sample()
        rates = rates_between(self._previous, sample)
        self._previous = sample
        rows = display.rows_from(sample.counters, rates)
        self._tree_round += 1
        if self._tree is None or self._tree_round >= self.tree_every:
            self._tree_round = 0
            self._tree = self._walk_tree()
        root, commands = self._tree  # the same objects again: the pane sees nothing new
        mapping = self._machine_map(machines)
        machine_of = self._map_all(mapping, sample.counters)
        machines = tuple(m if m.cgroup else _with_cgroup(m, mapping, sample.counters) for m in machines)
        machines = self._with_links(machines)
        return Snapshot(sample.timestamp, machines, root, tuple(rows), commands, machine_of, tuple(errors))

    def _walk_tree(self) -> tuple[Any, dict[int, str]]:
        """The cgroup tree with its processes, and their command lines (a far host's watch,
        nsdash.cli.watch, walks a bounded tree without processes instead)."""
        from nsdash.monitor import tree

        root = tree.walk(self.mount, "/", with_pids=True, pids_of=self._procs)
        if self._procs is not None:
            self._procs.sweep()
        return root, self._command_lines(root)

    def _with_links(self, machines: tuple[MachineInfo, ...]) -> tuple[MachineInfo, ...]:
        """Each running machine's links with their rates since the last refresh (one read of
        /proc/LEADER/net/dev per machine); the last counters are kept per boot (leader).
        A machine on the host's network has no links of its own: that is looked up once per
        boot, not every refresh (two stat calls a machine, most of this at rest)."""
        from nsdash.monitor.net import link_counters
        from nsdash.monitor.rates import net_rates
        from nsdash.system import namespaces

        seen: dict[tuple[str, int], tuple[float, Any]] = {}
        host_net: set[tuple[str, int]] = set()
        out = []
        for m in machines:
            if not m.leader:
                out.append(m)
                continue
            key = (m.name, m.leader)
            if key in self._host_net or namespaces.shares_host_namespace(m.leader, "net"):
                host_net.add(key)
                out.append(m)
                continue
            now, counters = time.monotonic(), link_counters(m.leader)
            seen[key] = (now, counters)
            before = self._links.get(key)
            rates = net_rates(before[1] if before else None, counters, now - before[0] if before else 0.0)
            links = tuple(LinkRate(name, *rates[name]) for name in sorted(counters))
            out.append(m._replace(links=links) if links else m)
        self._links, self._host_net = seen, host_net
        return tuple(out)

    def _machine_map(self, machines: tuple[MachineInfo, ...]):
        """A MachineMap of nsdash's machines' recorded cgroups, as MachineMap() would read them from
        the same state files the machine list just read; rebuilt only when they change."""
        from nsdash.monitor.machines import MachineMap

        registered = {m.name: m.cgroup.rstrip("/") or "/" for m in machines
                      if m.source == "nsdash" and m.cgroup and m.cgroup.startswith("/")}
        if self._mapping is None or registered != self._mapping.registered:
            self._mapping = MachineMap(registered)
            self._owner = {}
        return self._mapping

    def _map_all(self, mapping, cgroups) -> dict[str, str]:
        """cgroup -> machine like mapping.map_all, remembering each cgroup's answer while the map holds."""
        owner = self._owner
        if len(owner) > 2 * len(cgroups) + 1000:  # cgroups come and go: forget the gone ones now and then
            owner.clear()
        out = {}
        for c in cgroups:
            name = owner.get(c, "")
            if name == "":
                name = owner[c] = mapping.machine_of(c)
            if name is not None:
                out[c] = name
        return out

    def _machines(self, errors: list[str]) -> tuple[MachineInfo, ...]:
        """The machine list, read whole (every state file, os-release, addresses, machined) only
        when a state file or a supervisor changed, or MACHINES_REREAD seconds went by: at rest
        that read was most of a refresh's cost with 20 machines.  Whether one changed is looked
        at only when the kernel says something happened in the entries (StateWatch)."""
        now = time.monotonic()
        fresh = self._listed is not None and now - self._listed_at < MACHINES_REREAD
        # (A reread for time alone needs no look either: the entries are as last looked at.)
        quiet = self._listed is not None and self._state_watch is not None and self._state_watch.quiet()
        if not quiet:
            self._entries.clear()  # something happened: each entry is read again
        look = self._listed_look if quiet else self._look()
        if fresh and look == self._listed_look:
            assert self._listed is not None
            machines, problems = self._listed
            errors.extend(problems)
            return machines
        before = len(errors)
        machines = self._read_machines(errors)
        self._listed, self._listed_look, self._listed_at = (machines, tuple(errors[before:])), look, now
        self.machine_reads += 1
        return machines

    def _look(self) -> tuple:
        """_state_look, the entries watched first (a change after this is the next quiet()'s)."""
        from nsdash.machines import state as st
        from nsdash.monitor.statewatch import StateWatch

        if self._state_watch is None:
            self._state_watch = StateWatch(str(st.machines_root()))
        names = self._state_watch.watch(st.entry_names)
        self.state_looks += 1
        return _state_look(names)

    def _list_registry(self, errors: list[str]) -> list[Any]:
        """The registry's machines (nsdash.machines.registry.Machine), machined's if it answers."""
        from nsdash.machines import registry
        from nsdash.machines.identity import OsReleaseCache

        if self._os_releases is None:
            self._os_releases = OsReleaseCache()
        entries = self._entries

        def entry_of(name: str) -> Any:
            """The entry as read since the watch last said something happened (then cleared)."""
            if name not in entries:
                entries[name] = registry.read_entry(name)
            return entries[name]

        try:
            found = registry.list_machines(self.with_machined, self._os_releases, entry_of)
        except NsdashError as e:
            errors.append(e.oneline())
            found = registry.list_machines(False, self._os_releases, entry_of)
        self._os_releases.sweep()
        return found

    def _read_machines(self, errors: list[str]) -> tuple[MachineInfo, ...]:
        found = self._list_registry(errors)
        out = []
        for m in found:
            s = m.state
            # The guest's os-release (64 KiB): ID and VERSION_ID are short words, a guest's need not
            # be; what the list and the machine view show is kept short (issue 15).
            pretty = shown(m.os_release.get("ID"), SHOWN_FIELD_MAX)
            version = shown(m.os_release.get("VERSION_ID"), SHOWN_FIELD_MAX)
            if m.os_release_error:
                errors.append(f"machine '{m.name}': {m.os_release_error}")  # its own problem, named
            out.append(MachineInfo(
                name=m.name,
                state="orphan" if m.orphan else (s.state if s else "starting"),
                os=f"{pretty} {version}" if pretty and version else (pretty or "-"),
                address=m.addresses[0] if m.addresses else "-",
                started=_epoch(s.since) if s else None,
                cgroup=s.cgroup if s and s.cgroup else None,
                leader=m.leader, boot=s.boot if s else 1, boot_mode=bool(s and s.boot_mode),
                root=m.root, source=m.source, status=s.status_text if s else None))
        return tuple(out)

    def _command_lines(self, root) -> dict[int, str]:
        """Command lines of the tree's processes, kernel threads left out as systemd-cgls does.

        Reading every process's cmdline at each walk of the tree is most of the
        walk's cost, so each is re-read every REREAD walks (spread by pid: a
        fifth of them per walk), a new pid at once; kernel threads are remembered.
        """
        from nsdash.monitor.procs import cmdline, is_kernel_thread

        self._round += 1
        old = self._commands
        live: dict[int, str | None] = {}
        for node in root.iter():
            for pid in node.pids or ():
                known = old.get(pid, "")
                if known == "" or (known is not None and (pid + self._round) % REREAD == 0):
                    text = cmdline(pid, COMMAND_COLUMNS, max_bytes=COMMAND_BYTES)
                    if text is None:
                        continue
                    known = None if text.startswith("[") and is_kernel_thread(pid) else text
                live[pid] = known
        self._commands = live
        return {pid: text for pid, text in live.items() if text is not None}


def _state_look(names: list[str]) -> tuple:
    """What nsdash's machine entries look like now, cheaply: each entry's name, its state
    file's identity and change time (state files are replaced whole), and whether its
    supervisor still holds the lock."""
    from nsdash.machines import state as st

    root = str(st.machines_root())
    look = []
    for name in names:
        directory = os.path.join(root, name)  # (strings: pathlib was most of this, every refresh)
        try:
            info = os.stat(os.path.join(directory, st.STATE_FILE))
            stamp: tuple = (info.st_ino, info.st_mtime_ns, info.st_size)
        except OSError:
            stamp = ()
        try:
            alive: bool | None = st.supervisor_alive(directory)
        except OSError:
            alive = None
        look.append((name, stamp, alive))
    return tuple(look)


def _raise_file_limit() -> None:
    """As many open files as the system allows a process (root may raise the hard limit too)."""
    import resource

    try:
        with open("/proc/sys/fs/nr_open") as f:
            ceiling = int(f.read())
    except (OSError, ValueError):
        ceiling = 1 << 20
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for want in ((ceiling, ceiling), (hard, hard)):
        if soft >= want[0] and soft != resource.RLIM_INFINITY:
            return
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, want)
            return
        except (ValueError, OSError):
            continue


def _with_cgroup(m: MachineInfo, mapping, existing) -> MachineInfo:
    return m._replace(cgroup=mapping.cgroup_of(m.name, existing))
