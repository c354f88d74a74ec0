"""A machine's console log, read and followed as entries, for machines without a journal.

The supervisor writes the raw console bytes to console.log, with separator
lines of its own:  `-- nsdash: <event> <ISO-8601 UTC time>[ (<detail>)] --`
(events: boot N, reboot, poweroff, exited, killed).  Each separator becomes an
entry (priority 6, `event` set); every other line an entry with no priority,
timed by the separator before it (the log has no per-line times) or, when
followed, by the moment it was read.  Terminal escape sequences are dropped:
they drive a screen, they are not log text.
"""

from __future__ import annotations

import codecs
import os
import re
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

from nsdash.journal.entry import Entry
from nsdash.journal.filters import Filters, boot_index
from nsdash.system import syscalls

SEPARATOR = re.compile(
    r"^-- nsdash: (?P<event>boot \d+|reboot|poweroff|exited|killed|[a-z][a-z -]*?) "
    r"(?P<time>\d{4}-\d\d-\d\d[T ][0-9:.]+(?:Z|[+-]\d\d:?\d\d)?)(?: \((?P<detail>.*)\))? --$")
# CSI ... final byte, OSC ... BEL/ST, other two-byte escapes; then stray C0 controls except tab.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|[\x00-\x08\x0b-\x1f\x7f]")
_READ = 1 << 20


def parse_separator(line: str) -> tuple[str, int, str | None] | None:
    """(event, microseconds since the epoch, detail) for a separator line, else None."""
    m = SEPARATOR.match(line)
    if not m:
        return None
    try:
        stamp = datetime.fromisoformat(m.group("time").replace(" ", "T"))
    except ValueError:
        return None
    if stamp.tzinfo is None:  # the supervisor writes UTC
        stamp = stamp.replace(tzinfo=UTC)
    return m.group("event"), int(stamp.timestamp() * 10**6), m.group("detail")


def clean_line(line: str) -> str:
    return _ESCAPES.sub("", line.rstrip("\r")).replace("\r", "")


