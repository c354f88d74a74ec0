"""Read one journal directory with systemd-python's low-level Reader: no journald needed.

Filters become sd-journal matches where the library can apply them (unit,
priority, boot) and a cheap comparison where it cannot (--since/--until).
Following is driven by the journal's own inotify descriptor (fileno() +
poll, then process()), never by sleeping.

A machine's journal directory (a locate.JournalDir) is the guest's: its files
are opened here one by one, confined, and handed to sd-journal as descriptors
(sd_journal_open_files_fd), so sd-journal never resolves a path the guest
controls.  sd-journal keeps no inotify descriptor for such files, so the
source watches the directory itself (through the descriptor it opened
confined), looks again at least every RECHECK_MS, and reopens at its last
entry when the set of files changed (rotation, journald's flush from /run to
/var).
"""

from __future__ import annotations

import posix
import sys

from nsdash.errors import NsdashError
from nsdash.journal.entry import Entry
from nsdash.journal.filters import Filters, boot_index, is_glob
from nsdash.journal.locate import JournalDir, check_journal_file, journal_files
from nsdash.system import bareos
from nsdash.system.frozen import Frozen

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

# systemd-python's _reader imports the datetime module for its C API alone (the capsule
# datetime.datetime_CAPI).  datetime.py defines the pure-Python classes, then replaces them
# all with _datetime's: the same module in the end, after about a millisecond of class
# building on every `nsdash journal`.  Where nothing imported datetime yet, _datetime is it.
if "datetime" not in sys.modules:
    try:
        import _datetime
    except ImportError:  # an interpreter without the C module: datetime.py is then all there is
        pass
    else:
        sys.modules["datetime"] = _datetime
from systemd import _reader  # noqa: E402


class _quiet_libsystemd:  # noqa: N801  (used as a function: `with _quiet_libsystemd():`)
    """libsystemd reports skipped files on stderr by itself (scribbling over the dashboard);
    we check files ourselves and say what was skipped, our way.  It reads SYSTEMD_LOG_LEVEL
    once, when it first logs: set it only around opening, so child processes (supervisors,
    containers) never inherit it.  (A class, not contextlib's decorator: contextlib imports
    collections and functools, milliseconds of `nsdash journal -n 20`.)"""

    def __enter__(self) -> None:
        self.set = bareos.getenv("SYSTEMD_LOG_LEVEL") is None
        if self.set:
            bareos.setenv("SYSTEMD_LOG_LEVEL", "crit")

    def __exit__(self, *exc: object) -> None:
        if self.set:
            bareos.setenv("SYSTEMD_LOG_LEVEL", None)


def _open(directory: str | int) -> _reader._Reader:
    with _quiet_libsystemd():
        return _reader._Reader(0, directory)


def _open_fds(fds: list[int]) -> _reader._Reader:
    """A reader over open journal files; it owns FDS once made (closes them on close())."""
    with _quiet_libsystemd():
        return _reader._Reader(0, None, fds)


