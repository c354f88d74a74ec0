"""A host program on a PTY of its own, as a console session (gdb in the dashboard's console pane).

It speaks the Session protocol of connection.py (read, send, resize, close),
so the console pane and its terminal model show it as they show a machine's
console.  The program gets the PTY as its controlling terminal (util-linux's
`setsid -c`), so ctrl+c in the pane is SIGINT to it, as in a terminal.
close() first sends FAREWELL (for gdb: interrupt, detach, quit), so the
program lets go of what it holds before it is made to end.

The master is waited on with poll(2): the dashboard holds many descriptors
(a counter file per cgroup), so it may be numbered past select's FD_SETSIZE.
It is non-blocking: a write to a PTY whose program stopped reading would wait
for good, even past the program's end and the master's close (the write holds
the PTY), so send() waits for room a WRITE_WAIT at a time and gives up once
the session closes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import struct
import subprocess
import termios
import threading
import time
from typing import Any

WRITE_WAIT = 0.1  # s send() waits for room at a time, before it looks whether the session closed


class PtySession:
    def __init__(self, argv: list[str], rows: int, cols: int, farewell: bytes = b"",
                 env: dict[str, str] | None = None) -> None:
        self.farewell = farewell
        master, slave = os.openpty()
        try:
            _set_size(slave, rows, cols)
            environment = dict(os.environ if env is None else env)
            environment["TERM"] = "xterm"  # what the pane's terminal model (pyte) understands
            self.process = subprocess.Popen(["setsid", "-c", *argv], stdin=slave, stdout=slave, stderr=slave,
                                            env=environment, close_fds=True)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self.master = master
        self._closing = False
        # Held by send() around each wait and write, and by close() around closing the master:
        # a send never writes to a descriptor number that close() let go (it may be reused).
        self._write_lock = threading.Lock()

    def read(self, timeout: float | None = None) -> tuple[bytes, list[dict[str, Any]]] | None:
        """What the program wrote ((b'', []) when nothing came within TIMEOUT), None once it has gone."""
        if self.master < 0:
            return None
        if not _readable(self.master, timeout):
            return b"", []
        try:
            data = os.read(self.master, 65536)
        except BlockingIOError:
            return b"", []
        except OSError:  # EIO: every holder of the PTY's other side has gone
            return None
        return (data, []) if data else None

    def send(self, data: bytes) -> None:
        """Write DATA, waiting while the PTY is full (its program not reading) until it is written
        or the session closes (then the rest is dropped)."""
        view = memoryview(data)
        while view and not self._closing:
            with self._write_lock:
                if self.master < 0 or not _writable(self.master, WRITE_WAIT):
                    continue
                with contextlib.suppress(BlockingIOError):  # room for less than POLLOUT promised
                    view = view[os.write(self.master, view):]

    def resize(self, rows: int, cols: int) -> None:
        if self.master >= 0:
            _set_size(self.master, rows, cols)

    def close(self, grace: float = 3.0) -> None:
        """Say goodbye, wait up to GRACE s, then end the program (SIGTERM, then SIGKILL) and reap it."""
        self._closing = True  # a send waiting for room gives up (within WRITE_WAIT)
        if self.process.poll() is None and self.farewell:
            with contextlib.suppress(OSError):  # BlockingIOError: a program that does not read it is ended below
                for part in self.farewell.split(b"\0"):  # NUL: a pause for the program to act
                    with self._write_lock:
                        os.write(self.master, part)
                    time.sleep(0.1)
        deadline = time.monotonic() + grace
        while self.process.poll() is None and time.monotonic() < deadline:
            self._drain()
            time.sleep(0.02)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.process.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(1.0)
        self.process.wait()
        with self._write_lock:
            if self.master >= 0:
                os.close(self.master)
                self.master = -1

    def _drain(self) -> None:
        """Read what the program writes while it ends, so a full PTY never blocks its exit."""
        with contextlib.suppress(OSError):
            while _readable(self.master, 0) and os.read(self.master, 65536):
                pass


def _readable(fd: int, timeout: float | None) -> bool:
    """Whether FD has something to read (or its end) within TIMEOUT s (None: wait until it does)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(timeout, 0) * 1000))


def _writable(fd: int, timeout: float) -> bool:
    """Whether FD takes a write within TIMEOUT s."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return bool(poller.poll(max(timeout, 0) * 1000))


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