class ConsoleSource:
    """Console-log entries passing FILTERS, history then follow, like JournalSource."""

    def __init__(self, path: Path, filters: Filters | None = None, machine: str | None = None,
                 detail: bool = False) -> None:
        self.path = Path(path)
        self.filters = filters or Filters()
        self.machine = machine or self.path.parent.name
        self.skipped: list[str] = []
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._pending = ""
        self._offset = 0
        self._fd: int | None = None
        self._boot = 0  # boot number of the lines being read (0: before any separator)
        self._time: int | None = None
        self._counter = 0
        self._wanted_boot: int | None = None
        self._inotify: int | None = None
        self._host = self.machine.encode()
        self._resolve_boot_filter()

    # ------------------------------------------------------------ reading bytes

    def _open(self, path: Path) -> int | None:
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None

    def _drain(self, fd: int, following: bool) -> list[Entry]:
        out: list[Entry] = []
        while True:
            chunk = os.pread(fd, _READ, self._offset)
            if not chunk:
                return out
            self._offset += len(chunk)
            out += self._feed(self._decoder.decode(chunk), following)

    def _restart(self) -> None:
        self._offset, self._pending = 0, ""
        self._decoder.reset()

    def _read_more(self, following: bool) -> list[Entry]:
        """Whatever was written since the last call, across a rotation or truncation."""
        out: list[Entry] = []
        if self._fd is None:
            rotated = self._open(self.path.with_name(self.path.name + ".1"))
            if rotated is not None:  # the older half of a rotated log comes first
                try:
                    out += self._drain(rotated, following)
                finally:
                    os.close(rotated)
                self._restart()
            self._fd = self._open(self.path)
            if self._fd is None:
                return out
        out += self._drain(self._fd, following)
        try:
            current = os.stat(self.path)
        except OSError:
            return out  # gone (machine removed); keep what we hold
        held = os.fstat(self._fd)
        if (current.st_dev, current.st_ino) != (held.st_dev, held.st_ino):
            # Rotated (console.log -> console.log.1): we drained the old file, now the new one.
            os.close(self._fd)
            self._fd = self._open(self.path)
            self._restart()
            if self._fd is not None:
                out += self._drain(self._fd, following)
        elif held.st_size < self._offset:
            self._restart()  # truncated in place
            out += self._drain(self._fd, following)
        return out

    def _feed(self, text: str, following: bool) -> list[Entry]:
        text = self._pending + text
        lines = text.split("\n")
        self._pending = lines.pop()  # an incomplete last line waits for its newline
        now = int(time.time() * 10**6) if following else None
        out = []
        for raw in lines:
            entry = self._line_entry(clean_line(raw), now)
            if entry is not None and self._admits(entry):
                out.append(entry)
        return out

    def _line_entry(self, line: str, now: int | None) -> Entry | None:
        sep = parse_separator(line)
        self._counter += 1
        if sep is not None:
            event, stamp, _detail = sep
            if event.startswith("boot "):
                self._boot = int(event.split()[1])
            self._time = stamp
            fields = {"MESSAGE": line.encode(), "PRIORITY": b"6", "_HOSTNAME": self._host,
                      "SYSLOG_IDENTIFIER": b"nsdash", "NSDASH_EVENT": event.encode(),
                      "NSDASH_BOOT": str(self._boot).encode()}
            return Entry(stamp, fields, self.machine, cursor=f"console;{self._counter}", event=event)
        if not line:
            return None
        stamp = now if now is not None else (self._time if self._time is not None else self._mtime())
        fields = {"MESSAGE": line.encode(), "_HOSTNAME": self._host, "SYSLOG_IDENTIFIER": b"console",
                  "NSDASH_BOOT": str(self._boot).encode()}
        return Entry(stamp, fields, self.machine, cursor=f"console;{self._counter}")

    def _mtime(self) -> int:
        try:
            return int(self.path.stat().st_mtime * 10**6)
        except OSError:
            return int(time.time() * 10**6)

    def _admits(self, e: Entry) -> bool:
        f = self.filters
        if f.units:
            return False  # console lines come from no unit
        if self._wanted_boot is not None and self._boot != self._wanted_boot:
            return False
        return f.admits_priority(e.priority) and f.admits_time(e.realtime)

    # ------------------------------------------------------------ boots

    def boot_numbers(self) -> list[int]:
        """The boots the log records ("boot N" separators), oldest first."""
        numbers: list[int] = []
        for path in (self.path.with_name(self.path.name + ".1"), self.path):
            try:
                with open(path, "rb") as f:
                    for raw in f:
                        if raw.startswith(b"-- nsdash: boot "):
                            sep = parse_separator(clean_line(raw.decode("utf-8", "replace").rstrip("\n")))
                            if sep and sep[0].startswith("boot "):
                                numbers.append(int(sep[0].split()[1]))
            except OSError:
                continue
        return numbers

    def _resolve_boot_filter(self) -> None:
        boot = self.filters.boot
        if boot is None:
            return
        from nsdash.errors import NsdashError

        numbers = self.boot_numbers()
        if isinstance(boot, str):
            raise NsdashError(f"{self.machine}'s console log has no boot IDs, only boot numbers",
                              "use -b with an offset (0, -1, 1, ...)")
        pick = boot_index(boot, len(numbers))
        if pick is None:
            raise NsdashError(f"data from the specified boot ({boot:+d}) is not in {self.machine}'s console log",
                              "list the boots with --list-boots")
        self._wanted_boot = numbers[pick]

    # ------------------------------------------------------------ the source interface

    def _rewind(self) -> None:
        """Back to the start of the log, so history can be read again (as a journal can)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._restart()
        self._boot, self._time, self._counter = 0, None, 0

    def entries(self):
        self._rewind()
        yield from self._read_more(following=False)

    def tail(self, n: int) -> list[Entry]:
        self._rewind()
        kept: deque[Entry] = deque(maxlen=max(n, 0))
        kept.extend(self._read_more(following=False))
        return list(kept)

    def seek_end(self) -> None:
        self._read_more(following=False)

    def fileno(self) -> int:
        """Readable when the log changed (inotify on the file and its directory)."""
        if self._inotify is None:
            fd = syscalls.inotify_init1()
            syscalls.inotify_add_watch(fd, str(self.path.parent),
                                       syscalls.IN_CREATE | syscalls.IN_MOVED_TO | syscalls.IN_MODIFY
                                       | syscalls.IN_CLOSE_WRITE)
            self._inotify = fd
        return self._inotify

    def timeout_ms(self) -> int:
        return -1

    def read_new(self) -> list[Entry]:
        if self._inotify is not None:
            try:
                while os.read(self._inotify, 65536):
                    pass
            except BlockingIOError:
                pass
        return self._read_more(following=True)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._inotify is not None:
            os.close(self._inotify)
            self._inotify = None

    def __enter__(self) -> ConsoleSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
