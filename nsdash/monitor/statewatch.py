"""Whether nsdash's machine entries may have changed, from one inotify descriptor.

At rest the dashboard looked at every entry each second (a stat of its state file,
an open, flock and close of its lock: 4 system calls a machine, after each 1 s
sleep all cache-cold).  The kernel says it instead: a watch on the machines
directory (entries made by rename, removed) and one on each entry, which sees
the state file replaced (written, then renamed into place) and the lock file
closed by a writer.  Only the supervisor opens the lock for writing, so its
death, however it dies, is an IN_CLOSE_WRITE when the kernel drops its last
reference, which is also when its flock is released; lookers open the lock
read-only and reads raise no event, so the dashboard's own look is silent.
With nothing queued, one read(2) answering EAGAIN is the whole cost.
"""

from __future__ import annotations

import contextlib
import os

from nsdash.system import syscalls as sc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

_ROOT_MASK = sc.IN_CREATE | sc.IN_DELETE | sc.IN_MOVED_FROM | sc.IN_MOVED_TO | sc.IN_DELETE_SELF | sc.IN_MOVE_SELF
_ENTRY_MASK = _ROOT_MASK | sc.IN_CLOSE_WRITE | sc.IN_ATTRIB


class StateWatch:
    """`quiet()` is True only when nothing happened under ROOT since `watch()` last ran.

    The caller, on False: `watch(list_names)` first, then its look at the entries it names,
    so a change after the watches are in place is queued for the next `quiet()` and one
    before them is in the look.  Where inotify fails (no descriptor, no machines directory
    yet), never quiet."""

    def __init__(self, root: str) -> None:
        self.root = root
        try:
            self._fd = sc.inotify_init1()
        except OSError:
            self._fd = -1
        self._watching = False  # the last watch() put the root's watch in place

    def quiet(self) -> bool:
        if self._fd < 0 or not self._watching:
            return False
        happened = False
        while True:  # drained: everything queued is answered by the caller's next look
            try:
                if not os.read(self._fd, 65536):
                    return not happened
            except BlockingIOError:
                return not happened
            except OSError:
                return False  # whatever it was, the caller looks
            happened = True

    def watch(self, list_names: Callable[[], list[str]]) -> list[str]:
        """Watches on the root, then on each entry LIST_NAMES() names, which it returns (an entry
        already watched keeps its watch; a removed one's is gone with it, one made again under
        its name gets its own).  Listed once the root's watch is in place: an entry made before
        the listing is in it, one made after is queued (listed first, one made in between was
        in neither, and its changes went unseen while the watch stayed quiet)."""
        if self._fd < 0:
            return list_names()
        try:
            sc.inotify_add_watch(self._fd, self.root, _ROOT_MASK | sc.IN_ONLYDIR)
        except OSError:
            self._watching = False  # no machines directory yet (or no watches left): look each time
            return list_names()
        self._watching = True
        names = list_names()
        for name in names:
            try:
                sc.inotify_add_watch(self._fd, os.path.join(self.root, name), _ENTRY_MASK | sc.IN_ONLYDIR)
            except OSError:
                self._watching = False  # gone meanwhile (the root's event is queued) or no room
        return names

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
