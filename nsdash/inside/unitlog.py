"""A unit's last journal lines from the machine's own journal files (no journald on the host needed).

The matches are the ones `systemctl status` uses: what the unit's processes
logged (_SYSTEMD_UNIT), what PID 1 logged about it (UNIT), and what other
root daemons logged about it (OBJECT_SYSTEMD_UNIT), limited to the current boot.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from nsdash.errors import NsdashError
from nsdash.inside.target import Target

JOURNAL_DIRS = ("var/log/journal", "run/log/journal")
BOOT_SLACK_US = 0  # the init's start time is rounded down to a clock tick already


@dataclass(frozen=True)
class LogLine:
    realtime_us: int
    hostname: str
    identifier: str
    pid: str | None
    message: str
    priority: int | None

    def short(self) -> str:
        """journalctl's short format: 'Nov 29 05:26:00 host ident[pid]: message'."""
        stamp = time.strftime("%b %d %H:%M:%S", time.localtime(self.realtime_us / 1e6))
        ident = f"{self.identifier}[{self.pid}]" if self.pid else self.identifier
        return f"{stamp} {self.hostname} {ident}: {self.message}"


def machine_id(root: Path) -> str | None:
    try:
        text = (root / "etc/machine-id").read_text().strip()
    except OSError:
        return None
    return text if len(text) == 32 else None


def journal_dirs(target: Target, root: Path | None = None) -> list[Path]:
    """The machine's journal directories: nsdash.journal's lookup (--link-journal, --uuid), else its root's."""
    if root is None:
        try:
            from nsdash.journal.locate import locate

            found = list(locate(target.name).journal_dirs)
            if found:
                return found
        except NsdashError:
            pass
    root = root or target.root
    mid = machine_id(root)
    return [] if mid is None else [root / d / mid for d in JOURNAL_DIRS]


def journal_files(dirs: list[Path]) -> list[str]:
    files: list[str] = []
    for directory in dirs:
        try:
            files += sorted(str(p) for p in directory.iterdir() if p.name.endswith((".journal", ".journal~")))
        except OSError:
            continue
    return files


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return "" if value is None else str(value)


def unit_lines(target: Target, unit: str, count: int = 10, root: Path | None = None) -> list[LogLine]:
    """The last COUNT lines about UNIT in the machine's current boot, oldest first."""
    files = journal_files(journal_dirs(target, root))
    if not files or count <= 0:
        return []
    from systemd import journal  # imported here: `nsdash systemctl start` does not need it

    reader = journal.Reader(files=files)
    try:
        reader.add_match(_SYSTEMD_UNIT=unit)
        reader.add_disjunction()
        reader.add_match(_PID="1", UNIT=unit)
        reader.add_disjunction()
        reader.add_match(_UID="0", OBJECT_SYSTEMD_UNIT=unit)
        reader.seek_tail()
        lines: list[LogLine] = []
        boot = None
        # Containers may share the host's boot ID (unless the launcher gives each boot its own), so
        # the current boot also ends, going back, where the machine's init started.
        since = target.started_us() if root is None else None
        while len(lines) < count:
            entry = reader.get_previous()
            if not entry:
                break
            entry_boot = _text(entry.get("_BOOT_ID"))
            if boot is None:
                boot = entry_boot
            elif entry_boot != boot:
                break
            stamp = entry.get("__REALTIME_TIMESTAMP")
            realtime = int(stamp.timestamp() * 1e6) if stamp is not None else 0
            if since is not None and realtime < since - BOOT_SLACK_US:
                break
            prio = entry.get("PRIORITY")
            lines.append(LogLine(
                realtime_us=realtime,
                hostname=_text(entry.get("_HOSTNAME")) or "localhost",
                identifier=_text(entry.get("SYSLOG_IDENTIFIER") or entry.get("_COMM")) or "unknown",
                pid=_text(entry.get("SYSLOG_PID") or entry.get("_PID")) or None,
                message=_text(entry.get("MESSAGE")),
                priority=int(prio) if isinstance(prio, int) else None,
            ))
        lines.reverse()
        return lines
    finally:
        reader.close()
