"""Unlinking several files at once, for teardowns that wait on the disk.

Where /run is on disk (ext4 without a journal, mounted with `discard`, as on this project's
test hosts), unlinking a file whose data has been written back frees its blocks with a
synchronous discard (ext4_free_blocks -> blkdev_issue_discard): each such unlink waits 1-5 ms
for the device, one after the other.  A machine's state entry holds four such files (its
console log, the log's index, state.json, the seccomp filter), so a stopping machine's tool
exited 10-15 ms after its PID 1 where systemd-nspawn, which keeps no such files, took 1-4 ms.
The waits are the device's, not the CPU's, and iput() runs after the directory's lock is
dropped, so the unlinks overlap when each has a thread of its own.  Only files that hold
blocks get one (lstat's st_blocks; ext4 counts blocks reserved for data not yet written
back too, which then free nothing to discard): sockets and empty files go at once.  On a
tmpfs /run a thread costs about 0.1 ms against an unlink of a few microseconds.

`_thread` rather than threading: the spawn path imports no threading (machines/supervisor).
"""

from __future__ import annotations

import _thread
import contextlib
import os


def unlink_together(paths: list[str]) -> None:
    """Unlink every one of PATHS and return when all are done: those that hold no blocks
    (sockets, empty files) one by one, the others all at once (a thread each but the first,
    which the caller takes).  A path that cannot be unlinked (gone
    already, a directory) is passed over, as each caller's own loop did."""
    heavy = []
    for path in paths:
        try:
            blocks = os.lstat(path).st_blocks
        except OSError:
            continue
        if blocks:
            heavy.append(path)
        else:
            _unlink(path)
    _unlink_in_threads(heavy)


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
