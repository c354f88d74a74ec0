"""One refresh of the host, as immutable values: its machines, the cgroup tree, the cgtop rows.

Made by the readers (nsdash.monitor.host; over -H, nsdash.tui.remote from the
far hosts' watch lines) off the UI thread and never changed afterwards, so the
dashboard's widgets keep references without copying.  Frozen, not dataclasses:
generating them was 1.6 ms of the dashboard's start (issue 16).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from nsdash.monitor.display import Row
from nsdash.monitor.tree import CgroupNode
from nsdash.system.frozen import Frozen

EMPTY: Mapping = MappingProxyType({})


class LinkRate(Frozen):
    """One network link of a machine, as the machine sees it: bytes per second received and
    sent since the last refresh (None: not known yet).  The name is the guest's."""

    name: str
    rx: float | None
    tx: float | None


class MachineInfo(Frozen):
    """One row of the machine list."""

    name: str
    state: str  # running, starting, stopping, rebooting, orphan, ...
    os: str = "-"
    address: str = "-"
    started: float | None = None  # epoch seconds the current boot began
    cgroup: str | None = None
    leader: int | None = None
    boot: int = 1
    boot_mode: bool = False
    root: str | None = None
    source: str = "nsdash"
    status: str | None = None  # the guest's last sd_notify STATUS= line (guest text)
    links: tuple[LinkRate, ...] = ()  # its own network namespace's links (none: the host's network)
    host: str | None = None  # the remote host it runs on (-H; None: this one); NAME is then HOST/MACHINE


class Snapshot(Frozen):
    """One refresh: machines, the cgroup tree and the cgtop rows."""

    timestamp: float
    machines: tuple[MachineInfo, ...] = ()
    tree: CgroupNode | None = None
    rows: tuple[Row, ...] = ()
    commands: Mapping[int, str] = EMPTY  # pid -> command line
    machine_of: Mapping[str, str] = EMPTY  # cgroup path -> machine name
    errors: tuple[str, ...] = ()  # readers that failed this round, in words
    unreachable: tuple[str, ...] = ()  # remote hosts (-H) that did not answer last time
    notes: Mapping[str, str] = EMPTY  # cgroup path -> a word on it ("unreachable")
