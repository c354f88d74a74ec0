"""What the poller and the action workers tell the app: immutable snapshots and results.

Everything here is built off the UI thread and never changed afterwards, so a
widget can keep a reference without copying.
"""

from __future__ import annotations

from textual.message import Message

from nsdash.errors import NsdashError

# A refresh's values live below the dashboard (its far side over -H makes them too): here for its modules.
from nsdash.monitor.snapshot import LinkRate as LinkRate
from nsdash.monitor.snapshot import MachineInfo as MachineInfo
from nsdash.monitor.snapshot import Snapshot as Snapshot
from nsdash.system.frozen import Frozen  # (not dataclasses: generating them slowed the start, issue 16)

JOURNAL_KEEP = 5000  # journal lines the pane keeps, and so the most one batch needs to carry


class JournalLine(Frozen):
    """One journal or console-log entry, decoded off the UI thread."""

    realtime: int  # µs since the epoch
    machine: str | None
    priority: int | None
    identifier: str | None
    unit: str | None
    message: str
    event: str | None = None  # console-log separators: "boot 2", "reboot", ...
    # History that came after newer lines went out (a host slower than HISTORY_WAIT, nsdash.tui.
    # remote_journal): the pane puts it in place by time, where live lines are only appended.
    late: bool = False


def host_path(host: str, path: str = "/") -> str:
    """Where a remote host's cgroup PATH sits in a Snapshot over -H (tree, rows, machine_of):
    under "/HOST" (nsdash.tui.remote)."""
    return "/" + host + ("" if path == "/" else path)


def split_path(path: str) -> tuple[str, str]:
    """"/HOST/a/b" -> (HOST, "/a/b"); "/HOST" -> (HOST, "/"): host_path() undone."""
    host, _, rest = path[1:].partition("/")
    return host, "/" + rest


class SnapshotReady(Message):
    """A new snapshot; an unprocessed older one is dropped in its favour."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SnapshotReady)


class JournalLines(Message):
    """Entries for the followed journal: `reset` replaces what is shown (a new selection).

    The poller has at most one batch waiting in the app's queue: it gathers what
    arrives meanwhile and posts it once the app says it took the last one
    (Poller.journal_taken), so a flood costs the UI one write per batch.
    """

    def __init__(self, machines: tuple[str, ...], lines: tuple[JournalLine, ...], reset: bool,
                 note: str | None = None) -> None:
        super().__init__()
        self.machines = machines
        self.lines = lines
        self.reset = reset
        self.note = note


class ActionDone(Message):
    """An action on a machine finished: ok, or the error to show."""

    def __init__(self, action: str, machine: str, error: str | None = None) -> None:
        super().__init__()
        self.action = action
        self.machine = machine
        self.error = error


class ImageRow(Frozen):
    """One row of the Images panel (nsdash.machines.images), read off the UI thread."""

    name: str
    type: str  # directory | subvolume | raw
    read_only: bool
    size: int | None  # bytes on disk; None: not measured (yet)
    mtime: float
    path: str
    used_by: tuple[str, ...] = ()  # running machines on it
    os: str = "-"  # the tree's PRETTY_NAME (guest text)
    host: str | None = None  # over -H: the image's host (its name is then HOST/IMAGE)


class PartialImages(NsdashError):
    """Some hosts' images could not be listed (over -H): the others' ROWS, and why in the message."""

    def __init__(self, rows: tuple[ImageRow, ...], message: str) -> None:
        super().__init__(message)
        self.rows = rows


class ImagesReady(Message):
    """A new list of images; an unprocessed older one is dropped in its favour."""

    def __init__(self, rows: tuple[ImageRow, ...], error: str | None = None) -> None:
        super().__init__()
        self.rows = rows
        self.error = error

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ImagesReady)
