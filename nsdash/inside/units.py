"""A machine's own systemd (org.freedesktop.systemd1) over its bus: units, unit files, jobs.

`Systemd` is the async API (the dashboard awaits it in a worker); `run()` is the
thin synchronous wrapper the CLI uses.  Everything returned is a frozen
dataclass; unknown values are None.
"""

from __future__ import annotations

from nsdash.errors import NsdashError, UsageError
from nsdash.inside.bus import DEFAULT_TIMEOUT, BusCallError, MachineBus, plain
from nsdash.inside.target import Target
from nsdash.system.frozen import Frozen

TYPE_CHECKING = False  # typing, and the records as dataclasses, cost `systemctl` more than its own work
if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable, Callable, Coroutine, Iterable
    from typing import Any, TypeVar

    from dbus_fast import Message

SYSTEMD = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
PROPERTIES = "org.freedesktop.DBus.Properties"

UNIT_TYPES = ("service", "mount", "swap", "socket", "target", "device", "automount", "timer",
              "path", "slice", "scope")
UNIT_ROWS = "a(ssssssouso)"  # ListUnits' and its kin's reply
SLOW_CALL_FACTOR = 3  # deadline multiplier for calls that make systemd work: ListUnitFiles, Reload
JOB_MODES = ("replace", "fail", "isolate", "ignore-dependencies", "ignore-requirements")

if TYPE_CHECKING:
    T = TypeVar("T")


class UnitNotFound(NsdashError):
    """No unit of that name is loaded or can be loaded."""

    exit_code = 5  # systemctl's EXIT_NOTINSTALLED for start/stop of an unknown unit


class UnexpectedReply(NsdashError):
    """The machine's bus answered a call with a body of another shape than systemd sends."""


class JobFailed(NsdashError):
    """A start/stop/... job finished with a result other than 'done'."""

    def __init__(self, message: str, hint: str, outcome: JobOutcome) -> None:
        super().__init__(message, hint)
        self.outcome = outcome


# ---------------------------------------------------------------- records

class UnitInfo(Frozen):
    """One row of ListUnits."""

    name: str
    description: str
    load_state: str
    active_state: str
    sub_state: str
    following: str
    job_id: int | None
    job_type: str | None

    @property
    def type(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    @property
    def failed(self) -> bool:
        return self.active_state == "failed"

    @property
    def load_error(self) -> bool:
        return self.load_state in ("not-found", "bad-setting", "error", "masked")


class UnitFile(Frozen):
    """One row of ListUnitFiles."""

    name: str
    path: str
    state: str

    @property
    def type(self) -> str:
        return self.name.rsplit(".", 1)[-1]


class UnitStatus(Frozen):
    """The properties `status` shows, from one Properties.GetAll call."""

    name: str
    description: str
    load_state: str
    active_state: str
    sub_state: str
    load_error: str | None  # systemd's message when the unit failed to load
    fragment_path: str | None
    unit_file_state: str | None
    unit_file_preset: str | None
    documentation: tuple[str, ...]
    control_group: str | None  # relative to the machine's cgroup root
    main_pid: int | None  # as the machine sees it
    exec_main_pid: int | None
    exec_main_code: int | None  # CLD_EXITED=1, CLD_KILLED=2, CLD_DUMPED=3
    exec_main_status: int | None
    result: str | None  # "success", "exit-code", "signal", "timeout", ...
    active_enter_us: int | None  # realtime µs
    inactive_enter_us: int | None
    state_change_us: int | None
    tasks_current: int | None
    tasks_max: int | None
    memory_current: int | None
    cpu_usage_ns: int | None
    triggered_by: tuple[str, ...]

    @property
    def failed(self) -> bool:
        return self.active_state == "failed"

    @classmethod
    def from_properties(cls, name: str, props: dict[str, Any]) -> UnitStatus:
        def get(key: str) -> Any:
            value = props.get(key)
            return plain(value)

        def text(key: str) -> str | None:
            value = get(key)
            return value if isinstance(value, str) and value else None

        def number(key: str) -> int | None:
            # systemd reports "unset" as 0 for PIDs/timestamps and as UINT64_MAX for counters
            value = get(key)
            if not isinstance(value, int) or value in (0, 2**64 - 1):
                return None
            return value

        def counter(key: str) -> int | None:
            value = get(key)
            return None if not isinstance(value, int) or value == 2**64 - 1 else value

        def strings(key: str) -> tuple[str, ...]:
            value = get(key)  # (as) from systemd; anything from whatever else answers on its bus
            return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list | tuple) else ()

        load_error = get("LoadError")
        error_text = load_error[1] if isinstance(load_error, list | tuple) and len(load_error) > 1 else None
        error_text = error_text if isinstance(error_text, str) else None
        exec_code = number("ExecMainCode")
        return cls(
            name=text("Id") or name,
            description=text("Description") or name,
            load_state=text("LoadState") or "stub",
            active_state=text("ActiveState") or "inactive",
            sub_state=text("SubState") or "dead",
            load_error=error_text or None,
            fragment_path=text("FragmentPath"),
            unit_file_state=text("UnitFileState"),
            unit_file_preset=text("UnitFilePreset"),
            documentation=strings("Documentation"),
            control_group=text("ControlGroup"),
            main_pid=number("MainPID"),
            exec_main_pid=number("ExecMainPID"),
            exec_main_code=exec_code,
            exec_main_status=counter("ExecMainStatus") if exec_code else None,
            result=text("Result"),
            active_enter_us=number("ActiveEnterTimestamp"),
            inactive_enter_us=number("InactiveEnterTimestamp"),
            state_change_us=number("StateChangeTimestamp"),
            tasks_current=number("TasksCurrent") if "TasksCurrent" in props else None,
            tasks_max=number("TasksMax"),
            memory_current=number("MemoryCurrent"),
            cpu_usage_ns=number("CPUUsageNSec"),
            triggered_by=strings("TriggeredBy"),
        )


