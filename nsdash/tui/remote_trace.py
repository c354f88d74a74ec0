"""The trace pane for a machine on another host (-H): the far `nsdash trace` read over a Stream.

The far side runs strace itself (`nsdash trace -M NAME --all`, a unit, or
--host-pid for a process of the far host's cgroup tree) and already speaks
in the machine's terms: its stdout is trace lines, its stderr strace's and
nsdash's messages.  FarTrace turns them back into strace.Line (the pane's
one line type) and is driven like StraceRun by the trace screen's worker:
poll(), finished, stop(), returncode.  The bytes are the far side's:
escaped here, as any guest text, before the pane shows them.
"""

from __future__ import annotations

import threading

from nsdash.errors import NsdashError
from nsdash.inside.debugging.strace import Line
from nsdash.remote.stream import Stream
from nsdash.remote.target import Target
from nsdash.system.ready import readable
from nsdash.system.text import escape, escape_bytes
from nsdash.tui.remote_journal import LineSplitter

KINDS = {1: "trace", 2: "message"}


def trace_argv(machine: str, host_pid: int | None, unit: str | None, options: list[str]) -> list[str]:
    """The far verb for a subject: a process (by the far host's PID), a unit, or the whole machine."""
    if host_pid is not None:
        what = ["--host-pid", str(host_pid)]
    elif unit is not None:
        what = [unit]
    else:
        what = ["--all"]
    return ["trace", "-M", machine, *what, "--", *options]


class FarTrace:
    """One far `nsdash trace`; poll() hands back its lines, stop() hangs it up (strace detaches there)."""

    def __init__(self, target: Target, argv: list[str], timeout: float = 10.0) -> None:
        self.target, self.argv, self.timeout = target, argv, timeout
        self.stream: Stream | None = None
        self.returncode: int | None = None
        self.finished = False
        self._stop = threading.Event()  # set from any thread; the stream is closed by the poller's
        self._split = {fd: LineSplitter() for fd in KINDS}

    def connect(self) -> None:
        """Start the far verb (blocking, up to TIMEOUT for the far side's greeting; RemoteError after)."""
        if self.stream is None:
            self.stream = Stream(self.target, self.argv, timeout=self.timeout)

    def __enter__(self) -> FarTrace:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.stream is not None:
            self.stream.close()

    def stop(self) -> None:
        self._stop.set()

    def poll(self, timeout: float) -> list[Line]:
        """The lines that came within TIMEOUT seconds, maybe none; `finished` once the far verb ended."""
        if self.finished or self.stream is None:
            return []
        if self._stop.is_set():
            self.stream.close()  # the far side hangs the verb up: nsdash there detaches strace
            self.finished = True
            return []
        try:
            ready = readable(self.stream.fds(), timeout)
            got = self.stream.pump() if ready else {}
        except NsdashError as e:
            self.finished = True
            return [Line("message", escape(e.oneline()))]
        if got is None:
            self.finished = True
            self.returncode = self.stream.code
            return []
        out: list[Line] = []
        for fd, data in sorted(got.items()):
            out += [Line(KINDS[fd], escape_bytes(raw, tab=True)) for raw in self._split[fd].feed(data)]
        return out
