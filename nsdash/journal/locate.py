"""Find a machine's logs the way systemd does.

A machine's journal lives in a directory named after its machine ID: the
tree's /etc/machine-id, or the UUID the launcher passed with --uuid.  Where:

- TREE/var/log/journal/ID        persistent journal in the tree
- /proc/LEADER/root/run/log/journal/ID and .../var/log/journal/ID
                                  while it runs (volatile journal; ephemeral trees)
- HOST/var/log/journal/ID         with --link-journal=host|guest (a bind or a symlink)

The same directory reached by two of those paths is listed once.  Machines
whose init keeps no journal have the supervisor's console log instead.

Which ID: the one the supervisor recorded in the machine's state entry when
it started it (the ID its journal was linked by), never the guest's
/etc/machine-id read again later; a stopped image's is its tree's.  The host's
directory of an ID is offered only to the machine that holds that ID
(launcher/inuse.IdClaim), or to a stopped one when no running machine holds
it: a guest that copies another machine's ID into its /etc/machine-id does not
get that machine's -j host journal.

Every one of those directories is the guest's to fill (the host's own
directory too, under --link-journal=host, where it is bound into the
machine), so each is a JournalDir: a directory confined to a root, whose
files nsdash.journal.reader opens one by one, never following a symlink and
never a FIFO or device: a guest's /var/log/journal/ID pointing at the host's
journal shows nothing, not the host's journal.
"""

from __future__ import annotations

import errno
import posix

from nsdash.errors import MachineNotFound, NsdashError
from nsdash.machines import state as st
from nsdash.system import bareos, confined
from nsdash.system.frozen import Frozen
from nsdash.system.idfiles import normalise_id
from nsdash.system.paths import image_dirs, machine_path

TYPE_CHECKING = False  # paths are strings here: pathlib (with re, enum, urllib) is off `journal -n 20`
if TYPE_CHECKING:
    import os
    from pathlib import Path

HOST_JOURNAL = "/var/log/journal"
JOURNAL_SUFFIXES = (".journal", ".journal~")
MAX_JOURNAL_FILES = 256  # journald keeps 100 by default (SystemMaxFiles=); each costs us an fd
MAX_DIR_ENTRIES = 65536  # looked at per listing: a guest can make millions, the recheck runs every 100 ms


class JournalDir(Frozen):
    """A journal directory INNER (a relative path) confined to ROOT: opened with
    RESOLVE_IN_ROOT, so neither `..` nor a symlink in INNER leaves ROOT."""

    root: str | os.PathLike[str]
    inner: str

    @property
    def path(self) -> str:
        """Where it is on the host, for messages (never opened as such)."""
        return bareos.join(posix.fspath(self.root), self.inner)

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.path

    def exists(self) -> bool:
        """True if it is a directory inside ROOT."""
        return confined.is_dir(self.root, self.inner)

    def open(self) -> int:
        """An fd on the directory (OSError if it is not one, or not inside ROOT)."""
        root_fd = confined.open_root(self.root)
        try:
            return confined.open_in_root(root_fd, self.inner, directory=True)
        finally:
            posix.close(root_fd)

    def signature(self) -> tuple[tuple[str, int, int], ...]:
        """(name, inode, size) of each journal file entry, not followed: changes when files come
        or go (one directory listing and an lstat each, no opens); () if the directory is gone."""
        try:
            dir_fd = self.open()
        except OSError:
            return ()
        try:
            return _signature(dir_fd, self._names(dir_fd))
        finally:
            posix.close(dir_fd)

    def scan(self) -> tuple[tuple[tuple[str, int, int], ...], list[tuple[str, int]], list[str]]:
        """signature(), then the journal files opened, on one opening and one listing of the
        directory: ((name, inode, size)..., [(name, fd)...] sorted by name, why others were skipped).

        A file is opened only if it is a regular file named *.journal(~) in this very
        directory: a symlink (to the host's journal, say), a FIFO or a device is skipped."""
        dir_fd = self.open()
        try:
            names = self._names(dir_fd)
            listed = _signature(dir_fd, names)  # first: a file that changes while we open shows next time
            return (listed, *self._open_files(dir_fd, names))
        finally:
            posix.close(dir_fd)

    @staticmethod
    def _names(dir_fd: int) -> list[str]:
        return sorted(n for n in confined.list_dir(dir_fd, ".", limit=MAX_DIR_ENTRIES) if n.endswith(JOURNAL_SUFFIXES))

    def _open_files(self, dir_fd: int, names: list[str]) -> tuple[list[tuple[str, int]], list[str]]:
        opened: list[tuple[str, int]] = []
        skipped: list[str] = []
        try:
            if len(names) > MAX_JOURNAL_FILES:
                skipped.append(f"{self}: {len(names) - MAX_JOURNAL_FILES} journal files over {MAX_JOURNAL_FILES}, "
                               "the oldest skipped")
                names = names[-MAX_JOURNAL_FILES:]
            for name in names:
                try:
                    fd = confined.open_in_root(dir_fd, name, nofollow=True)
                except OSError as e:
                    skipped.append(f"{self}/{name}: {_refusal(e)}, skipped")
                    continue
                why = check_journal_fd(fd)
                if why:
                    posix.close(fd)
                    skipped.append(f"{self}/{name}: {why}, skipped")
                    continue
                opened.append((name, fd))
        except BaseException:
            for _, fd in opened:
                posix.close(fd)
            raise
        return opened, skipped


