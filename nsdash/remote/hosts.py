"""Several hosts watched at once: what the dashboard keeps per remote host.

A HostWatch owns one Session (one ssh connection) to its host and, in a
thread of its own, asks it for the machine list (`list -o json` on a
channel) every interval.  A host that fails (ssh ends, the far side stops
answering within the timeout) is marked unreachable with the reason, its
last machine list kept, and a new session is tried after backoff(failures)
seconds: 1, 2, 4 ... 30.  Each host has its own thread, so one slow or dead
host never holds up another; readers only take the latest state (a lock, no
waiting on the network).

Actions on a remote machine go through run_verb(): a Session of their own,
the same client the command line uses (nsdash.remote.session).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
from typing import Any

from nsdash.errors import NsdashError
from nsdash.remote.session import Session
from nsdash.remote.target import Target
from nsdash.system.text import escape

BACKOFF_FIRST, BACKOFF_MOST = 1.0, 30.0
HOST_TIMEOUT = 10.0  # seconds a host has to greet or answer before it counts as unreachable
STOP_WAIT = 15.0  # seconds stop() waits for a watch thread once its ssh is killed (it ends within ~1 s)


def backoff(failures: int) -> float:
    """Seconds to wait before reconnecting after FAILURES failures in a row: 1, 2, 4 ... at most 30."""
    if failures <= 0:
        return 0.0
    return min(BACKOFF_MOST, BACKOFF_FIRST * 2 ** min(failures - 1, 16))


def _last_line(data: bytes, fallback: str) -> str:
    lines = [line.strip() for line in data.decode(errors="replace").splitlines() if line.strip()]
    return escape(lines[-1]) if lines else fallback


def list_machines(session: Session) -> list[dict[str, Any]]:
    """The machines on SESSION's host, as `nsdash list -o json` there gives them."""
    (result,) = session.run(["list", "-o", "json"])
    if result.code != 0:
        raise NsdashError(f"{session.target}: {_last_line(result.stderr, f'list exited {result.code}')}")
    try:
        machines = json.loads(result.stdout)
    except ValueError:
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
        raise NsdashError(f"{target}: {_last_line(result.stderr, f'{argv[0]} exited {result.code}')}")


class HostWatch:
    """TARGET's machine list, kept fresh by a thread; state() for the latest."""

    def __init__(self, target: Target, interval: float = 1.0, timeout: float = HOST_TIMEOUT) -> None:
        self.target = target
        self.interval = interval
        self.timeout = timeout
        self._lock = threading.Lock()
        self._machines: list[dict[str, Any]] = []
        self._error: str | None = None
        self._fresh = False  # at least one answer since start
        self.connects = 0  # sessions opened (tests read it)
        self._ssh: subprocess.Popen | None = None  # the running ssh, for stop() to cut short
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
        """Ask the thread to end (it does at its next wait); stop() waits for it."""
        self._stop.set()
        self._poke.set()

    def refresh_now(self) -> None:
        """Ask again at once (after an action): a sleeping retry is not cut short."""
        self._poke.set()

    def state(self) -> tuple[list[dict[str, Any]], str | None, bool]:
        """The last machine list, why the host is unreachable (None: it answered last time), and
        whether it ever answered."""
        with self._lock:
            return self._machines, self._error, self._fresh

    def _wait(self, seconds: float) -> None:
        self._poke.wait(seconds)
        self._poke.clear()

    def _started(self, ssh: subprocess.Popen) -> None:
        self._ssh = ssh
        if self._stop.is_set():  # stop() came between ssh's start and this
            ssh.kill()

    def _run(self) -> None:
        session: Session | None = None
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    if session is None:
                        self.connects += 1
                        session = Session(self.target, self.timeout, started=self._started)
                    machines = list_machines(session)
                except (NsdashError, OSError) as e:
                    if session is not None:
                        with contextlib.suppress(OSError):
                            session.close()
                        session = None
                    failures += 1
                    delay = backoff(failures)
                    why = e.oneline() if isinstance(e, NsdashError) else f"{type(e).__name__}: {e}"
                    with self._lock:
                        self._error = why
                    self._stop.wait(delay)
                    continue
                failures = 0
                with self._lock:
                    self._machines, self._error, self._fresh = machines, None, True
                self._wait(self.interval)
        finally:
            if session is not None:
                with contextlib.suppress(OSError):
                    session.close()
