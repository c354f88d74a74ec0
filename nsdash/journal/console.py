"""A machine's console log, read and followed as entries, for machines without a journal.

The supervisor writes the raw console bytes to console.log and marks boots,
reboots and exits in a side index (machines/consolelog.py).  Each mark becomes
an entry (priority 6, `event` set; its message is the separator line the log
shows); every other line an entry with no priority, timed by the mark before
it (the log has no per-line times) or, when followed, by the moment it was
read.  A line the guest printed is never a mark, however it reads: a line is
one only at an offset the index names.  Terminal escape sequences are
dropped: they drive a screen, they are not log text.
"""

from __future__ import annotations

import os
import re
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from nsdash.journal.entry import Entry
from nsdash.journal.filters import Filters, boot_index
from nsdash.machines.consolelog import Mark, index_path, parse_marks, read_marks, rotated
from nsdash.system import syscalls

# CSI ... final byte, OSC ... BEL/ST, other two-byte escapes; then stray C0 controls except tab.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|[\x00-\x08\x0b-\x1f\x7f]")
_READ = 1 << 20
MAX_LINE = 64 * 1024  # a longer line (a guest that never prints LF) is cut into pieces of this size
TAIL_WINDOW = 64 * 1024  # tail() first reads the log's last this many bytes, then four times as many, ...
FOLLOW_BEHIND, FOLLOW_KEEP = 64 * 1024, 16 * 1024  # see _catch_up
# Following, at most FOLLOW_BURST lines a second are read (journald rate-limits its
# writers the same way, 10,000 per 30 s by default); the rest waits, and what a flood
# writes meanwhile is skipped (_catch_up).  A reader's own pace (the dashboard's pane
# draws each line) must not decide how far behind a flood it falls.
FOLLOW_BURST, FOLLOW_INTERVAL = 500, 1.0


def clean_line(line: str) -> str:
    return _ESCAPES.sub("", line.rstrip("\r")).replace("\r", "")


def _boot_of(mark: Mark) -> int | None:
    kind, _, number = mark.event.partition(" ")
    return int(number) if kind == "boot" and number.isdigit() else None