class _ConfinedFiles:
    """A JournalDir's files, opened confined, as sd-journal readers; and whether they changed."""

    def __init__(self, directory: JournalDir, watch: bool = True) -> None:
        self.directory = directory
        self.signature: tuple[tuple[str, int, int], ...] = ()  # _files() when last opened
        self._retry: set[str] = set()  # files skipped when last opened: their size counts as a change
        # Our own inotify on the (confined, already opened) directory: sd-journal keeps none for
        # files given as descriptors.  journald's ftruncate after writing, new files and moves wake it.
        # WATCH False (a read that will not follow, `journal -n 20`): none until fileno() asks, as
        # closing an inotify that watched waits for the kernel's fsnotify SRCU grace period
        # (up to ~15 ms here) at exit.
        self._inotify = _inotify() if watch else -1
        self._empty: int | None = None  # an empty, already removed directory: sd-journal takes no empty file list

    def reader(self, skipped: list[str] | None = None) -> _reader._Reader:
        if self._inotify >= 0:
            self._watch()  # the directory may be a new one (journald's flush): watch it again
        listed, opened, why = self.directory.scan()  # listed first: a change while we open shows next time
        if skipped is not None:
            skipped.extend(why)
        fds = [fd for _, fd in opened]
        # A file skipped as incomplete (journald still creating it) is tried again when it
        # grows; journald's appends to the files we hold change nothing here.
        self._retry = {name for name, _, _ in listed} - {name for name, _ in opened}
        self.signature = self._files(listed)
        if not fds:
            return _open(self._empty_dir())
        try:
            return _open_fds(fds)
        except OSError:
            # Given descriptors, sd-journal refuses them all for one file it refuses (one
            # journald changed between our header check and its own): open the others.
            fds = self._without_refused(opened, skipped)
            self.signature = self._files(listed)  # the refused ones are tried again when they grow
            if not fds:
                return _open(self._empty_dir())
            try:
                return _open_fds(fds)
            except BaseException:
                for fd in fds:
                    posix.close(fd)
                raise
        except BaseException:
            for fd in fds:
                posix.close(fd)
            raise

    def _without_refused(self, opened: list[tuple[str, int]], skipped: list[str] | None) -> list[int]:
        """The descriptors of OPENED that sd-journal takes one by one; the others are closed
        and said in SKIPPED (the next look at the directory tries them again)."""
        kept: list[int] = []
        for i, (name, fd) in enumerate(opened):
            try:
                alone = posix.dup(fd)
            except OSError:  # out of descriptors: none of OPENED is left open
                for rest in kept + [f for _, f in opened[i:]]:
                    posix.close(rest)
                raise
            try:
                _open_fds([alone]).close()  # the reader owns ALONE once made
            except OSError as e:
                posix.close(alone)
                posix.close(fd)
                self._retry.add(name)
                if skipped is not None:
                    skipped.append(f"{self.directory}/{name}: refused by libsystemd ({e.strerror or e}), skipped")
                continue
            kept.append(fd)
        return kept

    def changed(self) -> bool:
        """True if journal files came or went, or one skipped last time changed size (one
        confined directory listing, no opens)."""
        return self._files(self.directory.signature()) != self.signature

    def _files(self, listed: tuple[tuple[str, int, int], ...]) -> tuple[tuple[str, int, int], ...]:
        return tuple((name, ino, size if name in self._retry else -1) for name, ino, size in listed)

    def _watch(self) -> None:
        try:
            fd = self.directory.open()
        except OSError:
            return  # gone (journald's flush removes /run/log/journal/ID): the recheck still runs
        from nsdash.system import syscalls  # ctypes: only for a reader that follows

        watch = (syscalls.IN_MODIFY | syscalls.IN_CREATE | syscalls.IN_MOVED_TO | syscalls.IN_DELETE_SELF
                 | syscalls.IN_MOVE_SELF)
        try:
            # /proc/self/fd/N: the directory we resolved confined, not a path the guest controls.
            syscalls.inotify_add_watch(self._inotify, f"/proc/self/fd/{fd}", watch)
        except OSError:
            pass
        finally:
            posix.close(fd)

    def drain(self) -> None:
        """Read the pending change events (what changed is looked up, not taken from them)."""
        if self._inotify < 0:
            return
        try:
            while posix.read(self._inotify, 65536):
                pass
        except BlockingIOError:
            pass

    def fileno(self) -> int:
        if self._inotify < 0:
            self._inotify = _inotify()
            self._watch()
        return self._inotify

    def _empty_dir(self) -> int:
        if self._empty is None:
            import tempfile  # random, shutil and more: only for a directory without journal files

            made = tempfile.mkdtemp(prefix="nsdash-empty-")
            try:
                self._empty = posix.open(made, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC)
            finally:
                posix.rmdir(made)
        return self._empty

    def close(self) -> None:
        for fd in (self._inotify, self._empty):
            if fd is not None and fd >= 0:
                posix.close(fd)


_HEX = frozenset(b"0123456789abcdef")


def _is_boot_id(raw: bytes) -> bool:
    """32 lowercase hex digits, as journald writes _BOOT_ID (no re: its import costs every verb)."""
    return len(raw) == 32 and _HEX.issuperset(raw)


def _inotify() -> int:
    from nsdash.system import syscalls  # ctypes: only for a reader that follows

    return syscalls.inotify_init1()


RECHECK_MS = 100
# Lines a source keeps in `skipped` (each reason once): a guest can make a planted file change at
# every recheck, and each reopen gives its reasons again, the sizes in them new each time.
MAX_SKIPPED = 256
COREDUMP_MESSAGE_ID = "fc2e22bc6ee647b6b90729ab34a250b1"


