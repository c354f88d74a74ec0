"""The machine view and the units screen of a machine on another host (-H), over ssh.

What the local screens read from this host's files and the machine's bus is
asked of the far side's nsdash instead, the verbs the command line runs there:
`status NAME -o json` (the limits in force), `systemctl -M NAME list-units
--all -o json` / `list-unit-files -o json` (the units table), `systemctl -M
NAME status UNIT` (a unit's status text), `journal -M NAME -u UNIT -b` (its
lines) and `systemctl -M NAME start|stop|restart|reload UNIT`.  Each screen
keeps one Session (one ssh connection, nsdash.remote.session), opened when
first needed, opened again after it failed, closed with the screen.

The far side's answers are another host's text: a value of the wrong shape
is left out or makes the whole answer an error, strings are cut to a bound,
and the screens escape what they show (nsdash.system.text), as for local guests.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from nsdash.errors import NsdashError
from nsdash.inside import render
from nsdash.inside.units import UnitFile, UnitInfo
from nsdash.inside.view import FILES_TTL, UnitsSnapshot
from nsdash.remote.client import last_words
from nsdash.remote.hosts import HOST_TIMEOUT
from nsdash.remote.session import OUTPUT_MAX, Result, Session
from nsdash.remote.ssh import SshProcess
from nsdash.remote.target import Target

TEXT_MAX = 1024  # characters of a unit name, state or description kept
DETAIL_MAX = 256 * 1024  # bytes of a unit's status text shown (its last journal lines are in it)
LINE_MAX = 4096  # characters of one journal line of a unit kept
UNITS_MAX = 20_000  # units of one answer kept (systemd's own limit on units is far above a screen's use)
UNITS_OUTPUT_MAX = 32 << 20  # bytes of a units answer: UNITS_MAX rows of 1.6 KiB, far above a real row
LIMITS = ("CPUQuota", "MemoryMax", "MemoryHigh", "TasksMax")  # what the machine view shows (machines/units.py)
JOB_KINDS = frozenset({"start", "stop", "restart", "reload"})
_NUMBER = re.compile(r"[0-9]{1,20}")
_QUOTA = re.compile(r"[0-9]{1,9}(\.[0-9]{1,3})?%")


class FarSession:
    """One Session to TARGET for a screen's workers: one verb at a time, reopened after a failure."""

    def __init__(self, target: Target, timeout: float = HOST_TIMEOUT) -> None:
        self.target = target
        self.timeout = timeout
        self._lock = threading.Lock()
        self._session: Session | None = None
        self._ssh: SshProcess | None = None
        self.closed = False

    def run(self, argv: list[str], timeout: float | None = None, limit: int = OUTPUT_MAX) -> Result:
        """ARGV's result; LIMIT: the bytes it may write (Session.run)."""
        with self._lock:
            if self.closed:
                raise NsdashError(f"{self.target}: the screen was closed")
            try:
                if self._session is None:
                    self._session = Session(self.target, self.timeout, started=self._started)
                self._session.timeout = timeout or self.timeout
                (result,) = self._session.run(argv, limit=limit)
                if self.closed:  # closed while this ran: close() left the session to us
                    self._drop()
                return result
            except (NsdashError, OSError) as e:
                self._drop()
                if isinstance(e, OSError):
                    raise NsdashError(f"{self.target}: {e.strerror or e}") from None
                raise

    def _started(self, ssh: SshProcess) -> None:
        self._ssh = ssh
        if self.closed:
            ssh.kill()

    def _drop(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(OSError):  # the connection is gone either way
                session.close()

    def close(self) -> None:
        """End the connection without waiting for a verb in flight (the UI thread calls this): its
        ssh is killed and reaped here, and the worker that waited on it gets an error nobody is
        shown.  Reaped here, not left to that worker: a verb whose whole answer was already in
        the pipe ends without reading again, and its killed ssh stayed a zombie for the
        dashboard's lifetime (one per screen closed while a verb ran)."""
        self.closed = True
        ssh = self._ssh
        if ssh is not None and ssh.poll() is None:
            with contextlib.suppress(OSError):
                ssh.kill()
            ssh.ended(1.0)  # SIGKILL: at once, unless it is stuck in the kernel
        if self._lock.acquire(blocking=False):
            try:
                self._drop()
            finally:
                self._lock.release()


def _failure(target: Target, result: Result, what: str) -> NsdashError:
    """A far verb's failure as one line: its last words on stderr (escaped), else its status."""
    return NsdashError(f"{target}: {what}: {last_words(result.stderr, f'exit status {result.code}')}")


def _json(target: Target, result: Result, what: str) -> Any:
    try:
        return json.loads(result.stdout)
    except (ValueError, RecursionError):
        raise NsdashError(f"{target} answered '{what}' with something else",
                          "is the same nsdash installed there?") from None


def _str(value: object) -> str | None:
    return value[:TEXT_MAX] if isinstance(value, str) else None


def unit_of(row: object) -> UnitInfo | None:
    """One row of the far side's `list-units -o json` (render.units_json); None if it is not one."""
    if not isinstance(row, dict):
        return None
    name, load, active, sub = (_str(row.get(k)) for k in ("unit", "load", "active", "sub"))
    if not name or load is None or active is None or sub is None:
        return None
    description = _str(row.get("description")) or ""
    return UnitInfo(name, description, load, active, sub, "", None, _str(row.get("job")))


def unit_file_of(row: object) -> UnitFile | None:
    """One row of `list-unit-files -o json` (render.unit_files_json); None if it is not one."""
    if not isinstance(row, dict):
        return None
    name, path, state = (_str(row.get(k)) for k in ("unit_file", "path", "state"))
    return UnitFile(name, path, state) if name and path is not None and state is not None else None


def limits_of(status: object) -> dict[str, str]:
    """The limits in `status NAME -o json`'s answer that the machine view shows; {} for none."""
    found = status.get("limits") if isinstance(status, dict) else None
    if not isinstance(found, dict):
        return {}
    out = {}
    for key in LIMITS:
        value = found.get(key)
        text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
        # the view computes with them (bytes, tasks) or shows them beside usage (a quota): only
        # what a limit looks like is taken, never other text
        if (_QUOTA if key == "CPUQuota" else _NUMBER).fullmatch(text):
            out[key] = text
    return out


@dataclass(frozen=True)
class FarStatus:
    """A far machine's facts the machine view shows: its limits, its leader's PID there."""

    limits: dict[str, str]
    leader: int | None


class RemoteMachine:
    """What the machine view asks of the far side about MACHINE on TARGET's host."""

    def __init__(self, target: Target, machine: str, timeout: float = HOST_TIMEOUT) -> None:
        self.target, self.machine = target, machine
        self.session = FarSession(target, timeout)

    def status(self) -> FarStatus:
        """What `status MACHINE -o json -n 0` says there: the limits in force, its leader."""
        result = self.session.run(["status", self.machine, "-o", "json", "-n", "0"])
        if result.code != 0:
            raise _failure(self.target, result, "status")
        found = _json(self.target, result, "status -o json")
        leader = found.get("leader") if isinstance(found, dict) else None
        return FarStatus(limits_of(found),
                         leader if isinstance(leader, int) and not isinstance(leader, bool) and leader > 0 else None)

    def close(self) -> None:
        self.session.close()


class LogLine(str):
    """A line of the far side's journal output, as the units screen takes unit lines (short())."""

    __slots__ = ()

    def short(self) -> str:
        return str(self)


class Detail:
    """A unit's status text as the far side's `systemctl status` wrote it (the screen escapes it)."""

    def __init__(self, text: str) -> None:
        self._text = text

    def text(self) -> str:
        return self._text


class RemoteMachineUnits:
    """The units of MACHINE on TARGET's host, for the units screen (the interface of
    nsdash.inside.view.MachineUnits); KEY is the machine's HOST/MACHINE name in the dashboard."""

    def __init__(self, target: Target, machine: str, key: str, timeout: float = HOST_TIMEOUT) -> None:
        self.target, self.machine, self.name = target, machine, key
        self.session = FarSession(target, timeout)
        self._files: tuple[float, tuple[UnitFile, ...]] | None = None

    def _systemctl(self, *argv: str, timeout: float | None = None, ok: tuple[int, ...] = (0,),
                   limit: int = OUTPUT_MAX) -> Result:
        result = self.session.run(["systemctl", "-M", self.machine, *argv], timeout, limit)
        if result.code not in ok:
            raise _failure(self.target, result, f"systemctl {argv[0]}")
        return result

    def snapshot(self, with_files: bool = False) -> UnitsSnapshot:
        rows = _json(self.target, self._systemctl("list-units", "--all", "-o", "json", limit=UNITS_OUTPUT_MAX), "list-units -o json")
        if not isinstance(rows, list):
            raise NsdashError(f"{self.target} answered 'list-units -o json' with something else")
        units = [u for u in (unit_of(r) for r in rows[:UNITS_MAX]) if u is not None]
        fresh = self._files is not None and time.monotonic() - self._files[0] < FILES_TTL
        if with_files and not fresh:
            found = _json(self.target, self._systemctl("list-unit-files", "-o", "json", limit=UNITS_OUTPUT_MAX), "list-unit-files -o json")
            files = [f for f in (unit_file_of(r) for r in (found[:UNITS_MAX] if isinstance(found, list) else []))
                     if f is not None]
            self._files = (time.monotonic(), tuple(files))
        units.sort(key=lambda u: render.sort_key(u.name))
        return UnitsSnapshot(self.name, tuple(units), self._files[1] if with_files and self._files else ())

    def detail(self, unit: str, lines: int = 10) -> Detail:
        # status exits 3 for a unit that is not active, as systemctl does: still its status
        result = self._systemctl("status", "-n", str(lines), "--", unit, ok=(0, 3))
        return Detail(result.stdout[:DETAIL_MAX].decode(errors="replace"))

    def journal(self, unit: str, lines: int = 200) -> tuple[LogLine, ...]:
        result = self.session.run(["journal", "-M", self.machine, "-u", unit, "-b", "-n", str(lines)])
        if result.code != 0:
            raise _failure(self.target, result, "journal")
        text = result.stdout.decode(errors="replace")
        return tuple(LogLine(line[:LINE_MAX]) for line in text.splitlines()[-lines:]
                     if line and line != "-- No entries --")

    def act(self, kind: str, unit: str, job_timeout: float = 120.0) -> None:
        if kind not in JOB_KINDS:
            raise NsdashError(f"'{kind}' is not a unit action", f"one of {', '.join(sorted(JOB_KINDS))}")
        self._systemctl(kind, "--", unit, timeout=job_timeout + 30)

    def forget_files(self) -> None:
        self._files = None

    def close(self) -> None:
        self.session.close()
