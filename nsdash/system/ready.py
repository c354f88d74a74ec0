"""Waiting for descriptors to be ready, without select()'s limit.

select() refuses any descriptor numbered 1024 or more (FD_SETSIZE) with
ValueError.  A process that raises its descriptor limit (the dashboard's and
cgtop's sampler keep a counter file open per cgroup) can get pipes past it,
and a worker waiting on them then dies on its first wait.  poll() has no such
limit; wait() and readable() keep select()'s way of answering.
"""

from __future__ import annotations

import errno
import os
import select

TYPE_CHECKING = False  # mypy takes this as true; at run time typing and collections stay unimported
if TYPE_CHECKING:
    from collections.abc import Collection

_READ = select.POLLIN | select.POLLPRI
_ENDED = select.POLLHUP | select.POLLERR  # reported whatever was asked: ready, as select() says


def wait(read: Collection[int], write: Collection[int] = (),
         timeout: float | None = None) -> tuple[list[int], list[int]]:
    """(those of READ ready to read, those of WRITE ready to write), waiting at most TIMEOUT
    seconds (None: until one is).  A descriptor at its end or in error counts as ready (the read
    or write then says so), as with select(); a closed one raises OSError(EBADF), as select() does."""
    poller = select.poll()
    for fd in {*read, *write}:
        poller.register(fd, (_READ if fd in read else 0) | (select.POLLOUT if fd in write else 0))
    ms = None if timeout is None else max(0.0, timeout * 1000)  # poll() rounds a fraction up
    readable: list[int] = []
    writable: list[int] = []
    for fd, events in poller.poll(ms):
        if events & select.POLLNVAL:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        if fd in read and events & (_READ | _ENDED):
            readable.append(fd)
        if fd in write and events & (select.POLLOUT | _ENDED):
            writable.append(fd)
    return readable, writable


def readable(fds: Collection[int], timeout: float | None = None) -> list[int]:
    """Those of FDS ready to read (or at their end), waiting at most TIMEOUT seconds (None: until one is)."""
    return wait(fds, (), timeout)[0]