def _signature(dir_fd: int, names: list[str]) -> tuple[tuple[str, int, int], ...]:
    out = []
    for name in names:
        try:
            st = posix.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            continue
        out.append((name, st.st_ino, st.st_size))
    return tuple(out)


def _refusal(e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return "a symlink, not followed"
    if e.errno == errno.EINVAL:
        return "not a regular file"
    return f"unreadable ({e.strerror or e})"


class MachineLogs(Frozen):
    """Where one machine's logs are.  journal_dirs may be empty; console_log may be None."""

    name: str
    machine_id: str | None
    journal_dirs: tuple[JournalDir, ...]
    console_log: str | None
    running: bool

    @property
    def has_logs(self) -> bool:
        return bool(self.journal_dirs) or self.console_log is not None


def machine_id_of(root: str | Path | None, uuid: str | None = None) -> str | None:
    """ROOT's /etc/machine-id (read confined), else the UUID the launcher passed (as systemd does)."""
    from nsdash.machines import identity  # an image never started: its tree's ID

    return (identity.machine_id(root) if root is not None else None) or normalise_id(uuid)


def _leader_alive(pid: int | None) -> bool:
    if not pid or pid <= 0:
        return False
    try:
        posix.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _supervised(mdir: str) -> bool:
    """The supervisor's lock, not the recorded PID, says a machine runs (PIDs get reused)."""
    if not bareos.exists(bareos.join(mdir, st.LOCK_FILE)):
        return True  # a state entry from elsewhere (or older): trust the PID check
    from nsdash.machines.state import supervisor_alive

    try:
        return supervisor_alive(mdir)
    except OSError:
        return False


def journal_dirs(machine_id: str, tree: str | Path | None, leader: int | None,
                 host_journal: str | Path = HOST_JOURNAL, host_dir: bool = True) -> tuple[JournalDir, ...]:
    """Every existing journal directory of the machine, each directory once (the host's
    HOST_JOURNAL/MACHINE_ID only if HOST_DIR: the machine owns that ID, see host_dir_owned)."""
    candidates: list[JournalDir] = []
    if leader:
        # While it runs, its own view is the truth: the tree's directory may be a bare
        # mount point under --link-journal=host, or hidden by an ephemeral overlay.
        root = f"/proc/{leader}/root"
        candidates += [JournalDir(root, f"var/log/journal/{machine_id}"),
                       JournalDir(root, f"run/log/journal/{machine_id}")]
    elif tree is not None:
        candidates.append(JournalDir(tree, f"var/log/journal/{machine_id}"))
    # The host's own directory, a real one only (--link-journal=host binds it into the
    # machine); --link-journal=guest's symlink there points into the tree, listed above.
    # Never the host's own journal: a guest that writes the host's ID into its
    # machine-id does not get the host's journal shown as its own.
    if host_dir and machine_id != _host_machine_id():
        candidates.append(JournalDir(host_journal, machine_id))
    found: list[JournalDir] = []
    seen: set[tuple[int, int]] = set()
    for d in candidates:
        try:
            fd = d.open()
        except OSError:
            continue
        try:
            st = posix.fstat(fd)
        finally:
            posix.close(fd)
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        found.append(d)
    return tuple(found)


def _host_machine_id() -> str | None:
    from nsdash.machines import identity  # only where the host has a directory of the ID

    return identity.machine_id("/")


def locate(name: str, host_journal: str | Path = HOST_JOURNAL) -> MachineLogs:
    """Where machine NAME's logs are: a running (or stopped) nsdash machine, else an image."""
    mdir = machine_path(name)
    state = st.read_state(mdir)  # PermissionError goes up: not "no logs", the caller is not root
    if state is None or state.name != name:
        # NAME became a path: '' or '..' is the state directory's own, 'x/../web' web's.  A
        # machine's entry names it as spawn checked it; any other NAME meets the rule here
        # (only here: the launcher's package is not the journal's import on its way).
        from nsdash.launcher.names import check_machine_name

        check_machine_name(name)
    tree: str | Path | None = None
    leader: int | None = None
    uuid = None
    if state is not None:
        tree = state.root or None
        leader = state.leader if state.leader and state.leader > 0 else None
        uuid = normalise_id(state.uuid)
    elif not bareos.isdir(mdir):
        tree = next((d / name for d in image_dirs() if (d / name).is_dir()), None)
        if tree is None:
            raise MachineNotFound(f"no machine named '{name}'",
                                  "see 'nsdash list' for machines, or read a journal directory with -D DIR")
    running = _leader_alive(leader) and _supervised(mdir)
    if not running:
        leader = None
    # A machine nsdash started has the ID its supervisor recorded (its tree's at start, or
    # --uuid, or the session's); only an image never started is asked for its tree's.
    machine_id = uuid if state is not None else machine_id_of(tree)
    # Whose the host's directory of the ID is matters only when there is one (the claim's
    # check imports the launcher's cgroup walk).
    owned = (machine_id is not None and bareos.lexists(bareos.join(host_journal, machine_id))
             and host_dir_owned(name, machine_id, running))
    dirs = journal_dirs(machine_id, tree, leader, host_journal, owned) if machine_id else ()
    console = bareos.join(mdir, st.CONSOLE_LOG)
    return MachineLogs(name, machine_id, dirs, console if bareos.isfile(console) else None, running)


def host_dir_owned(name: str, machine_id: str, running: bool) -> bool:
    """Whether the host's journal directory of MACHINE_ID is machine NAME's to show: NAME
    holds the ID (it runs and claimed it at start), or NAME is stopped and no running
    machine holds it.  A running machine that does not hold its ID (an ephemeral copy that
    links no journal) has no host directory."""
    from nsdash.launcher import inuse  # pathlib, contextlib: only for a host directory of the ID

    holder = inuse.id_holder(machine_id)
    return holder == name if running else holder is None


def require_logs(logs: MachineLogs) -> MachineLogs:
    if not logs.has_logs:
        raise NsdashError(f"machine '{logs.name}' has no journal and no console log",
                          "boot it with -j (--link-journal) or a tree whose init runs journald")
    return logs


# ---------------------------------------------------------------- file checks

# The header (systemd's journal-def.h), little-endian, read by slicing (struct is two more
# imports on every `nsdash journal`): signature[8], two le32 flag words, state, 7 reserved bytes,
# four 128-bit IDs, then le64s from offset 88: header_size, arena_size, data_hash_table_offset,
# its size, field_hash_table_offset, its size, tail_object_offset (136), ..., entry_array_offset (176).
# sd-journal refuses a file shorter than the fields up to n_data (its HEADER_SIZE_MIN, 208).
HEADER_SIZE_MIN = 208
SIGNATURE = b"LPKSHHRH"


def check_journal_file(path: str | Path) -> str | None:
    """Why libsystemd would refuse PATH (None if it looks whole); see check_journal_fd."""
    try:
        fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC | posix.O_NONBLOCK)
    except OSError as e:
        return f"unreadable ({e.strerror})"
    try:
        return check_journal_fd(fd)
    finally:
        posix.close(fd)


