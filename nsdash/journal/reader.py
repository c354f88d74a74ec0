"""Read one journal directory with systemd-python's low-level Reader: no journald needed.

Filters become sd-journal matches where the library can apply them (unit,
priority, boot) and a cheap comparison where it cannot (--since/--until).
Following is driven by the journal's own inotify descriptor (fileno() +
poll, then process()), never by sleeping.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path

from systemd import _reader

from nsdash.errors import NsdashError
from nsdash.journal.entry import Entry
from nsdash.journal.filters import Filters, boot_index, is_glob
from nsdash.journal.locate import check_journal_file, journal_files


@contextlib.contextmanager
def _quiet_libsystemd():
    """libsystemd reports skipped files on stderr by itself (scribbling over the dashboard);
    we check files ourselves and say what was skipped, our way.  It reads SYSTEMD_LOG_LEVEL
    once, when it first logs: set it only around opening, so child processes (supervisors,
    containers) never inherit it."""
    if "SYSTEMD_LOG_LEVEL" in os.environ:
        yield
        return
    os.environ["SYSTEMD_LOG_LEVEL"] = "crit"
    try:
        yield
    finally:
        os.environ.pop("SYSTEMD_LOG_LEVEL", None)


def _open(directory: Path) -> _reader._Reader:
    with _quiet_libsystemd():
        return _reader._Reader(0, str(directory))

RECHECK_MS = 100
COREDUMP_MESSAGE_ID = "fc2e22bc6ee647b6b90729ab34a250b1"


@dataclass(frozen=True)
class Boot:
    """One boot in a journal: index as journalctl --list-boots numbers it (0 = last)."""

    index: int
    boot_id: str
    first: int
    last: int


def _add_unit_matches(r: _reader._Reader, units: list[str]) -> None:
    """journalctl -u: the unit's own processes, PID 1's messages about it, its coredumps."""
    for unit in units:
        u = unit.encode()
        r.add_match(b"_SYSTEMD_UNIT=" + u)
        r.add_disjunction()
        r.add_match(b"MESSAGE_ID=" + COREDUMP_MESSAGE_ID.encode())
        r.add_match(b"_UID=0")
        r.add_match(b"COREDUMP_UNIT=" + u)
        r.add_disjunction()
        r.add_match(b"_PID=1")
        r.add_match(b"UNIT=" + u)
        r.add_disjunction()
        r.add_match(b"_UID=0")
        r.add_match(b"OBJECT_SYSTEMD_UNIT=" + u)
        r.add_disjunction()
    r.add_conjunction()


class JournalSource:
    """The entries of one journal directory that pass FILTERS, history then follow.

    detail=True also fetches each entry's cursor and monotonic time (the json
    format needs them; the others do not, and skipping them is measurably faster).
    `skipped` lists the files that could not be read and why.
    """

    def __init__(self, directory: Path, filters: Filters | None = None, machine: str | None = None,
                 detail: bool = False, only: tuple[str, ...] | None = None) -> None:
        self.directory = Path(directory)
        self.only = only  # fetch just these fields (cat needs one; fetching all 20 costs 2.5x)
        self.filters = filters or Filters()
        self.machine = machine
        self.detail = detail
        self.skipped: list[str] = []
        for path in journal_files(self.directory):
            why = check_journal_file(path)
            if why:
                self.skipped.append(f"{path}: {why}, skipped")
        try:
            self._r = _open(self.directory)
        except (OSError, ValueError) as e:
            raise NsdashError(f"cannot open the journal in {self.directory}: {e}",
                              "check the directory holds journal files and is readable") from e
        self._seen_any = False
        self._empty_match = False
        self._apply_filters()

    # ------------------------------------------------------------ boots

    def boots(self) -> list[Boot]:
        """The boots in this journal, oldest first (reads no entry data)."""
        r = _open(self.directory)
        try:
            spans = []
            for raw in r.query_unique("_BOOT_ID"):
                r.flush_matches()
                r.add_match(b"_BOOT_ID=" + raw)
                r.seek_head()
                if not r._next():
                    continue
                first = r._get_realtime()
                r.seek_tail()
                last = r._get_realtime() if r._previous() else first
                spans.append((first, last, raw.decode()))
        finally:
            r.close()
        spans.sort()
        n = len(spans)
        return [Boot(i - n + 1, boot_id, first, last) for i, (first, last, boot_id) in enumerate(spans)]

    def resolve_boot(self, boot: int | str) -> str:
        boots = self.boots()
        if isinstance(boot, str):
            if any(b.boot_id == boot for b in boots):
                return boot
            raise NsdashError(f"boot {boot} is not in the journal in {self.directory}",
                              "list the boots with --list-boots")
        pick = boot_index(boot, len(boots))
        if pick is None:
            raise NsdashError(f"data from the specified boot ({boot:+d}) is not available in {self.directory}",
                              "list the boots with --list-boots")
        return boots[pick].boot_id

    # ------------------------------------------------------------ filters

    def _apply_filters(self) -> None:
        f, r = self.filters, self._r
        if f.boot is not None:
            r.add_match(b"_BOOT_ID=" + self.resolve_boot(f.boot).encode())
            r.add_conjunction()
        if f.units:
            units = self._expand_units(f.units)
            if not units:
                self._empty_match = True
            else:
                _add_unit_matches(r, units)
        if f.priorities is not None and len(f.priorities) < 8:  # all eight: no match, as journalctl
            for p in sorted(f.priorities):
                r.add_match(f"PRIORITY={p}".encode())
            r.add_conjunction()

    def _expand_units(self, units: tuple[str, ...]) -> list[str]:
        globs = [u for u in units if is_glob(u)]
        names = [u for u in units if not is_glob(u)]
        if globs:
            present = {v.decode("utf-8", "replace") for v in self._r.query_unique("_SYSTEMD_UNIT")}
            names += sorted(u for u in present if any(fnmatch.fnmatchcase(u, g) for g in globs))
        return names

    # ------------------------------------------------------------ reading

    def _entry(self) -> Entry | None:
        r = self._r
        try:
            if self.only is None:
                fields = r._get_all()
            else:
                fields = {}
                for name in self.only:
                    try:  # noqa: SIM105  (the hot path: suppress() costs more than the read)
                        fields[name] = r._get(name)
                    except KeyError:
                        pass
            realtime = r._get_realtime()
            if self.detail:
                return Entry(realtime, fields, self.machine, r._get_monotonic()[0], r._get_cursor())
        except OSError as e:
            self.skipped.append(f"{self.directory}: an unreadable entry ({e.strerror or e}), skipped")
            return None
        return Entry(realtime, fields, self.machine)

    def _step(self, forward: bool = True) -> bool:
        try:
            return bool(self._r._next() if forward else self._r._previous())
        except OSError as e:
            self.skipped.append(f"{self.directory}: reading stopped early ({e.strerror or e})")
            return False

    def entries(self):
        """Every matching entry from the start (or --since), oldest first; leaves the reader at the end."""
        if self._empty_match:
            return
        f = self.filters
        if f.since is not None:
            self._r.seek_realtime(f.since)
        else:
            self._r.seek_head()
        until = f.until
        since = f.since
        while self._step():
            e = self._entry()
            if e is None:
                continue
            self._seen_any = True
            if since is not None and e.realtime < since:
                continue
            if until is not None and e.realtime > until:
                break
            yield e

    def tail(self, n: int) -> list[Entry]:
        """The last N matching entries (within --since/--until), oldest first."""
        found: list[Entry] = []
        if self._empty_match or n <= 0:
            self.seek_end()
            return found
        f = self.filters
        self._r.seek_tail()
        while len(found) < n and self._step(forward=False):
            e = self._entry()
            if e is None:
                continue
            if f.until is not None and e.realtime > f.until:
                continue
            if f.since is not None and e.realtime < f.since:
                break
            found.append(e)
        found.reverse()
        self.seek_end()
        return found

    def seek_end(self) -> None:
        """Position after the last matching entry, so read_new() yields only what comes next."""
        self._r.seek_tail()
        self._seen_any = self._step(forward=False)

    # ------------------------------------------------------------ following

    def fileno(self) -> int:
        """Readable when the journal changed (the Reader's inotify fd); then call read_new()."""
        return self._r.fileno()

    def timeout_ms(self) -> int:
        """How long a poll may wait before read_new() must be called anyway.

        journald writes entries into the mmapped file at once but signals the change
        (an ftruncate, hence inotify) only from a timer that coalesces 250 ms of
        writes, so inotify alone sees an entry 250-500 ms late (journalctl -f too).
        Looking again after at most RECHECK_MS (sd_journal_next at the tail costs
        microseconds) brings that under 200 ms; inotify still wakes us at once for
        file creation, rotation and removal, and when journald does signal.
        """
        t = self._r.get_timeout_ms()
        return RECHECK_MS if t is None or t < 0 else min(int(t), RECHECK_MS)

    def read_new(self) -> list[Entry]:
        """Entries appended since the last read; handles rotation and vacuuming (sd-journal reopens)."""
        try:
            self._r.process()
        except OSError as err:
            self.skipped.append(f"{self.directory}: {err.strerror or err}")
        if self._empty_match:
            return []
        if not self._seen_any:
            # Nothing matched yet: a tail position would hide all but the last new entry.
            self._r.seek_head()
        out: list[Entry] = []
        until = self.filters.until
        while self._step():
            e = self._entry()
            if e is None:
                continue
            self._seen_any = True
            if until is not None and e.realtime > until:
                continue
            if self.filters.since is not None and e.realtime < self.filters.since:
                continue
            out.append(e)
        return out

    def close(self) -> None:
        self._r.close()

    def __enter__(self) -> JournalSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
