"""Several hosts watched at once: what the dashboard keeps per remote host.

A HostWatch keeps one `nsdash _watch` running on its host, on a Stream (one
ssh connection) of its own, and reads the line it pushes every interval
(nsdash.remote.watch): the machine list, and the bounded cgroup tree and
cgtop rows.  So a watched host runs one far-side process for the whole
session instead of a `list -o json` each refresh.  The interval travels on
the watch's stdin (+ and - in the dashboard), and so does "a line now" after
an action.  A far nsdash without `_watch` (an older one) is asked for `list
-o json` every interval over a Session instead, machines only.

A host that fails (ssh ends, the far side sends nothing for a while, or
something that is not a watch line) is marked unreachable with the reason,
its last state kept, and a new connection is tried after backoff(failures)
seconds: 1, 2, 4 ... 30.  Each host has its own thread, so one slow or dead
host never holds up another; readers only take the latest state (a lock, no
waiting on the network).

Actions on a remote machine go through run_verb(): a Session of their own,
the same client the command line uses (nsdash.remote.session).
"""

from __future__ import annotations

import contextlib
import json
import threading
from typing import Any

from nsdash.errors import NsdashError
from nsdash.remote import watch as w
from nsdash.remote.client import last_words
from nsdash.remote.protocol import RemoteError
from nsdash.remote.session import Session
from nsdash.remote.ssh import SshProcess
from nsdash.remote.stream import Stream
from nsdash.remote.target import Target
from nsdash.system.ready import readable

BACKOFF_FIRST, BACKOFF_MOST = 1.0, 30.0
HOST_TIMEOUT = 10.0  # seconds a host has to greet or answer before it counts as unreachable
SILENCE_INTERVALS = 3  # a watch that sends no line for this many intervals (at least HOST_TIMEOUT) is lost
STDERR_KEEP = 8192  # bytes of the far side's stderr kept for the reason it ended
STOP_WAIT = 15.0  # seconds stop() waits for a watch thread once its ssh is killed (it ends within ~1 s)


def backoff(failures: int) -> float:
    """Seconds to wait before reconnecting after FAILURES failures in a row: 1, 2, 4 ... at most 30."""
    if failures <= 0:
        return 0.0
    return min(BACKOFF_MOST, BACKOFF_FIRST * 2 ** min(failures - 1, 16))


def list_machines(session: Session) -> list[dict[str, Any]]:
    """The machines on SESSION's host, as `nsdash list -o json` there gives them."""
    (result,) = session.run(["list", "-o", "json"])
    if result.code != 0:
        raise NsdashError(f"{session.target}: {last_words(result.stderr, f'list exited {result.code}')}")
    try:
        machines = json.loads(result.stdout)
    except (ValueError, RecursionError):  # (a document nested past the parser's depth)
        machines = None
    if not isinstance(machines, list) or not all(isinstance(m, dict) for m in machines):
        raise NsdashError(f"{session.target} answered 'list -o json' with something else",
                          "is the same nsdash installed there?")
    return machines


def run_verb(target: Target, argv: list[str], timeout: float = 120.0) -> None:
    """Run one verb (poweroff, reboot, terminate...) on TARGET; NsdashError with its last line if it fails."""
    with Session(target, timeout) as session:
        (result,) = session.run(argv)
    if result.code != 0:
        raise NsdashError(f"{target}: {last_words(result.stderr, f'{argv[0]} exited {result.code}')}")


