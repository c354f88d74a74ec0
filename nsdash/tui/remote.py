"""The dashboard over remote hosts (`nsdash -H A -H B`): readers and actions for the app.

As `machinectl -H` does, the dashboard then shows the remote hosts only, not
this one.  Each host is a HostWatch (nsdash.remote.hosts): its own thread and
ssh session, asked for `list -o json` every refresh.  RemoteReaders.snapshot()
only gathers their latest answers, so it never waits on the network and a
dead host cannot freeze the others.  A machine's row key is HOST/MACHINE (a
machine name has no "/"), its host in MachineInfo.host; a host that does not
answer keeps its last machines, shown "unreachable", and is named in the
status line until it answers again.

What the far side sends is another host's text: names, states and OS names
are escaped here or by the table (Text(escape(...))); its PIDs and cgroup
paths are never taken (they mean nothing on this host).

The cgroup tree and the cgtop rows come from each host's watch line
(nsdash.remote.watch, bounded there): one top node per host, "/HOST", with
that host's cgroups under it ("/HOST/machine.slice/..."), so the tree and
the table key them as they key local cgroups, and the CPU table's Host
column is the path's first part.  A host that does not answer is that one
node (and one row) with the note "unreachable", also before it ever
answered; its last cgroups are not shown (they are not known now).  Paths
and names from the far side are escaped where they are shown, as local
guests' cgroup names are.

Journals: nsdash.tui.remote_journal; the machine view and units screen:
nsdash.tui.remote_views; consoles: remote_console; the Images panel and the
spawn form: remote_images.  Not over -H yet: trace/profile/gdb (no far verb
streams them) and the image actions other than boot; they say so in one line.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nsdash.errors import NsdashError
from nsdash.launcher.names import is_valid_hostname
from nsdash.monitor.counters import Counters
from nsdash.monitor.display import Row
from nsdash.monitor.host import _epoch
from nsdash.monitor.tree import CgroupNode, from_paths
from nsdash.remote.hosts import HostWatch, run_verb
from nsdash.remote.target import Target
from nsdash.remote.watch import Watch
from nsdash.system.text import SHOWN_FIELD_MAX, escape, shown
from nsdash.tui.actions import LauncherActions
from nsdash.tui.messages import MachineInfo, Snapshot, host_path
from nsdash.tui.poller import JOURNAL_TAIL

if TYPE_CHECKING:
    from nsdash.launcher.spec import ContainerSpec
    from nsdash.machines.create import Job, Plan, Step
    from nsdash.tui.console.connection import Session
    from nsdash.tui.messages import ImageRow
    from nsdash.tui.remote_images import FarImages
    from nsdash.tui.remote_journal import RemoteJournal

UNREACHABLE = "unreachable"
STATE_WIDTH = 24  # characters of a far state kept (ours are short words; anything longer is not ours)


def key_of(host: str, machine: str) -> str:
    return f"{host}/{machine}"


def split_key(key: str) -> tuple[str, str]:
    """HOST/MACHINE -> (HOST, MACHINE).  A host as -H names it has no "/", so the first one splits."""
    host, slash, machine = key.partition("/")
    if not slash:
        raise NsdashError(f"'{key}' is not a remote machine", "select a machine in the list")
    return host, machine


def _text(value: object, default: str = "-") -> str:
    """A far machine's field as shown: escaped, at most SHOWN_FIELD_MAX characters of it (the far
    side's list says what it likes: megabytes for an OS name filled the machine view's header)."""
    if isinstance(value, list):
        value = value[0] if value else None
    return escape(shown(str(value), SHOWN_FIELD_MAX) or "") if value not in (None, "") else default


def machine_info(host: str, m: dict[str, Any], reachable: bool = True) -> MachineInfo | None:
    """One far machine (an entry of `list -o json`) as a row; None if it has no usable name."""
    name = m.get("machine")
    if not isinstance(name, str) or not is_valid_hostname(name):
        # Not a machine name by the one rule (the far nsdash and machined apply it too): a far
        # host that sends one is not to be believed, and the name is the machine's key in every
        # screen, title and action (a "[@click=app.quit]" in one was markup in a title).
        return None
    os_id, version = m.get("os"), m.get("version")
    since = m.get("since")
    started = _epoch(since) if isinstance(since, str) else None
    boot = m.get("boot")
    state = "orphan" if m.get("orphaned") is True else _text(m.get("state"), "starting")[:STATE_WIDTH]
    status = m.get("status_text")
    return MachineInfo(
        name=key_of(host, name), host=host,
        state=state if reachable else UNREACHABLE,
        os=_text(os_id) + (f" {_text(version)}" if os_id and version else ""),
        address=_text(m.get("addresses")),
        started=started, boot=boot if isinstance(boot, int) else 1,
        status=status if isinstance(status, str) else None,
        source="remote")


class HostCgroups:
    """One host's watch line as the dashboard's tree nodes, rows and machine map (cached per line)."""

    def __init__(self, host: str, view: Watch) -> None:
        self.view = view
        prefix = host_path(host)
        paths = [host_path(host, p) for p in view.cgroups]
        root = from_paths(["/", *paths])
        self.node = next((n for n in root.children if n.path == prefix), CgroupNode(prefix))
        self.rows = tuple(Row(host_path(host, path), tasks, cpu, usec, memory, read, write,
                              Counters(tasks=tasks, cpu_ns=None if usec is None else usec * 1000, memory=memory))
                          for path, tasks, cpu, usec, memory, read, write in view.rows)
        self.machine_of = {host_path(host, path): key_of(host, name) for path, name in view.machine_of.items()}


def unreachable_row(host: str) -> Row:
    return Row(host_path(host), None, None, None, None, None, None, Counters())


class RemoteHosts:
    """The watched hosts, shared by the readers (what they list) and the actions (poking them)."""

    def __init__(self, targets: list[Target], interval: float = 1.0) -> None:
        self.watches = {str(t): HostWatch(t, interval) for t in targets}
        self.started = False

    def start(self) -> None:
        if not self.started:
            self.started = True
            for watch in self.watches.values():
                watch.start()

    def stop(self) -> None:
        for watch in self.watches.values():
            watch.stop_soon()  # all at once, then each waited for
        for watch in self.watches.values():
            watch.stop()

    def target(self, host: str) -> Target:
        watch = self.watches.get(host)
        if watch is None:
            raise NsdashError(f"'{host}' is not one of the dashboard's hosts", "select a machine in the list")
        return watch.target


class RemoteReaders:
    """Readers (nsdash.tui.poller.Readers) over remote hosts: the machine lists only."""

    def __init__(self, hosts: RemoteHosts) -> None:
        self.hosts = hosts
        self._cgroups: dict[str, HostCgroups] = {}
        self._tree: tuple[tuple, CgroupNode] | None = None  # (what it was made of, the tree)
        hosts.start()

    def snapshot(self) -> Snapshot:
        machines: list[MachineInfo] = []
        errors: list[str] = []
        down: list[str] = []
        parts: list[HostCgroups | str] = []  # per host, its cgroups, or its name when it has none to show
        for host, watch in self.hosts.watches.items():
            found, error, fresh = watch.state()
            if error is not None:
                down.append(host)
                errors.append(f"{host} is unreachable: {error}")
            elif not fresh:
                continue  # still connecting
            for m in found:
                info = machine_info(host, m, reachable=error is None)
                if info is not None:
                    machines.append(info)
            parts.append(self._host_cgroups(host, watch.view()) if error is None else host)
        rows, machine_of, notes = self._rows(parts, set(down))
        return Snapshot(time.time(), tuple(machines), self._tree_of(parts), rows, machine_of=machine_of,
                        errors=tuple(errors), unreachable=tuple(down), notes=notes)

    def _host_cgroups(self, host: str, view: Watch | None) -> HostCgroups | str:
        if view is None:  # the far nsdash has no _watch: machines only
            self._cgroups.pop(host, None)
            return host
        part = self._cgroups.get(host)
        if part is None or part.view is not view:
            part = self._cgroups[host] = HostCgroups(host, view)
        return part

    def _tree_of(self, parts: list[HostCgroups | str]) -> CgroupNode:
        """One node per host under "/"; the same object while no host sent a new line (the
        tree pane then has nothing to do)."""
        made_of = tuple(part if isinstance(part, str) else part.node for part in parts)
        if self._tree is None or len(self._tree[0]) != len(made_of) or any(
                a != b if isinstance(a, str) else a is not b for a, b in zip(self._tree[0], made_of, strict=True)):
            nodes = tuple(CgroupNode(host_path(p)) if isinstance(p, str) else p for p in made_of)
            self._tree = (made_of, CgroupNode("/", nodes))
        return self._tree[1]

    @staticmethod
    def _rows(parts: list[HostCgroups | str], down: set[str]) -> tuple[tuple[Row, ...], Mapping[str, str],
                                                                       Mapping[str, str]]:
        """Every host's cgtop rows, its cgroups' machines, and a row and a note per host down."""
        rows: list[Row] = []
        machine_of: dict[str, str] = {}
        notes: dict[str, str] = {}
        for part in parts:
            if isinstance(part, str):
                if part in down:
                    rows.append(unreachable_row(part))
                    notes[host_path(part)] = UNREACHABLE
                continue
            rows.extend(part.rows)
            machine_of.update(part.machine_of)
        return tuple(rows), machine_of, notes

    def set_interval(self, seconds: float) -> None:
        """The refresh delay changed (+ and -): each host's watch is told at once (a line comes then)."""
        for watch in self.hosts.watches.values():
            watch.interval = seconds

    def open_journal(self, machines: tuple[str, ...]) -> RemoteJournal:
        """The machines' journals, one stream per host, merged by time (nsdash.tui.remote_journal)."""
        from nsdash.tui.remote_journal import RemoteJournal

        watches = self.hosts.watches
        return RemoteJournal({host: w.target for host, w in watches.items()}, machines, JOURNAL_TAIL,
                             alive=lambda host: watches[host].state()[1] is None)

    def close(self) -> None:
        self.hosts.stop()


