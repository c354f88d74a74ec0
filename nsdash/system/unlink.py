"""Unlinking several files at once, for teardowns that wait on the disk.

Where /run is on disk (ext4 without a journal, mounted with `discard`, as on this project's
test hosts), unlinking a file whose data has been written back frees its blocks with a
synchronous discard (ext4_free_blocks -> blkdev_issue_discard): each such unlink waits 1-5 ms
for the device, one after the other.  A machine's state entry holds four such files (its
console log, the log's index, state.json, the seccomp filter), so a stopping machine's tool
exited 10-15 ms after its PID 1 where systemd-nspawn, which keeps no such files, took 1-4 ms.
The waits are the device's, not the CPU's, and iput() runs after the directory's lock is
dropped, so the unlinks overlap when each has a thread of its own.

Only files whose data is on the disk get one.  ext4 allocates a file's blocks when it
writes the data back (about 30 s after it was written: vm.dirty_expire_centisecs), and
counts the blocks it has reserved meanwhile in st_blocks: such a file frees nothing to
discard and unlinks in a few microseconds, as do sockets and empty files.  A machine that
ran for less than that (every `spawn ... /bin/true`, most boots to a poweroff) leaves only
such files, and its teardown started three threads for nothing: 1.2-1.8 ms at the median
(0.2-8.9) against 30 us for the seven unlinks one by one, on a loaded 2-core host where each
thread waits to be scheduled.  FIEMAP tells them apart: a first extent marked DELALLOC (or
none) has nothing on the disk; a filesystem that cannot say (tmpfs) has no discards either.

`_thread` rather than threading: the spawn path imports no threading (machines/supervisor).
"""

from __future__ import annotations

import _thread
import contextlib
import os
import stat

from nsdash.system import syscalls


def unlink_together(paths: list[str]) -> None:
    """Unlink every one of PATHS and return when all are done: those with no data on the disk
    (sockets, empty files, data not yet written back) one by one, the others all at once (a
    thread each but the first, which the caller takes).  A path that cannot be unlinked (gone
    already, a directory) is passed over, as each caller's own loop did."""
    heavy = []
    for path in paths:
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if st.st_blocks and stat.S_ISREG(st.st_mode) and _on_disk(path):
            heavy.append(path)
        else:
            _unlink(path)
    _unlink_in_threads(heavy)


def _on_disk(path: str) -> bool:
    """Whether the regular file PATH has data on the disk, which its unlink frees (and discards)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False  # (its unlink will say whether it can go)
    try:
        flags = syscalls.fiemap_first_flags(fd)
    except OSError:
        return False  # no FIEMAP here (tmpfs): no blocks to discard either
    finally:
        os.close(fd)
    return flags is not None and not flags & syscalls.FIEMAP_EXTENT_DELALLOC


def _unlink_in_threads(paths: list[str]) -> None:
    done = []
    for path in paths[1:]:
        lock = _thread.allocate_lock()
        lock.acquire()
        try:
            _thread.start_new_thread(_unlink_then_release, (path, lock))
        except RuntimeError:  # no thread to be had: unlink it here
            lock.release()
            _unlink(path)
            continue
        done.append(lock)
    if paths:
        _unlink(paths[0])
    for lock in done:
        lock.acquire()


def _unlink_then_release(path: str, lock: _thread.LockType) -> None:
    try:
        _unlink(path)
    finally:
        lock.release()


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