def check_journal_fd(fd: int) -> str | None:
    """Why libsystemd would refuse the journal file open on FD (None if it looks whole).

    The header tests sd-journal makes before mapping a file for reading: signature,
    a whole minimal header, header + arena no larger than the file, the tail object
    inside it and 8-byte aligned offsets.  A file journald is still creating fails
    them.  Checking first lets us say which files were skipped rather than letting
    the library drop them silently (or, given descriptors, refuse them all).
    """
    try:
        head = posix.pread(fd, HEADER_SIZE_MIN, 0)
        size = posix.fstat(fd).st_size
    except OSError as e:
        return f"unreadable ({e.strerror})"
    if len(head) < HEADER_SIZE_MIN or size < HEADER_SIZE_MIN:
        return "truncated (no complete header)"

    def le64(offset: int) -> int:
        return int.from_bytes(head[offset:offset + 8], "little")

    header_size, arena_size, tail_object = le64(88), le64(96), le64(136)
    offsets = le64(104) | le64(120) | tail_object | le64(176)  # data and field tables, tail, entry array
    if head[:8] != SIGNATURE:
        return "not a journal file (bad signature)"
    if header_size < HEADER_SIZE_MIN:
        return "not a journal file (header too small)"
    if header_size + arena_size > size:
        return f"truncated ({size} of {header_size + arena_size} bytes)"
    if tail_object > header_size + arena_size or offsets % 8:
        return "being written (its header is not complete yet)"
    return None


def journal_files(directory: str | Path) -> list[str]:
    try:
        names = posix.listdir(directory)
    except OSError:
        return []
    return [bareos.join(directory, n) for n in sorted(names) if n.endswith(JOURNAL_SUFFIXES)]