class _Marks:
    """The marks of one log file, read from its index through a descriptor held beside the
    log's (so both follow a rotation), as the supervisor appends them."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        self.at: dict[int, Mark] = {}
        self._offset = 0
        self._pending = b""

    def refresh(self) -> None:
        if self.fd is None:
            return
        while chunk := os.pread(self.fd, 65536, self._offset):
            self._offset += len(chunk)
            data = self._pending + chunk
            cut = data.rfind(b"\n") + 1
            self._pending = data[cut:]
            for mark in parse_marks(data[:cut]):
                self.at[mark.offset] = mark

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class ConsoleSource:
    """Console-log entries passing FILTERS, history then follow, like JournalSource."""

    def __init__(self, path: str | Path, filters: Filters | None = None, machine: str | None = None,
                 detail: bool = False) -> None:
        self.path = Path(path)
        self.filters = filters or Filters()
        self.machine = machine or self.path.parent.name
        self.skipped: list[str] = []
        self._pending = b""
        self._pending_at = 0  # the log offset of _pending's first byte
        self._skip_partial = False  # drop bytes up to the first LF (a read that starts mid-line)
        self._offset = 0
        self._fd: int | None = None
        self._marks = _Marks(None)
        self._boot = 0  # boot number of the lines being read (0: before any mark)
        self._time: int | None = None
        self._counter = 0
        self._wanted_boot: int | None = None
        self._inotify: int | None = None
        self._line_budget: int | None = None  # lines this read may still take (None: any)
        self._window = (0.0, 0)  # following: (start of this FOLLOW_INTERVAL, lines read in it)
        self._host = self.machine.encode()
        self._resolve_boot_filter()

    # ------------------------------------------------------------ reading bytes

    def _open(self, path: Path) -> tuple[int, _Marks] | None:
        """The log at PATH and its index, opened as one pair (a rotation may run meanwhile)."""
        for _ in range(5):
            try:
                idx: int | None = os.open(index_path(path), os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                idx = None  # a log from before indexes, or none written yet: no marks
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                if idx is not None:
                    os.close(idx)
                return None
            if idx is None or _same(idx, index_path(path)) and _same(fd, path):
                return fd, _Marks(idx)
            os.close(fd)
            os.close(idx)  # rotated between the two opens: again
        return None

    def _drain(self, fd: int, marks: _Marks, following: bool, end: int | None = None) -> Iterator[Entry]:
        """Entries from the read offset to the end of FD (to END at most: history stops where
        the log ended when it was asked for, or a flood would keep it reading)."""
        if following:
            yield from self._catch_up(fd, marks)
            end = os.fstat(fd).st_size  # what comes meanwhile is the next call's
        while end is None or self._offset < end:
            chunk = os.pread(fd, _READ if end is None else min(_READ, end - self._offset), self._offset)
            if not chunk:
                return
            self._offset += len(chunk)
            marks.refresh()  # after the read: a mark's record is written before its line
            yield from self._feed(chunk, marks, following)
            if self._line_budget == 0:
                return

    def _restart(self, offset: int = 0, fd: int | None = None) -> None:
        """Read FD (the log) from OFFSET on, from the first whole line."""
        self._offset = self._pending_at = offset
        self._pending = b""
        self._skip_partial = offset > 0 and fd is not None and os.pread(fd, 1, offset - 1) != b"\n"

    def _read_file(self, path: Path, start: int, end: int) -> Iterator[Entry]:
        """The entries of the log file at PATH from byte START (the first whole line) to END."""
        opened = self._open(path)
        if opened is None:
            return
        fd, marks = opened
        try:
            self._restart(start, fd)
            yield from self._drain(fd, marks, following=False, end=end)
        finally:
            os.close(fd)
            marks.close()

    def _read_more(self, following: bool) -> Iterator[Entry]:
        """Whatever was written since the last call, across a rotation or truncation."""
        if self._fd is None:
            opened = self._open(self.path)
            if opened is None:
                return
            self._fd, self._marks = opened
            self._restart()
        yield from self._drain(self._fd, self._marks, following)
        if self._line_budget == 0:
            return  # more next time, from this file (rotated or not)
        try:
            current = os.stat(self.path)
        except OSError:
            return  # gone (machine removed); keep what we hold
        held = os.fstat(self._fd)
        if (current.st_dev, current.st_ino) != (held.st_dev, held.st_ino):
            # Rotated (console.log -> console.log.1): we drained the old file, now the new one.
            os.close(self._fd)
            self._marks.close()
            self._fd = None
            opened = self._open(self.path)
            if opened is not None:
                self._fd, self._marks = opened
                self._restart()
                yield from self._drain(self._fd, self._marks, following)
        elif held.st_size < self._offset:
            self._restart()  # truncated in place
            yield from self._drain(self._fd, self._marks, following)

    def _catch_up(self, fd: int, marks: _Marks) -> Iterator[Entry]:
        """Following a log written faster than it is read (a console flood): past FOLLOW_BEHIND
        unread bytes, go on from the last FOLLOW_KEEP of them, with the boot and time of
        the marks skipped, and say so in one entry.  (The log itself keeps only 2 MiB.)"""
        size = os.fstat(fd).st_size
        if size - self._offset <= FOLLOW_BEHIND:
            return
        new = size - FOLLOW_KEEP
        marks.refresh()
        for offset in sorted(marks.at):
            if self._pending_at <= offset < new:
                mark = marks.at[offset]
                boot = _boot_of(mark)
                self._boot = boot if boot is not None else self._boot
                self._time = mark.realtime
        skipped = new - self._pending_at
        self._restart(new, fd)
        self._counter += 1
        fields = {"MESSAGE": f"{skipped} bytes of console output skipped: written faster than read".encode(),
                  "PRIORITY": b"4", "_HOSTNAME": self._host, "SYSLOG_IDENTIFIER": b"nsdash",
                  "NSDASH_BOOT": str(self._boot).encode()}
        entry = Entry(int(time.time() * 10**6), fields, self.machine, cursor=f"console;{self._counter}")
        if self._admits(entry):
            yield entry

    def _feed(self, chunk: bytes, marks: _Marks, following: bool) -> Iterator[Entry]:
        data = self._pending + chunk
        at = self._pending_at
        if self._skip_partial:
            cut = data.find(b"\n")
            if cut < 0:
                self._pending, self._pending_at = b"", at + len(data)
                return
            data, at, self._skip_partial = data[cut + 1:], at + cut + 1, False
        lines = [(raw, len(raw) + 1) for raw in data.split(b"\n")]  # (line, bytes it takes in the log)
        rest = lines.pop()[0]  # an incomplete last line waits for its newline
        while len(rest) > MAX_LINE:
            lines.append((rest[:MAX_LINE], MAX_LINE))
            rest = rest[MAX_LINE:]
        now = int(time.time() * 10**6) if following else None
        for raw, size in lines:
            if self._line_budget is not None:
                if self._line_budget == 0:  # the rest is read next time, from this line
                    self._offset = self._pending_at = at
                    self._pending, self._skip_partial = b"", False
                    return
                self._line_budget -= 1
            entry = self._line_entry(raw, marks.at.get(at), now)
            at += size
            if entry is not None and self._admits(entry):
                yield entry
        self._pending, self._pending_at = rest, at

    def _line_entry(self, raw: bytes, mark: Mark | None, now: int | None) -> Entry | None:
        self._counter += 1
        if mark is not None and raw == mark.text.encode():
            boot = _boot_of(mark)
            if boot is not None:
                self._boot = boot
            self._time = mark.realtime
            fields = {"MESSAGE": raw, "PRIORITY": b"6", "_HOSTNAME": self._host,
                      "SYSLOG_IDENTIFIER": b"nsdash", "NSDASH_EVENT": mark.event.encode(),
                      "NSDASH_BOOT": str(self._boot).encode()}
            return Entry(mark.realtime, fields, self.machine, cursor=f"console;{self._counter}", event=mark.event)
        line = clean_line(raw.decode("utf-8", "replace"))
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

    # ------------------------------------------------------------ history

    def _history(self, window: int | None) -> Iterator[Entry]:
        """The entries of the rotated log and then the current one; with WINDOW, only of
        about their last WINDOW bytes (from the first whole line), the boot and time
        taken from the marks before.  Leaves the current log open to follow."""
        self._rewind()
        old, cur = rotated(self.path), self.path
        sizes = [_size(old), _size(cur)]
        starts: list[int | None] = [0, 0]
        if window is not None:
            if window < sizes[1]:
                starts = [None, sizes[1] - window]
            else:
                starts = [max(0, sizes[0] - (window - sizes[1])), 0]
        before = [(0, m) for m in read_marks(old)] + [(1, m) for m in read_marks(cur)]
        first = (0, starts[0]) if starts[0] is not None else (1, starts[1] or 0)
        for i, m in before:
            if (i, m.offset) < first:
                boot = _boot_of(m)
                self._boot = boot if boot is not None else self._boot
                self._time = m.realtime
        if starts[0] is not None and sizes[0]:
            yield from self._read_file(old, starts[0], sizes[0])
        opened = self._open(cur)
        if opened is None:
            return
        self._fd, self._marks = opened
        self._restart(starts[1] or 0, self._fd)
        yield from self._drain(self._fd, self._marks, following=False, end=sizes[1])

    def boot_numbers(self) -> list[int]:
        """The boots the log records (its "boot N" marks), oldest first."""
        marks = read_marks(rotated(self.path)) + read_marks(self.path)
        return [n for n in map(_boot_of, marks) if n is not None]

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
        self._marks.close()
        self._restart()
        self._boot, self._time, self._counter = 0, None, 0

    def entries(self) -> Iterator[Entry]:
        yield from self._history(None)

    def tail(self, n: int) -> list[Entry]:
        """The last N entries, reading only as much of the log's end as it takes (a flooded
        log holds a million one-letter lines)."""
        window = max(TAIL_WINDOW, n * 256)
        whole = _size(rotated(self.path)) + _size(self.path)
        while True:
            kept: deque[Entry] = deque(maxlen=max(n, 0))
            count = 0
            for entry in self._history(window if window < whole else None):
                kept.append(entry)
                count += 1
            if count >= n or window >= whole:
                return list(kept)
            window *= 4

    def seek_end(self) -> None:
        for _ in self._history(0):
            pass

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
        now = time.monotonic()
        start, taken = self._window
        if now - start >= FOLLOW_INTERVAL:
            start, taken = now, 0
        if taken >= FOLLOW_BURST:
            self._window = (start, taken)
            return []  # the poller asks again within its interval, or on the next write
        self._line_budget = FOLLOW_BURST - taken
        try:
            entries = list(self._read_more(following=True))
        finally:
            self._window = (start, FOLLOW_BURST - self._line_budget)
            self._line_budget = None
        return entries

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._marks.close()
        if self._inotify is not None:
            os.close(self._inotify)
            self._inotify = None

    def __enter__(self) -> ConsoleSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _same(fd: int, path: Path) -> bool:
    """Whether FD is the file at PATH now."""
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