class RemoteActions(LauncherActions):
    """Poweroff, reboot, terminate, spawn and boot sent to the machine's host over ssh (run_verb,
    the same Session the command line uses), its console over a Stream; the rest says it does
    not work over -H yet."""

    def __init__(self, hosts: RemoteHosts) -> None:
        super().__init__()
        self.hosts = hosts
        self._last_images: dict[str, list[ImageRow]] = {}  # each host's last answer (remote_images)

    def _verb(self, verb: str, key: str) -> None:
        host, machine = split_key(key)
        run_verb(self.hosts.target(host), [verb, machine])
        self.hosts.watches[host].refresh_now()

    def poweroff(self, name: str) -> None:
        self._verb("poweroff", name)

    def reboot(self, name: str) -> None:
        self._verb("reboot", name)

    def terminate(self, name: str) -> None:
        self._verb("terminate", name)

    def attach(self, name: str, rows: int, cols: int) -> Session:
        """The far machine's console for the pane: its host's `login NAME` on a far PTY (remote_console)."""
        from nsdash.tui.remote_console import RemoteConsole

        host, machine = split_key(name)
        return RemoteConsole(self.hosts.target(host), machine, rows, cols)

    def spawn_host(self, key: str | None) -> str:
        """Where the dashboard's spawn goes: the host of KEY (a machine's or an image's
        HOST/NAME), else the first host."""
        host = key.partition("/")[0] if key and "/" in key else ""
        return host if host in self.hosts.watches else next(iter(self.hosts.watches))

    def images(self, host: str | None = None) -> dict[str, Path]:
        """HOST's images for the spawn form (name -> its path there)."""
        from nsdash.tui.remote_images import images_of

        return images_of(self.hosts.target(host or self.spawn_host(None)))

    def image_reader(self) -> FarImages:
        """The Images panel's reader: every host's images over a session kept per host while the
        panel is open (remote_images; PartialImages when a host does not answer)."""
        from nsdash.tui.remote_images import FarImages

        return FarImages({host: watch.target for host, watch in self.hosts.watches.items()}, self._last_images)

    def image_rows(self) -> tuple[ImageRow, ...]:
        """Every host's images, once (the panel keeps a reader instead: image_reader)."""
        reader = self.image_reader()
        try:
            return reader.rows()
        finally:
            reader.close()

    def spawn_far(self, host: str, argv: list[str]) -> None:
        """The spawn form's `spawn --detach ...` (spawnform.to_far_argv) on HOST."""
        run_verb(self.hosts.target(host), argv)
        self.hosts.watches[host].refresh_now()

    def boot_image(self, name: str, ephemeral: bool = False) -> str:
        """Boot image HOST/IMAGE there as `nsdash -H HOST start IMAGE` does; the machine's key."""
        if ephemeral:
            raise _not_yet("booting an ephemeral copy")
        host, image = split_key(name)
        run_verb(self.hosts.target(host), ["start", image])
        self.hosts.watches[host].refresh_now()
        return key_of(host, image)

    def limits(self, name: str, cgroup: str) -> dict[str, str]:
        """The far machine's limits in force, as its host's `status -o json` says (CGROUP is not ours).
        (The machine view over -H asks through its own RemoteMachine; this is for other callers.)"""
        from nsdash.tui.remote_views import RemoteMachine

        host, machine = split_key(name)
        far = RemoteMachine(self.hosts.target(host), machine)
        try:
            return far.status().limits
        finally:
            far.close()

    def set_limits(self, name: str, cgroup: str, assignments: list[str]) -> None:
        """Change them live on the machine's host: `set-property MACHINE NAME=VALUE...` there."""
        host, machine = split_key(name)
        run_verb(self.hosts.target(host), ["set-property", machine, *assignments])

    # What does not work over -H yet: one line each, never this host's machines or images instead.
    def spawn(self, spec: ContainerSpec) -> None:
        raise _not_yet("spawning from a spec made here")  # (the form sends spawn_far over -H)


    def clone_image(self, name: str, new: str) -> None:
        raise _not_yet("cloning images")

    def rename_image(self, name: str, new: str) -> None:
        raise _not_yet("renaming images")

    def remove_image(self, name: str) -> None:
        raise _not_yet("removing images")

    def create_plan(self, name: str, distribution: str, release: str, packages: str) -> Plan:
        raise _not_yet("creating images")

    def create_run(self, plan: Plan, step: Step, job: Job) -> Path:
        raise _not_yet("creating images")


def _not_yet(what: str) -> NsdashError:
    return NsdashError(f"{what} over -H is not in the dashboard yet",
                       "run the verb with 'nsdash -H HOST ...'")
