"""A unit's last journal lines, from the machine's own journal files, through nsdash.journal.

nsdash.journal finds the machine's journal directories (its tree, its running
root, --link-journal, --uuid) and applies the matches `systemctl status` and
`journalctl -u` use: the unit's own processes (_SYSTEMD_UNIT), PID 1 about it
(UNIT), root daemons about it (OBJECT_SYSTEMD_UNIT) and its coredumps.  Lines
are rendered by its Printer, byte for byte like journalctl's short format.

The current boot is cut at the start of the machine's init: boots of one
machine can share the host's boot ID, so _BOOT_ID alone cannot separate them.
"""

from __future__ import annotations

import io

from nsdash.errors import NsdashError
from nsdash.inside.target import Target
from nsdash.journal.entry import shown
from nsdash.journal.locate import JournalDir
from nsdash.machines import identity
from nsdash.system.frozen import Frozen

JOURNAL_DIRS = ("var/log/journal", "run/log/journal")


class LogLine(Frozen):
    realtime_us: int
    hostname: str
    identifier: str
    pid: str | None
    message: str
    priority: int | None
    text: str  # journalctl's short line, without the newline

    def short(self) -> str:
        return self.text


def fallback_dirs(target: Target) -> list[JournalDir]:
    """The journal directories in the machine's running root (machines nsdash.journal cannot name)."""
    mid = identity.machine_id(target.root)
    if mid is None:
        return []
    return [d for d in (JournalDir(target.root, f"{sub}/{mid}") for sub in JOURNAL_DIRS) if d.exists()]


def unit_lines(target: Target, unit: str, count: int = 10) -> list[LogLine]:
    """The last COUNT lines about UNIT in the machine's current boot, oldest first."""
    if count <= 0:
        return []
    from nsdash.journal import Filters, Printer, open_logs  # systemd-python: only when lines are wanted

    filters = Filters(units=(unit,), since=target.started_us())
    try:
        log = open_logs([target.name], filters=filters, follow=False)  # read once
    except NsdashError:
        dirs = fallback_dirs(target)
        if not dirs:
            return []
        log = open_logs(directories=dirs, filters=filters, follow=False)
    try:
        entries = [e for e in log.tail(count) if e.event is None]  # console-log separators are no unit's
    finally:
        log.close()
    printer = Printer(io.StringIO())
    lines = []
    for e in entries:
        text = printer.short(e)
        if text is None:
            continue
        lines.append(LogLine(realtime_us=e.realtime, hostname=e.get("_HOSTNAME") or "localhost",
                             identifier=e.identifier or "unknown", pid=e.pid, message=shown(e.message) or "",
                             priority=e.priority, text=shown(text.rstrip("\n")) or ""))
    return lines
