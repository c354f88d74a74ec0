"""A guest's bus socket read within one call's deadline and byte budget, and the budget's size.

BUS_REPLY_MAX bounds what the host reads from a guest's bus for one call, wherever
it reads: the supervisor's bus-calls (busproxy) and the longest answer line they make
(protocol), its health check (health), a command's own blocking connection (inside/bus:
`systemctl -M M` without a supervisor that makes bus-calls, the dashboard's workers)
and the relay in front of dbus-fast's async bus (inside/busrelay: the job verbs,
`systemctl -M M start/stop ...`).  Guarded is the socket those blocking readers see.
They live here, not in busproxy or protocol, so that a command imports neither the
supervisor's worker (threading, queue, signal) nor the control protocol's codec for
them: this module imports only errno and time.
"""

from __future__ import annotations

import errno
import time

TYPE_CHECKING = False  # typing stays unimported at run time (the verbs' path)
if TYPE_CHECKING:
    import socket

BUS_REPLY_MAX = 1024 * 1024  # a bus-call's reply line, and the guest's D-Bus bytes read for it


class ReplyTooLarge(OSError):
    """The guest sent more than the call's byte budget."""

    def __init__(self) -> None:
        super().__init__(errno.EMSGSIZE, "the machine's answer is too large")


class Guarded:
    """The guest's bus socket, read and written within one call's deadline and byte budget.

    dbuswire and dbus-fast's unmarshaller see a socket; each recv() gets the time left
    until the deadline, so a guest sending a byte every few seconds still ends at it.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deadline = 0.0
        self.budget = 0

    def arm(self, deadline: float, budget: int) -> None:
        self.deadline = deadline
        self.budget = budget

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _timeout()
        self.sock.settimeout(left)
        return left

    def connect(self, address: str) -> None:
        self._left()
        self.sock.connect(address)

    def settimeout(self, _timeout: float | None) -> None:
        return None  # the call's deadline rules, not dbuswire's per-read timeout

    def sendall(self, data: bytes) -> None:
        self._left()
        self.sock.sendall(data)

    def recv(self, size: int) -> bytes:
        self._left()
        try:
            data = self.sock.recv(size)
        except TimeoutError:
            raise _timeout() from None
        self.budget -= len(data)
        if self.budget < 0:
            raise ReplyTooLarge()
        return data

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()


def _timeout() -> TimeoutError:
    # dbuswire (dbus-fast's parts) is loaded by every reader of a guarded socket already;
    # imported here so that importing this module does not load it (protocol's clients)
    from nsdash.system import dbuswire

    return dbuswire.timed_out("the machine's bus did not answer in time")