class Boot(Frozen):
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

    def __init__(self, directory: str | Path | JournalDir, filters: Filters | None = None,
                 machine: str | None = None, detail: bool = False, only: tuple[str, ...] | None = None,
                 follow: bool = True) -> None:
        self.directory = posix.fspath(directory)
        self.only = only  # fetch just these fields (cat needs one; fetching all 20 costs 2.5x)
        self.filters = filters or Filters()
        self.machine = machine
        self.detail = detail
        self.skipped: list[str] = []
        self._skip_seen: set[str] = set()
        self._confined = _ConfinedFiles(directory, follow) if isinstance(directory, JournalDir) else None
        if self._confined is None:
            for path in journal_files(self.directory):
                why = check_journal_file(path)
                if why:
                    self._skip(f"{path}: {why}, skipped")
        found: list[str] = []
        try:
            self._r = self._open_reader(found)
        except (OSError, ValueError) as e:
            if self._confined is not None:
                self._confined.close()
            raise NsdashError(f"cannot open the journal in {self.directory}: {e}",
                              "check the directory holds journal files and is readable") from e
        finally:
            self._skip(*found)
        self._seen_any = False
        self._empty_match = False
        self._last_cursor: str | None = None
        self._apply_filters()

    def _open_reader(self, skipped: list[str] | None = None) -> _reader._Reader:
        if self._confined is not None:
            return self._confined.reader(skipped)
        return _open(self.directory)

    # ------------------------------------------------------------ boots

    def boots(self) -> list[Boot]:
        """The boots in this journal, oldest first (reads no entry data)."""
        r = self._open_reader()
        try:
            spans = []
            for raw in r.query_unique("_BOOT_ID"):
                if not _is_boot_id(raw):
                    continue  # a guest writes its journal files: any bytes; journalctl's boots are 128-bit IDs
                r.flush_matches()
                r.add_match(b"_BOOT_ID=" + raw)
                r.seek_head()
                if not r._next():
                    continue
                first = r._get_realtime()
                r.seek_tail()
                last = r._get_realtime() if r._previous() else first
                spans.append((first, last, raw.decode("ascii")))
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
            from nsdash.system.wildcard import fnmatchcase  # -u with a glob only

            present = {v.decode("utf-8", "replace") for v in self._r.query_unique("_SYSTEMD_UNIT")}
            names += sorted(u for u in present if any(fnmatchcase(u, g) for g in globs))
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
            self._skip(f"{self.directory}: an unreadable entry ({e.strerror or e}), skipped")
            return None
        return Entry(realtime, fields, self.machine)

    def _step(self, forward: bool = True) -> bool:
        try:
            return bool(self._r._next() if forward else self._r._previous())
        except OSError as e:
            self._skip(f"{self.directory}: reading stopped early ({e.strerror or e})")
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
        if self._seen_any and self._confined is not None:
            self._remember()

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
        if self._seen_any and self._confined is not None:
            self._remember()

    # ------------------------------------------------------------ following

    def fileno(self) -> int:
        """Readable when the journal changed (the Reader's inotify fd); then call read_new()."""
        if self._confined is not None:
            return self._confined.fileno()
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
        if self._confined is not None:
            return RECHECK_MS
        t = self._r.get_timeout_ms()
        return RECHECK_MS if t is None or t < 0 else min(int(t), RECHECK_MS)

    def read_new(self) -> list[Entry]:
        """Entries appended since the last read; handles rotation and vacuuming (sd-journal reopens)."""
        if self._confined is not None:
            self._confined.drain()
            self._reopen_if_changed()
        else:
            try:
                self._r.process()
            except OSError as err:
                self._skip(f"{self.directory}: {err.strerror or err}")
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
        if out and self._confined is not None:
            self._remember()
        return out

    def _skip(self, *lines: str) -> None:
        """Note why files or entries were skipped: each reason once, at most MAX_SKIPPED of them
        (then one line saying further ones are not listed), as every reopen gives them again."""
        for line in lines:
            if line in self._skip_seen:
                continue
            if len(self._skip_seen) >= MAX_SKIPPED:
                if len(self.skipped) == MAX_SKIPPED:
                    self.skipped.append(f"{self.directory}: more files or entries skipped, not listed")
                return
            self._skip_seen.add(line)
            self.skipped.append(line)

    def _remember(self) -> None:
        """Note where we are, for a reopen after the files changed."""
        try:  # noqa: SIM105  (contextlib imports collections and functools: off this verb's path)
            self._last_cursor = self._r._get_cursor()
        except OSError:
            pass

    def _reopen_if_changed(self) -> None:
        """A confined directory's files came or went: a new reader, positioned after the last entry read."""
        assert self._confined is not None
        if not self._confined.changed():
            return
        if self._last_cursor is None and self._seen_any:
            self._remember()
        found: list[str] = []
        try:
            fresh = self._confined.reader(found)
        except (OSError, ValueError) as e:
            found.append(f"{self.directory}: {getattr(e, 'strerror', None) or e}")
            return
        finally:
            self._skip(*found)
        self._r.close()
        self._r = fresh
        self._apply_filters()
        if self._last_cursor is None:
            self._seen_any = False  # read_new starts from the head
            return
        self._r.seek_cursor(self._last_cursor)
        if self._step() and not self._r.test_cursor(self._last_cursor):
            self._r._previous()  # the entry we stood on is gone: stand before the next one

    def close(self) -> None:
        self._r.close()
        if self._confined is not None:
            self._confined.close()

    def __enter__(self) -> JournalSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