class HostWatch:
    """TARGET's machines, cgroups and cgtop rows, kept fresh by a thread; state() and view()
    for the latest."""

    def __init__(self, target: Target, interval: float = 1.0, timeout: float = HOST_TIMEOUT) -> None:
        self.target = target
        self._interval = interval
        self.timeout = timeout
        self._lock = threading.Lock()
        self._machines: list[dict[str, Any]] = []
        self._view: w.Watch | None = None
        self._error: str | None = None
        self._fresh = False  # at least one answer since start
        self.connects = 0  # connections opened (tests read it)
        self.lines = 0  # watch lines taken (tests read it)
        self._fresh_since_connect = False  # a line came on this connection (failures start again)
        self.legacy = False  # the far nsdash has no _watch: list -o json is polled instead
        self._ssh: SshProcess | None = None  # the running ssh, for stop() to cut short
        self._stream: Stream | None = None
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self._poke = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"nsdash-host-{target}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """End the thread and its ssh: a host that hangs must not hold up quitting, so ssh is
        killed rather than waited for (its far side ends with the connection)."""
        self.stop_soon()
        ssh = self._ssh
        if ssh is not None and ssh.poll() is None:
            with contextlib.suppress(OSError):
                ssh.kill()  # also while it connects or waits for the greeting
        if self._thread.ident is not None:
            self._thread.join(timeout=STOP_WAIT)

    def stop_soon(self) -> None:
        """Ask the thread to end (it does at its next wait or line); stop() waits for it."""
        self._stop.set()
        self._poke.set()

    @property
    def interval(self) -> float:
        return self._interval

    @interval.setter
    def interval(self, seconds: float) -> None:
        """A new pace: the running watch hears of it at once (it sends a line then)."""
        self._interval = seconds
        self._tell(f"{seconds:g}\n".encode())

    def refresh_now(self) -> None:
        """Ask again at once (after an action): a sleeping retry is not cut short."""
        self._poke.set()
        self._tell(b"\n")

    def state(self) -> tuple[list[dict[str, Any]], str | None, bool]:
        """The last machine list, why the host is unreachable (None: it answered last time), and
        whether it ever answered."""
        with self._lock:
            return self._machines, self._error, self._fresh

    def view(self) -> w.Watch | None:
        """The last watch line (its cgroups and rows); None before the first, or in legacy mode.
        The same object until a new line came: a reader may cache what it made of it."""
        with self._lock:
            return self._view

    def _tell(self, data: bytes) -> None:
        with self._send_lock:
            stream = self._stream
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.write(data)

    def _started(self, ssh: SshProcess) -> None:
        self._ssh = ssh
        if self._stop.is_set():  # stop() came between ssh's start and this
            ssh.kill()

    def _failed(self, e: Exception) -> None:
        why = e.oneline() if isinstance(e, NsdashError) else f"{type(e).__name__}: {e}"
        with self._lock:
            self._error = why

    def _answered(self, machines: list[dict[str, Any]], view: w.Watch | None) -> None:
        with self._lock:
            self._machines, self._view, self._error, self._fresh = machines, view, None, True

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self.connects += 1
                if self.legacy:
                    self._poll_list()
                else:
                    self._follow()
            except (NsdashError, OSError) as e:
                if self._stop.is_set():
                    break
                failures = 0 if self._fresh_since_connect else failures
                failures += 1
                self._failed(e)
                self._stop.wait(backoff(failures))

    def _follow(self) -> None:
        """Run `_watch` on the host and take its lines until it fails (raises) or we stop."""
        self._fresh_since_connect = False
        argv = [w.VERB, "--interval", f"{self._interval:g}"]
        stream = Stream(self.target, argv, stdin=True, timeout=self.timeout, started=self._started)
        with self._send_lock:
            self._stream = stream
        reader = w.LineReader()
        stderr = bytearray()
        try:
            while not self._stop.is_set():
                silence = max(self.timeout, SILENCE_INTERVALS * self._interval)
                if not readable(stream.fds(), silence):
                    raise RemoteError(f"{self.target} sent nothing for {silence:.0f} s",
                                      "check the host; the connection is dropped")
                got = stream.pump() or {}
                stderr = (stderr + got.get(2, b""))[-STDERR_KEEP:]
                for line in reader.feed(got.get(1, b"")):
                    view = w.parse(line)
                    self.lines += 1
                    self._fresh_since_connect = True
                    self._answered(list(view.machines), view)
                if stream.code is not None:  # (its exit may come with its last words: no more select)
                    self._ended(stream.code, bytes(stderr))
                    return
        finally:
            with self._send_lock:
                self._stream = None
            stream.close()

    def _ended(self, code: int | None, stderr: bytes) -> None:
        """The far `_watch` ended: an nsdash without it goes to polling; else say why."""
        text = stderr.decode(errors="replace")
        if code == 2 and not self._fresh_since_connect and f"'{w.VERB}' is not a verb" in text:
            self.legacy = True  # the loop goes on at once, polling
            return
        raise RemoteError(f"{self.target}: {last_words(stderr, f'{w.VERB} exited {code}')}")

    def _poll_list(self) -> None:
        """`list -o json` every interval over one Session (a far nsdash without _watch)."""
        self._fresh_since_connect = False
        with Session(self.target, self.timeout, started=self._started) as session:
            while not self._stop.is_set():
                machines = list_machines(session)
                self._fresh_since_connect = True
                self._answered(machines, None)
                self._poke.wait(self._interval)
                self._poke.clear()