class JobOutcome(Frozen):
    """A job queued for a unit; result is None until it finished (or when not waited for)."""

    job_id: int
    job_path: str
    unit: str
    kind: str  # start, stop, restart, reload
    result: str | None  # done, canceled, timeout, failed, dependency, skipped

    @property
    def ok(self) -> bool:
        return self.result in (None, "done", "skipped")


class JobInfo(Frozen):
    """One row of ListJobs: a job queued or running in the machine."""

    job_id: int
    unit: str
    kind: str  # start, stop, ...
    state: str  # waiting, running


class InstallChange(Frozen):
    """One change EnableUnitFiles/DisableUnitFiles made: ('symlink', link, target) or ('unlink', link, '')."""

    kind: str
    path: str
    source: str


# ---------------------------------------------------------------- names

def mangle(name: str) -> str:
    """systemctl's shorthand: a name without a unit suffix means NAME.service."""
    if not name or "/" in name:
        raise UsageError(f"'{name}' is not a unit name", "name a unit such as sshd.service")
    suffix = name.rsplit(".", 1)[-1] if "." in name else ""
    if suffix in UNIT_TYPES or any(c in name for c in "*?["):
        return name
    return f"{name}.service"


def unit_object_path(name: str) -> str:
    """The object path at which systemd serves the unit NAME, as systemctl computes it: one round
    trip (GetAll there loads the unit, as LoadUnit would) instead of LoadUnit's two.

    systemd's bus label escaping: every byte but an ASCII letter or digit, and a digit in
    first place, becomes _ and two lowercase hex digits; the empty name is "_"."""
    label = "".join(chr(b) if chr(b).isascii() and chr(b).isalnum() and not (i == 0 and chr(b).isdigit())
                    else f"_{b:02x}" for i, b in enumerate(name.encode()))
    return f"{MANAGER_PATH}/unit/{label or '_'}"


def matches(name: str, patterns: Iterable[str]) -> bool:
    pats = list(patterns)
    if not pats:
        return True
    from nsdash.system.wildcard import fnmatchcase  # patterns only: list-units and status load a module less

    return any(fnmatchcase(name, p) for p in pats)


