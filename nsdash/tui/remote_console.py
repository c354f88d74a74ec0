"""A far machine's console in the dashboard's console pane (`nsdash -H A -H B`, then `a`).

The pane reads any console through the Session protocol of
tui/console/connection.py (read, send, resize, close).  FarPtySession is
one for any far verb on a far PTY; RemoteConsole is the far side's own
`nsdash login MACHINE` on a far PTY of the pane's size, carried by a Stream (nsdash.remote.stream: one verb on its own ssh
connection, so a console that floods never holds up the host's machine
list).  Keys go to that PTY as typed; the pane keeps ctrl+] for itself, so
the far login's ^]^]^] is never needed: leaving the pane closes the stream
and the far side hangs the login up.

What comes back is the far login's terminal output: the guest's bytes as
they are.  They go into the pane's terminal model (pyte) only, as a local
console's do; ssh's own stderr stays in the Stream's connection (its last
line names a lost connection).  A login that fails on the far side (no such
machine) ends with a status other than 0 and its last line becomes the
pane's reason, escaped.
"""

from __future__ import annotations

import contextlib
import subprocess
from typing import Any

from nsdash.errors import NsdashError
from nsdash.remote.stream import Stream
from nsdash.remote.target import Target
from nsdash.system.ready import readable
from nsdash.system.text import escape

CONNECT_TIMEOUT = 20.0  # seconds for the far side to greet before the pane says the host is unreachable
CLOSE_GRACE = 0.5  # seconds ssh has to end by itself once its input closes, before SIGTERM (the UI waits)
TAIL = 4096  # bytes of the console's last output kept, for the reason a failed login gives
TERM = "xterm"  # what the pane's terminal model (pyte) understands, as for a local PTY session


class FarPtySession:
    """A far verb (ARGV) on a far PTY, read and written as a local console session is: what the
    console pane shows for a far machine's console (RemoteConsole), and would for any far verb
    that is a terminal program (gdb, once a far machine's processes can be picked)."""

    def __init__(self, target: Target, argv: list[str], rows: int, cols: int,
                 timeout: float = CONNECT_TIMEOUT) -> None:
        self.target = target
        self.stream = Stream(target, argv, tty=(rows, cols), term=TERM, timeout=timeout)
        self.tail = bytearray()

    def read(self, timeout: float | None = None) -> tuple[bytes, list[dict[str, Any]]] | None:
        """What the far verb wrote ((b'', []) when nothing came within TIMEOUT), None once it has
        ended; RemoteError when the connection is lost, NsdashError (its last line) when it failed."""
        if self.stream.code is None and not readable(self.stream.fds(), timeout):
            return b"", []
        got = self.stream.pump()
        if got is None:
            if self.stream.code:
                raise NsdashError(f"{self.target}: {failure_line(bytes(self.tail), self.stream.code)}",
                                  f"check it with 'nsdash -H {self.target} list'")
            return None
        data = got.get(1, b"") + got.get(2, b"")
        if data:
            self.tail = (self.tail + data)[-TAIL:]
        return data, []

    def send(self, data: bytes) -> None:
        self.stream.write(data)

    def resize(self, rows: int, cols: int) -> None:
        self.stream.resize(rows, cols)

    def close(self) -> None:
        """End the far verb: ssh's input closes (the far side hangs up and reaps it); an ssh that
        does not end at once (a host that dropped) is terminated, so the pane never waits long."""
        proc = self.stream.conn.proc
        if proc.poll() is not None:
            return
        with contextlib.suppress(OSError, ValueError):
            assert proc.stdin is not None
            proc.stdin.close()
        try:
            proc.wait(CLOSE_GRACE)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class RemoteConsole(FarPtySession):
    """MACHINE's console on TARGET: the far side's `nsdash login MACHINE`."""

    def __init__(self, target: Target, machine: str, rows: int, cols: int, timeout: float = CONNECT_TIMEOUT) -> None:
        super().__init__(target, ["login", machine], rows, cols, timeout)
        self.machine = machine


def failure_line(tail: bytes, code: int) -> str:
    """Why a far login ended with CODE: the last line it wrote (escaped: it is the far host's text)."""
    lines = [line.strip() for line in tail.decode(errors="replace").replace("\r", "\n").split("\n") if line.strip()]
    last = escape(lines[-1]) if lines else ""
    if last.startswith("nsdash: "):
        last = last[len("nsdash: "):]
    return last or f"login exited {code}"
