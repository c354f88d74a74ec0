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

Consoles (remote_console), the Images panel and the spawn form (remote_images)
work over -H too.  Not over -H yet: the cgroup tree and cgtop rows, journals,
units, limits, trace/profile/gdb (no far verb streams them) and the image
actions other than boot; they say so in one line.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nsdash.errors import NsdashError
from nsdash.remote.hosts import HostWatch, run_verb
from nsdash.remote.target import Target
from nsdash.system.text import escape
from nsdash.tui.actions import LauncherActions
from nsdash.tui.messages import MachineInfo, Snapshot
from nsdash.tui.poller import _epoch

if TYPE_CHECKING:
    from nsdash.launcher.spec import ContainerSpec
    from nsdash.machines.create import Job, Plan, Step
    from nsdash.tui.console.connection import Session
    from nsdash.tui.messages import ImageRow

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
    if isinstance(value, list):
        value = value[0] if value else None
    return escape(str(value)) if value not in (None, "") else default


def machine_info(host: str, m: dict[str, Any], reachable: bool = True) -> MachineInfo | None:
    """One far machine (an entry of `list -o json`) as a row; None if it has no usable name."""
    name = m.get("machine")
    if not isinstance(name, str) or not name or "/" in name:
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
        hosts.start()

    def snapshot(self) -> Snapshot:
        machines: list[MachineInfo] = []
        errors: list[str] = []
        down: list[str] = []
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
        return Snapshot(time.time(), tuple(machines), errors=tuple(errors), unreachable=tuple(down))

    def set_interval(self, seconds: float) -> None:
        """The refresh delay changed (+ and -): each host is asked at that pace from its next answer."""
        for watch in self.hosts.watches.values():
            watch.interval = seconds

    def open_journal(self, machines: tuple[str, ...]):
        raise NsdashError("journals of remote machines are not in the dashboard yet",
                          "run 'nsdash -H HOST journal -M MACHINE'")

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

    def image_rows(self) -> tuple[ImageRow, ...]:
        """Every host's images (remote_images; PartialImages when a host does not answer)."""
        from nsdash.tui.remote_images import all_images

        return all_images({host: watch.target for host, watch in self.hosts.watches.items()}, self._last_images)

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
        """The far machine's limits (remote_limits: its host's `status -o json`; CGROUP is not ours)."""
        from nsdash.tui.remote_limits import far_limits

        host, machine = split_key(name)
        return far_limits(self.hosts.target(host), machine)

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
