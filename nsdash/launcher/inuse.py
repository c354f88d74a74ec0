"""One machine per name and per tree, decided by the cgroups, serialised by flock.

The truth for "running" is a machine's cgroup: populated means running,
whatever lock or state file says (a supervisor killed with SIGKILL leaves both
behind, or neither).  Two things make that truth safe to act on:

- start_guard() serialises starts: an flock on a per-name lock file and one on
  the tree's directory, held from "is it running?" until the new PID 1 has
  pivoted into the tree (or failed).  Two `start`s of one name at the same
  instant: the second waits, then finds the first's cgroup populated.  The
  locks die with their holder, so they never go stale.
- tree_users() finds the machines whose processes have the tree as their root
  (/proc/PID/root, compared by device and inode), from the populated
  machine.slice cgroups: a second machine is refused on a tree whose first
  machine's processes still live, even when its supervisor is gone.

An --ephemeral machine runs on an overlay, so its root is not the tree: any
number of them may share a tree, and they are not seen as its users.

- IdClaim holds a machine ID for one running machine (an flock on
  .ids/ID, which names the holder): a second machine whose tree claims an ID
  that a running machine has is refused (--ephemeral machines that link no
  journal share their tree's ID, as many copies of one image do, and claim none).  The journal under
  /var/log/journal/ID (--link-journal=host) belongs to the machine holding
  ID, and a guest that copies another machine's ID into its own
  /etc/machine-id must not get that machine's journal.  systemd-machined
  refuses only a second machine of one name; nsdash refuses the ID too.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from nsdash.errors import MachineExists
from nsdash.launcher import names
from nsdash.launcher.treeusers import _machine_scopes, _pids, tree_users
from nsdash.system import cgroupfs, paths

SLICE = names.SLICE
LOCK_DIR = ".locks"
ID_DIR = ".ids"


def _lock_file(name: str) -> int:
    """Open and flock NAME's start lock, robust against a concurrent unlink."""
    directory = paths.state_root() / LOCK_DIR
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / name
    while True:
        # The directory stays (removing it would race with a concurrent start's mkdir).
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder before us unlinked it: lock the new one


def _release(fd: int, name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(paths.state_root() / LOCK_DIR / name)
    os.close(fd)


def drop_dead_lock(name: str) -> None:
    """Unlink NAME's start lock file if nobody holds it: a start killed while it held the lock
    (an abandoned start's supervisor, SIGKILLed) never reached _release."""
    path = paths.state_root() / LOCK_DIR / name
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.stat(path).st_ino == os.fstat(fd).st_ino:
            os.unlink(path)  # (while we hold it: a start that opens it next locks a new one)
    except OSError:
        pass  # held (a start is under way), or gone already
    finally:
        os.close(fd)


@contextlib.contextmanager
def start_guard(name: str, tree: str | Path, ephemeral: bool,
                layout: cgroupfs.Layout | None = None) -> Iterator[None]:
    """Hold the name's and the tree's start locks; refuse a tree a live machine runs on (LAYOUT:
    the host's cgroup hierarchies, if the caller has looked already)."""
    name_fd = _lock_file(name)
    tree_fd = -1
    try:
        tree_fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(tree_fd, fcntl.LOCK_EX)
    except OSError as e:
        if tree_fd >= 0:
            os.close(tree_fd)
        tree_fd = -1
        if e.errno not in (errno.ENOENT, errno.ENOTDIR, errno.EACCES):
            _release(name_fd, name)
            raise
        # A missing tree is reported by the plan, with a better message.
    try:
        users = tree_users(tree, layout, exclude=name)
        if users:
            raise MachineExists(f"directory {tree} is in use by running machine '{users[0]}'",
                                f"stop it first with 'nsdash terminate {users[0]}' (this also cleans "
                                "up after a dead supervisor)")
        yield
    finally:
        if tree_fd >= 0:
            os.close(tree_fd)
        _release(name_fd, name)


class IdClaim:
    """Machine ID ID held by machine NAME for as long as this object is open.

    The flock says the holder lives; the file's text names it.  A supervisor killed
    with SIGKILL leaves the file behind, unlocked: its name still counts while that
    machine's cgroup is populated (its guest still runs), as for start_guard."""

    def __init__(self, machine_id: str, name: str) -> None:
        self.machine_id = machine_id
        self.path = _id_path(machine_id)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder_name(fd)
                os.close(fd)
                raise _id_in_use(machine_id, holder) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # its holder unlinked it as we opened it: claim the new one
        holder = _holder_name(fd)
        if holder not in (None, name) and _populated(holder):
            os.close(fd)
            raise _id_in_use(machine_id, holder)
        os.ftruncate(fd, 0)
        os.pwrite(fd, name.encode(), 0)
        self._fd = fd

    def close(self) -> None:
        """Give the ID back (the file goes first, so nobody reads a stale name from it)."""
        if self._fd < 0:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = -1


def _id_path(machine_id: str) -> Path:
    if len(machine_id) != 32 or any(c not in "0123456789abcdef" for c in machine_id):
        raise ValueError(f"not a machine ID: {machine_id!r}")  # callers pass normalised IDs only
    return paths.state_root() / ID_DIR / machine_id


def _holder_name(fd: int) -> str | None:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        name = os.pread(fd, 256, 0).decode()
        return name if names.is_valid_hostname(name) else None
    return None


def _id_in_use(machine_id: str, holder: str | None) -> MachineExists:
    who = f"running machine '{holder}'" if holder else "a running machine"
    return MachineExists(f"machine ID {machine_id} is in use by {who}",
                         "give this tree its own ID (rm /etc/machine-id in it, then systemd-machine-id-setup "
                         f"--root=DIR){f', or stop {holder} first' if holder else ''}")


def id_holder(machine_id: str) -> str | None:
    """The name of the running machine that holds MACHINE_ID, or None (nobody, or not known)."""
    try:
        fd = os.open(_id_path(machine_id), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except (OSError, ValueError):
        return None
    try:
        holder = _holder_name(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return holder  # its supervisor holds it
        return holder if holder is not None and _populated(holder) else None
    finally:
        os.close(fd)


def _populated(name: str) -> bool:
    """Whether machine NAME's cgroup holds a process (its guest runs, supervisor or not)."""
    cg = _machine_scopes(cgroupfs.detect()).get(name)
    return cg is not None and bool(_pids(cg, 1))
