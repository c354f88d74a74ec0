"""A blocking facade over one machine's units for the dashboard's workers: one call, one snapshot.

Each call resolves the machine, opens its bus, does its work under the bus
deadline and closes it again, so a worker never holds a connection to a machine
that may power off between refreshes.  Everything returned is immutable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from nsdash.inside import procs, render, unitlog
from nsdash.inside import units as api
from nsdash.inside.bus import DEFAULT_TIMEOUT
from nsdash.inside.target import Target, resolve

FILES_TTL = 30.0


@dataclass(frozen=True)
class UnitsSnapshot:
    machine: str
    units: tuple[api.UnitInfo, ...]  # every loaded unit, sorted as systemctl sorts them
    files: tuple[api.UnitFile, ...] = ()  # with_files: installed unit files (loaded or not)

    def with_unloaded(self) -> tuple[api.UnitInfo, ...]:
        """The loaded units plus a dead row for every startable unit file systemd has not loaded."""
        loaded = {u.name for u in self.units}
        extra = [api.UnitInfo(f.name, f"({f.state} unit file, not loaded)", "-", "inactive", "dead", "", None, None)
                 for f in self.files
                 if f.name not in loaded and not f.name.split(".")[0].endswith("@") and f.state != "masked"]
        return tuple(sorted((*self.units, *extra), key=lambda u: render.sort_key(u.name)))

    @property
    def failed(self) -> int:
        return sum(1 for u in self.units if u.failed)


@dataclass(frozen=True)
class UnitDetail:
    machine: str
    status: api.UnitStatus
    processes: tuple[procs.UnitProcess, ...] | None
    log: tuple[unitlog.LogLine, ...]

    def text(self) -> str:
        """What `nsdash systemctl status` prints for the unit."""
        return render.status(self.status, processes=self.processes, log=self.log)


class MachineUnits:
    """The units of machine NAME; every method blocks for at most about `timeout` per bus call."""

    def __init__(self, name: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.name = name
        self.timeout = timeout
        self._files: tuple[float, tuple[api.UnitFile, ...]] | None = None  # (when, files)

    def _target(self) -> Target:
        return resolve(self.name)

    def snapshot(self, with_files: bool = False) -> UnitsSnapshot:
        """The loaded units; WITH_FILES adds the unit files, cached for FILES_TTL seconds because
        ListUnitFiles makes the machine's systemd scan every unit directory (about a second)."""
        fresh = self._files is not None and time.monotonic() - self._files[0] < FILES_TTL

        async def both(sd: api.Systemd) -> tuple[list[api.UnitInfo], list[api.UnitFile] | None]:
            return await sd.list_units(), (await sd.list_unit_files() if with_files and not fresh else None)

        rows, files = api.run(self._target(), both, self.timeout)
        if files is not None:
            self._files = (time.monotonic(), tuple(files))
        rows = sorted(rows, key=lambda u: render.sort_key(u.name))
        return UnitsSnapshot(self.name, tuple(rows), self._files[1] if with_files and self._files else ())

    def forget_files(self) -> None:
        """Fetch the unit files again on the next snapshot (after enable/disable or daemon-reload)."""
        self._files = None

    def detail(self, unit: str, lines: int = 10) -> UnitDetail:
        target = self._target()
        st = api.run(target, lambda sd: sd.status(unit), self.timeout)
        found = procs.unit_processes(target, st.control_group) if st.control_group else []
        log = unitlog.unit_lines(target, st.name, lines) if lines else []
        return UnitDetail(self.name, st, None if found is None else tuple(found), tuple(log))

    def journal(self, unit: str, lines: int = 200) -> tuple[unitlog.LogLine, ...]:
        """The unit's lines of the machine's current boot (what `journalctl -u UNIT -b` shows)."""
        return tuple(unitlog.unit_lines(self._target(), api.mangle(unit), lines))

    def act(self, kind: str, unit: str, job_timeout: float = 120.0) -> api.JobOutcome:
        """start/stop/restart/reload UNIT and wait for the job; JobFailed says why it failed."""
        return api.run(self._target(), lambda sd: sd.job(kind, unit, job_timeout=job_timeout), self.timeout)

    def unit_of_pid(self, pid: int) -> str:
        """The unit of a process given by its PID as the machine sees it."""
        return api.run(self._target(), lambda sd: sd.find_unit_of_pid(pid), self.timeout)