def filter_units(units: Iterable[UnitInfo], *, types: Iterable[str] = (), states: Iterable[str] = (),
                 patterns: Iterable[str] = (), all_units: bool = False) -> list[UnitInfo]:
    """systemctl list-units' selection: without --all, only active, failed or job-holding units."""
    types, states, patterns = set(types), set(states), list(patterns)
    chosen = []
    for u in units:
        if types and u.type not in types:
            continue
        if states and not states & {u.load_state, u.active_state, u.sub_state}:
            continue
        if not matches(u.name, patterns):
            continue
        if not all_units and not states and u.active_state == "inactive" and u.job_id is None:
            continue
        if not all_units and u.following:
            continue
        chosen.append(u)
    return sorted(chosen, key=lambda u: u.name)


def filter_unit_files(files: Iterable[UnitFile], *, types: Iterable[str] = (),
                      states: Iterable[str] = (), patterns: Iterable[str] = ()) -> list[UnitFile]:
    types, states, patterns = set(types), set(states), list(patterns)
    return sorted((f for f in files if (not types or f.type in types)
                   and (not states or f.state in states) and matches(f.name, patterns)),
                  key=lambda f: f.name)


# ---------------------------------------------------------------- the API

class Systemd:
    """The machine's service manager, over an open MachineBus."""

    def __init__(self, bus: MachineBus) -> None:
        self.bus = bus
        self._jobs_removed: dict[str, str] = {}  # job path -> result
        self._event: asyncio.Event | None = None  # made on first use: readers never import asyncio
        self._subscribed = False

    @property
    def _job_event(self) -> asyncio.Event:
        if self._event is None:
            import asyncio

            self._event = asyncio.Event()
        return self._event

    async def _manager(self, member: str, signature: str = "", body: list[Any] | None = None,
                       timeout: float | None = None, reply: str = "") -> list[Any]:
        return await self._call(MANAGER_PATH, MANAGER, member, signature, body, timeout, reply)

    async def _call(self, path: str, interface: str, member: str, signature: str = "",
                    body: list[Any] | None = None, timeout: float | None = None, reply: str = "") -> list[Any]:
        """The reply's body, checked to be of signature REPLY (the one systemd answers MEMBER with)."""
        try:
            answer = await self.bus.call(SYSTEMD, path, interface, member, signature, body or [], timeout)
        except BusCallError as e:
            if e.name in ("org.freedesktop.systemd1.NoSuchUnit", "org.freedesktop.systemd1.LoadFailed"):
                raise UnitNotFound(e.message.rstrip("."), f"see 'nsdash systemctl -M {self.bus.target.name} "
                                   "list-unit-files' for the units it has") from e
            if e.name == "org.freedesktop.DBus.Error.ServiceUnknown":
                raise BusCallError(e.name, f"machine '{self.bus.target.name}' has a bus but no systemd on it",
                                   "units can only be managed in machines booted with systemd") from e
            raise
        return self._expect(answer, reply, member)

    async def _get(self, path: str, interface: str, name: str) -> Any:
        """One property's value (Properties.Get), unwrapped."""
        (value,) = self._expect(await self.bus.call(SYSTEMD, path, PROPERTIES, "Get", "ss", [interface, name]),
                                "v", "Get")
        return plain(value)

    def _expect(self, answer: list[Any], reply: str, member: str) -> list[Any]:
        # What listens on the machine's bus socket is whatever its root put there: a body of
        # another shape would end in an IndexError or TypeError where it is read (dbusshape).
        from nsdash.system.dbusshape import conforms

        if not conforms(answer, reply):
            name = self.bus.target.name
            raise UnexpectedReply(f"machine '{name}' answered {member} with a reply systemd does not send "
                                  f"(not of signature '{reply}')",
                                  f"what listens on its /run/dbus/system_bus_socket may not be its dbus; "
                                  f"see 'nsdash journal -M {name} -u dbus.service'")
        return answer

    # -------------------------------------------------------- readers

    async def list_units(self, patterns: Iterable[str] = ()) -> list[UnitInfo]:
        pats = list(patterns)
        if pats:
            (rows,) = await self._manager("ListUnitsByPatterns", "asas", [[], pats], reply=UNIT_ROWS)
        else:
            (rows,) = await self._manager("ListUnits", reply=UNIT_ROWS)
        # positional: Frozen's fast path, for the hundreds of rows a machine has
        return [UnitInfo(r[0], r[1], r[2], r[3], r[4], r[5], r[7] or None, r[8] or None) for r in rows]

    async def list_unit_files(self) -> list[UnitFile]:
        # systemd scans every unit directory for this (about a second for 200 files): a longer deadline
        (rows,) = await self._manager("ListUnitFiles", timeout=self.bus.timeout * SLOW_CALL_FACTOR, reply="a(ss)")
        return [UnitFile(name=path.rsplit("/", 1)[-1], path=path, state=state) for path, state in rows]

    async def unit_path(self, name: str, load: bool = True) -> str:
        """The unit's object path; LoadUnit also answers for units not loaded (LoadState tells)."""
        (path,) = await self._manager("LoadUnit" if load else "GetUnit", "s", [mangle(name)], reply="o")
        return str(path)

    async def status(self, name: str) -> UnitStatus:
        name = mangle(name)
        (props,) = await self._call(unit_object_path(name), PROPERTIES, "GetAll", "s", [""], reply="a{sv}")
        return UnitStatus.from_properties(name, props)

    async def properties(self, name: str) -> dict[str, Any]:
        """Every property of the unit (all its interfaces), values unwrapped from their variants."""
        (props,) = await self._call(unit_object_path(mangle(name)), PROPERTIES, "GetAll", "s", [""],
                                    reply="a{sv}")
        return {k: plain(v) for k, v in props.items()}

    async def list_jobs(self) -> list[JobInfo]:
        (rows,) = await self._manager("ListJobs", reply="a(usssoo)")
        return sorted((JobInfo(int(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows), key=lambda j: j.job_id)

    async def active_state(self, name: str) -> str:
        """What `is-active` prints: the unit's ActiveState, 'inactive' for units not loaded."""
        try:
            path = await self.unit_path(name, load=False)
        except UnitNotFound:
            return "inactive"
        return str(await self._get(path, "org.freedesktop.systemd1.Unit", "ActiveState"))

    async def active_states(self, names: Iterable[str]) -> list[str]:
        """active_state() of each of NAMES, in one round trip (ListUnitsByNames) rather than two each.

        For units already loaded (status' TriggeredBy=): a name systemd cannot load reads 'inactive'."""
        wanted = list(names)
        if not wanted:
            return []
        (rows,) = await self._manager("ListUnitsByNames", "as", [wanted], reply=UNIT_ROWS)
        states = {str(r[0]): str(r[3]) for r in rows}
        return [states.get(n, "inactive") for n in wanted]

    async def find_unit_of_pid(self, pid: int) -> str:
        """The unit a process (PID as the machine sees it) belongs to."""
        (path,) = await self._manager("GetUnitByPID", "u", [pid], reply="o")
        return str(await self._get(path, "org.freedesktop.systemd1.Unit", "Id"))

    # -------------------------------------------------------- jobs

    async def _subscribe(self) -> None:
        if self._subscribed:
            return
        self.bus.on_signal(self._on_signal)
        await self.bus.add_match(f"type='signal',sender='{SYSTEMD}',path='{MANAGER_PATH}',"
                                 f"interface='{MANAGER}',member='JobRemoved'")
        await self._manager("Subscribe")
        self._subscribed = True

    def _on_signal(self, msg: Message) -> None:
        if msg.member == "JobRemoved" and msg.interface == MANAGER and len(msg.body) == 4:
            _, job_path, _, result = msg.body
            self._jobs_removed[str(job_path)] = str(result)
            while len(self._jobs_removed) > 1024:  # other clients' jobs, on a long-lived connection
                del self._jobs_removed[next(iter(self._jobs_removed))]
            self._job_event.set()

    async def _wait_job(self, job_path: str, timeout: float | None) -> str:
        """The job's result from JobRemoved; ends early (MachineGone/BusUnreachable) if the bus drops."""
        async def until_removed() -> str:
            while job_path not in self._jobs_removed:
                self._job_event.clear()
                await self._job_event.wait()
            return self._jobs_removed.pop(job_path)

        import asyncio

        removed = asyncio.ensure_future(until_removed())
        dropped = asyncio.ensure_future(self.bus.wait_closed())
        try:
            done, _ = await asyncio.wait({removed, dropped}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            removed.cancel()
            dropped.cancel()
        if removed in done:
            return removed.result()
        if dropped in done:
            cause = None if dropped.cancelled() else dropped.exception()
            raise await self.bus.loss(cause or EOFError("the bus closed"))
        raise NsdashError(f"the job {job_path.rsplit('/', 1)[-1]} did not finish within {timeout:g}s",
                          "it is still queued in the machine; see 'nsdash systemctl -M "
                          f"{self.bus.target.name} status UNIT' and the unit's journal")

    async def job(self, kind: str, name: str, mode: str = "replace", wait: bool = True,
                  job_timeout: float | None = 300.0) -> JobOutcome:
        """Queue a start/stop/restart/reload job; with WAIT, return when it finished.

        A failed job raises JobFailed naming systemd's result and the unit's Result.
        """
        if wait:
            await self.subscribe()
        outcome = await self.enqueue(kind, name, mode)
        return await self.finish(outcome, job_timeout) if wait else outcome

    async def subscribe(self) -> None:
        """Ask systemd for JobRemoved signals; call before enqueue() when you will finish() the job."""
        await self._subscribe()

    async def enqueue(self, kind: str, name: str, mode: str = "replace") -> JobOutcome:
        """Queue a job and return at once (result None)."""
        methods = {"start": "StartUnit", "stop": "StopUnit", "restart": "RestartUnit",
                   "reload": "ReloadUnit", "try-restart": "TryRestartUnit",
                   "reload-or-restart": "ReloadOrRestartUnit"}
        if kind not in methods:
            raise UsageError(f"unknown job type '{kind}'", f"use one of {', '.join(methods)}")
        if mode not in JOB_MODES:
            raise UsageError(f"unknown job mode '{mode}'", f"use one of {', '.join(JOB_MODES)}")
        name = mangle(name)
        (job_path,) = await self._manager(methods[kind], "ss", [name, mode], reply="o")
        job_path = str(job_path)
        tail = job_path.rsplit("/", 1)[-1]
        # systemd's job IDs are uint32: a guest's bus may name any path (5,000 digits made int() raise)
        return JobOutcome(int(tail) if tail.isascii() and tail.isdigit() and len(tail) <= 10 else 0,
                          job_path, name, kind, None)

    async def finish(self, outcome: JobOutcome, job_timeout: float | None = 300.0) -> JobOutcome:
        """Wait for a job queued after subscribe(); raises JobFailed unless it is done."""
        result = await self._wait_job(outcome.job_path, job_timeout)
        done = JobOutcome(outcome.job_id, outcome.job_path, outcome.unit, outcome.kind, result)
        if not done.ok:
            raise await self._job_failure(done)
        return done

    async def _job_failure(self, outcome: JobOutcome) -> JobFailed:
        machine = self.bus.target.name
        why = {"failed": "failed", "timeout": "timed out", "canceled": "was canceled",
               "dependency": "failed because a dependency failed", "invalid": "is invalid for this unit",
               "unsupported": "is not supported by this unit", "assert": "failed an assertion",
               "once": "cannot run again (RefuseManualStart/Stop or a one-shot)"}
        detail = ""
        try:
            if outcome.result == "canceled":
                try:
                    state: str | None = await self.system_state()
                except NsdashError:
                    state = None  # the bus failing right after a cancel: it is going down
                if state in ("stopping", None):
                    return JobFailed(f"job for {outcome.unit} was canceled: machine '{machine}' is shutting down",
                                     f"start it again, then retry; see 'nsdash journal -M {machine}'", outcome)
            status = await self.status(outcome.unit)
            if status.result and status.result != "success":
                detail = f" (unit result: {status.result})"
        except NsdashError:
            if not self.bus.target.alive():
                return JobFailed(f"job for {outcome.unit} {outcome.result}: machine '{machine}' powered off",
                                 f"start it again, then retry; see 'nsdash journal -M {machine}'", outcome)
        return JobFailed(
            f"job for {outcome.unit} {why.get(outcome.result or '', outcome.result or 'failed')}"
            f" (job result: {outcome.result}){detail}",
            f"see 'nsdash systemctl -M {machine} status {outcome.unit}' and "
            f"'nsdash journal -M {machine} -u {outcome.unit}'", outcome)

    # -------------------------------------------------------- unit files

    async def enable(self, names: Iterable[str], runtime: bool = False, force: bool = False) -> list[InstallChange]:
        (_, changes) = await self._manager("EnableUnitFiles", "asbb", [[mangle(n) for n in names], runtime, force],
                                           timeout=self.bus.timeout * SLOW_CALL_FACTOR, reply="ba(sss)")
        await self.daemon_reload()
        return [InstallChange(*c) for c in changes]

    async def disable(self, names: Iterable[str], runtime: bool = False) -> list[InstallChange]:
        (changes,) = await self._manager("DisableUnitFiles", "asb", [[mangle(n) for n in names], runtime],
                                         timeout=self.bus.timeout * SLOW_CALL_FACTOR, reply="a(sss)")
        await self.daemon_reload()
        return [InstallChange(*c) for c in changes]

    async def daemon_reload(self) -> None:
        await self._manager("Reload", timeout=self.bus.timeout * SLOW_CALL_FACTOR)

    async def system_state(self) -> str:
        """The manager's SystemState: initializing, starting, running, degraded, stopping, ..."""
        return str(await self._get(MANAGER_PATH, MANAGER, "SystemState"))

    async def unit_file_state(self, name: str) -> str:
        (state,) = await self._manager("GetUnitFileState", "s", [mangle(name)], reply="s")
        return str(state)

    async def reset_failed(self, name: str | None = None) -> None:
        if name is None:
            await self._manager("ResetFailed")
        else:
            await self._manager("ResetFailedUnit", "s", [mangle(name)])


# ---------------------------------------------------------------- sync wrapper

def run(target: Target, action: Callable[[Systemd], Awaitable[T]], timeout: float = DEFAULT_TIMEOUT) -> T:
    """Connect to TARGET's bus, run ACTION(systemd) and disconnect: the CLI's way in."""
    import asyncio
    import concurrent.futures

    async def main() -> T:
        async with MachineBus(target, timeout) as bus:
            return await action(Systemd(bus))

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    # Called from inside an event loop (a dashboard's main thread): run on a thread of its own.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


def run_blocking(target: Target, action: Callable[[Systemd], Coroutine[Any, Any, T]],
                 timeout: float = DEFAULT_TIMEOUT, via_supervisor: bool = False, preload: tuple[str, ...] = ()) -> T:
    """run() for actions that only call methods (no jobs, no signals): no event loop at all.

    The bus is a blocking one, so no await inside ACTION ever suspends: the
    coroutine runs to its end on the first send().  VIA_SUPERVISOR: the machine's
    supervisor makes the calls where it can (MachineBus), and meanwhile this process imports the
    modules PRELOAD names (those ACTION will import once answered).
    """
    async def main() -> T:
        async with MachineBus(target, timeout, blocking=True, via_supervisor=via_supervisor,
                              preload=preload) as bus:
            return await action(Systemd(bus))

    coro = main()
    try:
        coro.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coro.close()
    raise RuntimeError("an action given to run_blocking() waited on something other than the bus")
