"""The boot engine: one per machine, for its whole life, in a terminal or detached.

`nsdash spawn` in a terminal and the detached supervisor (`spawn --detach`,
`start`, the dashboard) run this same Supervisor; the only difference is where
the console goes.  Detached, the console is served to attached clients over the
control socket; in the foreground the caller's terminal is one more console
client, in-process (machines/run.py), and with --console=pipe there is no PTY
at all (the payload has the caller's stdio).

Either way the engine holds the console PTY (so it survives reboots), writes the
console log, keeps the state entry and the control socket (so `nsdash
status|shell|poweroff NAME` reach a terminal-run machine too), drains sd_notify
(READY=1 and STATUS=; read at a bounded rate, STATUS= written coalesced, so a flood costs
little), follows the guest's progress (starting, running, degraded), registers with systemd-machined, stops
the machine in its init's own way (machines/shutdown.py), runs the reboot loop
with its limiter, and settles the exit code as systemd-nspawn does.

It is single-threaded around poll(); only slow, optional work (asking a systemd
guest's bus whether units failed, waiting on a kernel without pidfds) runs in
helper threads that wake the loop.  It is on the path of every `nsdash spawn`:
imports stay small (no selectors, socket.py, dataclasses, typing or json until a
client connects).
"""

from __future__ import annotations

import _signal
import _socket
import contextlib
import errno
import fcntl
import os
import select
import signal
import struct
import termios
import time
from collections import deque
from contextlib import ExitStack
from pathlib import Path

from nsdash.errors import MachineExists, NsdashError
from nsdash.launcher.plan import new_uuid
from nsdash.launcher.spec import ContainerSpec
from nsdash.machines import shutdown
from nsdash.machines import state as st
from nsdash.machines.consolelog import utc_now
from nsdash.system import syscalls
from nsdash.system.ready import readable
from nsdash.system.unlink import unlink_together

if False:  # typing.TYPE_CHECKING without importing typing on the spawn path
    import threading
    from collections.abc import Callable
    from typing import Any

    from nsdash.launcher.container import Container, Outcome
    from nsdash.launcher.modes import OutcomeKind, Register
    from nsdash.machines.consolelog import ConsoleLog
    from nsdash.machines.protocol import Request
    from nsdash.machines.state import Phase

REBOOT_BURST = 5  # more than this many reboots ...
REBOOT_WINDOW = 10.0  # ... within this many seconds stops the machine
STOP_TIMEOUT = 15.0  # poweroff/reboot: SIGKILL everything after this long
REPLAY_BYTES = 16 * 1024  # console history sent to a new attacher
# An attacher this far behind gets no more console output until it has taken what it holds
# (then a `skipped` event says how much it missed, unless the tail it is sent holds all of it);
# a client this far behind on answers is dropped.
CLIENT_BUFFER_LIMIT = 1024 * 1024
REGISTRATION_CHECKS = (1.0, 3.0, 8.0)  # seconds after each registration
HEALTH_INTERVAL = 30.0  # seconds between asks of a systemd guest whether units failed
HEALTH_TIMEOUT = 5.0  # seconds a guest's bus has to answer (machines/health.py)
HEALTH_FRESH = 5.0  # a status request asks again when the last answer is older than this
BUS_QUIESCE = 2.0  # seconds a boot waits for the bus-call worker to end (machines/busproxy.py)
STATUS_WRITE_INTERVAL = 0.25  # s between state.json writes for a new STATUS= alone (READY=1 is written at once)
NOTIFY_TICK = 0.1  # s: the notify socket's budget is counted per tick ...
NOTIFY_PER_TICK = 128  # ... of this many datagrams; past them it is left unread until the next tick
NUDGE_INTERVAL = 1.0  # seconds between SIGCONTs to a runit asked to stop
DRAIN_TIMEOUT = 1.0  # seconds to wait for the console's last bytes after PID 1 ended
CONSOLE_TICK = 0.01  # s: a flooding console is read once a tick (ConsolePace) ...
CONSOLE_BURST = 64  # ... after this many looks at once (the bucket's size)
# The most one look at the console reads before handing it on: about what a PTY buffers
# (its flip buffers hold 64 KiB), so a flood comes at most this much a tick (~6 MB/s).  A
# flooding guest fills every look to this bound, as the PTY refills while it is read: at
# 1 MiB, the attachers' own limit, one look's frames dropped every attacher however fast it
# read, and a flood came faster than `nsdash login` could take it (dropped within seconds).
CONSOLE_BATCH = 64 * 1024
REBOOT_EXIT = 133  # --reboot=exit, as systemd-nspawn under its service unit
POLLIN, POLLOUT = select.POLLIN, select.POLLOUT
_POLLERR = select.POLLERR | select.POLLHUP | select.POLLNVAL


def init_kind(leader: int | None, boot: bool) -> str:
    """The machine's init (systemd, busybox, sysv, runit, unknown; command without -b)."""
    return shutdown.detect_init(leader, boot)


class RebootLimiter:
    """Allows at most BURST reboots within WINDOW seconds."""

    def __init__(self, burst: int = REBOOT_BURST, window: float = REBOOT_WINDOW) -> None:
        self.burst, self.window = burst, window
        self.times: deque[float] = deque()

    def allow(self, now: float) -> bool:
        while self.times and now - self.times[0] > self.window:
            self.times.popleft()
        self.times.append(now)
        return len(self.times) <= self.burst


class ConsolePace:
    """How long the console rests after each look (Supervisor._pty_rest): a bucket of BURST
    looks, refilled one a TICK the console is left unread.  A look that found bytes takes
    one; an empty bucket rests until the next comes in.

    A flood is read once a tick, after its first BURST looks (a couple of ms); a busy
    exchange, a systemd boot or shutdown, is never held back.  A guest's question to the
    terminal waits for its answer, so any rest before the reader takes it is the guest's
    wait: sid's PID 1 writes a cursor-position query as it stops the console getty, right
    after a row of status lines, and waits up to 1/3 s for the answer.  The rule before (a rest
    after the fourth look in a row less than a tick apart, a tick more while a rest brought 256
    bytes) rested on those rows, and the query waited 7-14 ms of the guest's shutdown (its
    journal, 10 poweroffs) against systemd-nspawn's 1-3.  A sid boot and poweroff left at
    least 17 of the 64 in the bucket (six runs, at rest and at load 2-4)."""

    def __init__(self, burst: int = CONSOLE_BURST, tick: float = CONSOLE_TICK) -> None:
        self.burst, self.tick = burst, tick
        self.tokens = float(burst)
        self.last = float("-inf")  # when the last look ended

    def rest_after(self, took: int, began: float, ended: float) -> float:
        """A look that BEGAN (monotonic s) took TOOK bytes and was done with them (logged, sent
        on) at ENDED: how long to rest now (s; 0: read on).  The bucket refills only while the
        console is left alone, from one look's end to the next one's begin: counting a look's
        own time (a millisecond or more for a flood's 64 KiB, its log write and its frames)
        let a flood be read every 10 ms whatever each look took, 130 looks a second against
        the old rule's 66, and the supervisor spent half as much again."""
        self.tokens = min(float(self.burst), self.tokens + max(0.0, began - self.last) / self.tick)
        self.last = ended
        if took:
            self.tokens -= 1
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) * self.tick


def outcome_event(kind: OutcomeKind, status: int) -> tuple[str, str | None]:
    """The console-log separator for how a boot ended."""
    if kind == "exited":
        return "exited", f"status {status}"
    if kind == "killed":
        try:
            name = signal.Signals(status).name
        except ValueError:
            name = str(status)
        return "killed", f"signal {name}"
    return kind, None


class LocalConsole:
    """An in-process console client (the caller's terminal in the foreground).

    The engine calls these; the base class does nothing, which is what a
    detached supervisor has in-process.
    """

    def bind(self, engine: Supervisor) -> None:
        """Called once before the first boot: watch input fds, set the window size."""

    def output(self, data: bytes) -> None:
        """Console bytes."""

    def booted(self, boot: int) -> None:
        """Boot BOOT's init runs."""

    def ended(self, outcome: Outcome, then: str, forced: str | None) -> None:
        """A boot ended with OUTCOME; THEN is 'reboot', 'reboot-exit', 'reboot-loop' or 'stop'.
        FORCED says why it was killed at a deadline, if it was."""

    def signal(self, signum: int) -> None:
        """A signal the engine does not handle itself (SIGWINCH)."""


class _Conn:
    """One control-socket client."""

    def __init__(self, sock: _socket.socket) -> None:
        from nsdash.machines import protocol as proto

        self.sock = sock
        self.lines = proto.LineReader()
        self.frames: Any = None  # a protocol.FrameReader once attached
        self.greeted = False
        self.out = bytearray()
        self.closing = False
        self.refused = False  # a non-root peer: everything it sends is discarded
        self.busy = False  # a bus-call in the worker: its next requests wait (answers stay in order)
        self.behind = False  # sent no console output until it has taken all it holds
        self.skipped = 0  # console bytes left out while it was behind, not yet reported
        self.skip_from = 0  # where in the console log's stream they start (ConsoleLog.position)

    @property
    def attached(self) -> bool:
        return self.frames is not None


class Supervisor:
    """Runs SPEC until it powers off, exits or is terminated; run() returns the exit status."""

    PTY_RETRY = 0.1  # seconds between looks at a PTY whose slave nobody has open

    def __init__(self, spec: ContainerSpec, *, register: bool | None = None,
                 on_ready: Callable[[int], None] | None = None,
                 replay_bytes: int = REPLAY_BYTES, console: LocalConsole | None = None,
                 pty: bool = True, foreground: bool = False) -> None:
        """console: the in-process console client (the foreground terminal); pty=False:
        --console=pipe, the payload keeps this process's stdio and there is no PTY."""
        self.spec = spec
        self.name = spec.machine
        self.dir = st.machine_dir(self.name)
        self.on_ready = on_ready
        self.replay_bytes = replay_bytes
        self.local = console or LocalConsole()
        self.use_pty = pty
        self.foreground = foreground
        self.register_mode: Register = spec.register if register is None else ("yes" if register else "no")
        self.poller = select.poll()
        self.handlers: dict[int, Callable[[int], None]] = {}
        self.conns: dict[int, _Conn] = {}
        self.container: Container | None = None
        self.last_container: Container | None = None  # the boot that ended last, kept (see run.run_foreground)
        self.outcome: Outcome | None = None
        self.boot = 0
        self.started = utc_now()
        self.since = self.started
        self.phase: Phase = "starting"
        self.init = "unknown"
        self.stop_reason: str | None = None  # "poweroff" | "terminate" | "reboot-loop" | "signal"
        self.stop_requests = 0  # SIGTERM/SIGINT/SIGHUP received
        self.reboot_requested = False
        self.kill_deadline: float | None = None
        self.stop_action = ""  # what kill_deadline enforces, for the message
        self.stop_timeout = 0.0
        self.forced: str | None = None  # set when this boot was killed at its stop deadline
        self.nudge_due: float | None = None  # runit: asked again while it stops (see _ask_init)
        self.nudge_action = "poweroff"
        self.waiters: list[tuple[_Conn, Any, str]] = []  # (conn, request id, op) answered at the boot's end
        self.registration_checks: list[float] = []
        self.health_due: float | None = None
        self._dhcp_retry: float | None = None  # when to watch a flooded DHCP socket again
        self._notify_retry: float | None = None  # when to watch a flooded notify socket again
        self._notify_tick = 0.0  # when the notify socket's current tick began ...
        self._notify_read = 0  # ... and the datagrams read in it
        self._state_written = 0.0  # monotonic time of the last state.json write
        self._state_due: float | None = None  # when a coalesced STATUS= change is written
        self.health_busy = False
        self.health_result: str | None = None
        self.health_checked = 0.0  # monotonic time of the last answer
        self._health: threading.Thread | None = None
        self.limiter = RebootLimiter()
        # One identity for the machine's whole life: a reboot keeps its UUID (systemd derives a
        # missing machine ID from $container_uuid), as with systemd-nspawn.  The tree's own
        # /etc/machine-id (or --uuid) wins: Container's plan settles it, and that is reported.
        self.session_uuid = new_uuid()
        self.uuid: str | None = None
        self.registration: Any = None
        self.exit_status = 0
        self.master = self.slave = -1  # this boot's console PTY (made in the guest's devpts), or -1
        self.winsize = (24, 80)  # rows, cols: given to each boot's new console
        self.log: ConsoleLog | None = None
        self.listener: Any = None  # a _socket.socket (socket.py is not imported on the spawn path)
        self.caught: list[int] = []
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._lock_fd = -1
        self._pty_retry: float | None = None  # when to watch the PTY master again (EIO, or a rest)
        self._pty_took = 0  # bytes the last look at the console read
        self._pace = ConsolePace()
        self.bus_proxy: Any = None  # a busproxy.BusProxy from the first bus-call on

    # ---------------------------------------------------------------- lifecycle

    def run(self) -> int:
        with ExitStack() as stack:
            stack.callback(os.close, self._wake_r)
            stack.callback(os.close, self._wake_w)
            self._signals(stack)  # first: no signal may kill us mid-set-up
            self._claim_entry()
            stack.callback(self._remove_entry)
            if self.use_pty:
                self._open_console(stack)
            self.listener = self._listen()
            stack.callback(self.listener.close)
            stack.callback(self._close_conns)
            stack.callback(self._close_container)  # on every path, a crash included
            self.registration = self._open_registration()
            if self.registration is not None:
                stack.callback(self.registration.unregister)
            self.local.bind(self)
            self._boot_once()
            if self.on_ready is not None:
                self.on_ready((self.container.leader if self.container is not None else None) or 0)
            self._loop()
            return self.exit_status

    def _open_console(self, stack: ExitStack) -> None:
        """The console log, for the machine's whole life.  Each boot brings a console PTY of
        its own, made by its PID 1 in its devpts as systemd-nspawn does (_take_console)."""
        from nsdash.machines.consolelog import ConsoleLog

        stack.callback(self._close_slave)
        self.log = ConsoleLog(self.dir / st.CONSOLE_LOG)
        stack.callback(self.log.close)

    def _take_console(self, container: Container) -> None:
        """Serve this boot's console: its master (the Container closes it), and a slave fd of
        our own (TIOCGPTPEER, no path into the guest) so the master never reads EIO while the
        guest has its console closed; _drain_console lets go of it when PID 1 has ended."""
        master = container.console_master
        if master is None:
            return
        self.master = master
        self.slave = fcntl.ioctl(master, syscalls.TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        self.set_winsize(*self.winsize)
        self.watch(master, self._pty_event)

    def _close_slave(self) -> None:
        if self.slave >= 0:
            os.close(self.slave)
            self.slave = -1

    def _close_container(self) -> None:
        if self.container is not None:
            container, self.container = self.container, None
            self._unwatch_dhcp(container)
            container.close()

    def _claim_entry(self) -> None:
        """Create the state entry holding its lock, atomically by rename."""
        root = st.machines_root()
        tmp = root / f".{self.name}.{os.getpid()}"
        try:
            root.mkdir(parents=True, exist_ok=True)
            tmp.mkdir(mode=0o755)
            self._lock_fd = os.open(tmp / st.LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:  # a full or read-only state directory: one line, nothing left
            with contextlib.suppress(OSError):
                tmp.rmdir()
            raise NsdashError(f"cannot create the state of machine '{self.name}' in {root}: {e.strerror}",
                              "free space there, or point NSDASH_STATE_DIR elsewhere") from None
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        for _ in range(3):
            try:
                os.rename(tmp, self.dir)
                return
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
            if st.supervisor_alive(self.dir):
                os.close(self._lock_fd)
                for f in tmp.iterdir():
                    f.unlink()
                tmp.rmdir()
                raise MachineExists(f"machine '{self.name}' is already running",
                                    f"pick another name with -M, or stop it with 'nsdash poweroff {self.name}'")
            self._clean_dead_orphan(tmp)
        raise NsdashError(f"could not claim the state entry for '{self.name}'")

    def _clean_dead_orphan(self, tmp: Path) -> None:
        """The name's entry is an orphan (its supervisor died).  Its remains are cleaned only
        when nothing of it runs any more; live processes are never killed by a start (the
        clients clean orphans, saying so, before they hand a machine to an engine)."""
        from nsdash.launcher.cgroup import MachineCgroup
        from nsdash.machines.orphans import clean_orphan

        if MachineCgroup(self.name).populated():
            os.close(self._lock_fd)
            for f in tmp.iterdir():
                f.unlink()
            tmp.rmdir()
            raise MachineExists(f"machine '{self.name}' is already running (orphaned: its supervisor died)",
                                f"'nsdash terminate {self.name}' cleans it up")
        clean_orphan(self.name)

    def _remove_entry(self) -> None:
        # Everything the entry holds (state, socket, the console log and its side files,
        # temporaries), whatever other modules keep there: only the supervisor removes it.
        # All at once: on a /run on disk each file with data waits for its own discard.
        with os.scandir(self.dir) as entries:
            unlink_together([entry.path for entry in entries if entry.name != st.LOCK_FILE])
        # The lock goes last, so nobody sees a lock-less entry while we tear down.
        with contextlib.suppress(OSError):
            (self.dir / st.LOCK_FILE).unlink()
        with contextlib.suppress(OSError):
            self.dir.rmdir()
        os.close(self._lock_fd)

    def _listen(self) -> _socket.socket:
        path = self.dir / st.CONTROL
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC | _socket.SOCK_NONBLOCK)
        old = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(_socket.SOMAXCONN)
        self.watch(sock.fileno(), lambda _mask: self._accept())
        return sock

    def _signals(self, stack: ExitStack) -> None:
        sig_r, sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        stack.callback(os.close, sig_r)
        stack.callback(os.close, sig_w)
        old_fd = signal.set_wakeup_fd(sig_w, warn_on_full_buffer=False)
        stack.callback(signal.set_wakeup_fd, old_fd)
        # _signal's own signal(): signal.signal converts each number and handler to its enum and
        # back, an exception caught inside for every handler that is a method (ours): about 5 us
        # a call warm, some 100 us for the four restored after PID 1 has gone, cold.
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGWINCH):
            previous = _signal.signal(sig, self._on_signal)
            stack.callback(_signal.signal, sig, previous)
        self.watch(sig_r, lambda _mask: self._drain(sig_r))
        self.watch(self._wake_r, lambda _mask: self._drain(self._wake_r))

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.caught.append(signum)

    def _open_registration(self) -> Any:
        """systemd-machined, as systemd-nspawn registers.  With --register=auto on a host not
        booted with systemd there is no machined to ask: skip it without importing the D-Bus
        client, which would cost every spawn (a system bus alone is not enough)."""
        if self.register_mode == "no":
            return None
        if self.register_mode == "auto" and not os.path.isdir("/run/systemd/system"):
            return None  # sd_booted() is false
        from nsdash.machines import machined

        return machined.Registration.open(required=self.register_mode == "yes")

    # ---------------------------------------------------------------- the poll loop's registry

    def watch(self, fd: int, handler: Callable[[int], None], events: int = POLLIN) -> None:
        """Call HANDLER(revents) whenever FD polls ready for EVENTS."""
        self.handlers[fd] = handler
        self.poller.register(fd, events)

    def unwatch(self, fd: int) -> None:
        if self.handlers.pop(fd, None) is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.poller.unregister(fd)

    # ---------------------------------------------------------------- boots

    def _boot_once(self) -> None:
        from nsdash.launcher.container import Container

        self.boot += 1
        self.outcome = None
        self.reboot_requested = False
        self.kill_deadline = None
        self.forced = None
        self.nudge_due = None
        self.health_due = None
        self._mark(f"boot {self.boot}")
        if self._health is not None:
            # The middle child is forked straight into the machine's cgroup (clone3) only while
            # no other thread runs (syscalls.fork_into_cgroup, which else falls back to fork and
            # a cgroup.procs write): the last health check ends first, to keep that fast path.
            self._health.join(HEALTH_TIMEOUT + 1.0)
            self._health = None
        if self.bus_proxy is not None:  # the same for the bus-call worker (calls on the
            self.bus_proxy.quiesce(BUS_QUIESCE)  # boot that ended fail at once)
        container = Container(self.spec, console=self.use_pty, uuid=self.session_uuid,
                              cgroup=self._cgroup_backend(), run_dir=str(self.dir))
        try:
            container.start()
        except BaseException:
            container.close()
            raise
        self.container = container
        self._take_console(container)
        self._catch_console()
        self.uuid = container.plan.uuid if container.plan is not None else self.session_uuid
        self.since = utc_now()  # when this boot's init started, after any slow set-up
        # The guest is up when it says READY=1; inits that never say it are up once they run.
        self.init = shutdown.detect_init(container.leader, self.spec.boot)
        waits = self.init == "systemd" or self.spec.notify_ready
        self.phase = "starting" if waits else "running"
        self._register_boot()
        self._write_state()
        self._event(f"boot {self.boot}", leader=container.leader)
        self.local.booted(self.boot)
        notify = container.notify_fd
        if notify is not None:
            self._watch_notify_again()
        if container.dhcp is not None:  # a networkd guest's DHCP, answered on its ve- link
            self.watch(container.dhcp.fileno(), lambda _mask: self._serve_dhcp())
        if container.pidfd is not None:
            self.watch(container.pidfd, lambda _mask: self._leader_exited())
        else:  # no pidfd (old kernel): a thread blocks in wait() and wakes the loop
            import threading  # only here and for the health check: a spawn imports no threading

            threading.Thread(target=self._wait_container, args=(container,), daemon=True).start()
        self._catch_console()

    def _catch_console(self) -> None:
        """Read what the new PID 1 has already written, now rather than at the next poll.
        A guest may discard console output we have not read yet: sysvinit prints its banner,
        then its first child's tcflush(TCIOFLUSH) on /dev/console empties the master's
        unread buffer a few milliseconds later (on a PTY the slave's flush reaches the
        master's input).  The boot's own bookkeeping must not widen that window."""
        if self.master >= 0 and self._pty_retry is None:
            self._pty_readable()

    def _cgroup_backend(self) -> Any:
        """A systemd scope for this boot where systemd manages the host (not --keep-unit),
        else None: nsdash makes the cgroups itself (machines/units.py).  Checked without the
        D-Bus client's import cost on hosts without systemd."""
        if self.spec.keep_unit or not os.path.isdir("/run/systemd/system"):
            return None
        from nsdash.machines import units

        return units.cgroup_backend(self.spec)

    def _in_systemd_scope(self) -> bool:
        """machined keeps a registration whose unit systemd made; only a cgroup nsdash made
        itself needs the checks after each registration."""
        return bool(getattr(self.container, "managed_cgroup", False))

    def _register_boot(self) -> None:
        """Register this boot with systemd-machined (the one place), and check on it later."""
        if self.registration is None:
            return
        self.registration.register(self._state())
        if not self._in_systemd_scope():
            now = time.monotonic()
            self.registration_checks = [now + d for d in REGISTRATION_CHECKS]

    def _wait_container(self, container: Container) -> None:
        self.outcome = container.wait()
        os.write(self._wake_w, b"x")

    def _leader_exited(self) -> None:
        if self.container is None:
            return
        self.outcome = self.container.poll()
        if self.outcome is not None and self.container.pidfd is not None:
            self.unwatch(self.container.pidfd)

    def _serve_dhcp(self) -> None:
        c = self.container
        if c is None or c.dhcp is None:
            return
        pause = c.dhcp.serve()
        if pause is not None:  # a flood: this second's reads are spent; look again after it
            self.unwatch(c.dhcp.fileno())
            self._dhcp_retry = time.monotonic() + pause

    def _unwatch_dhcp(self, container: Container) -> None:
        self._dhcp_retry = None
        if container.dhcp is not None:
            self.unwatch(container.dhcp.fileno())

    def _notify_readable(self) -> None:
        """The payload's sd_notify datagrams: READY=1 is acted on and written at once; a new STATUS=
        alone is written at most every STATUS_WRITE_INTERVAL, the last one always (a flood of
        distinct lines cost a state.json per batch: a guest root kept a host CPU a quarter busy).
        At most NOTIFY_PER_TICK datagrams are read a tick."""
        c = self.container
        if c is None:
            return
        now = time.monotonic()
        if now - self._notify_tick >= NOTIFY_TICK:
            self._notify_tick, self._notify_read = now, 0
        changed = c.read_notify(NOTIFY_PER_TICK - self._notify_read)
        self._notify_read += c.notify_taken
        if self._notify_read >= NOTIFY_PER_TICK and c.notify_fd is not None:
            # A flood: the rest waits in the socket (its sender blocks) until the next tick,
            # as a flooded DHCP socket does; a READY=1 in it is read then and acted on at once.
            self.unwatch(c.notify_fd)
            self._notify_retry = self._notify_tick + NOTIFY_TICK
        if not changed:
            return
        if c.ready and self.phase == "starting":
            self.phase = "running"
            if self.init == "systemd":
                self.health_due = time.monotonic()  # ask at once whether its boot left failed units
            self._write_state()
            return
        due = self._state_written + STATUS_WRITE_INTERVAL
        if time.monotonic() >= due:
            self._write_state()
        elif self._state_due is None:
            self._state_due = due

    def _watch_notify_again(self) -> None:
        self._notify_retry = None
        c = self.container
        if c is not None and c.notify_fd is not None:
            self.watch(c.notify_fd, lambda _mask: self._notify_readable())

    def _after_exit(self) -> bool:
        """The container's init ended: drain and log it, then reboot (True) or stop (False)."""
        outcome = self.outcome
        container = self.container
        assert outcome is not None and container is not None
        self._drain_console()
        if container.notify_fd is not None:
            self.unwatch(container.notify_fd)
        self._notify_retry = None
        self._unwatch_dhcp(container)
        event, detail = outcome_event(outcome.kind, outcome.status)
        reboot = self.stop_reason is None and not self.stop_requests and (
            outcome.kind == "reboot" or self.reboot_requested)
        then = "stop"
        if reboot and self.spec.reboot_exit:
            then, reboot = "reboot-exit", False
        elif reboot and not self.limiter.allow(time.monotonic()):
            self._mark("reboot")
            self.stop_reason = "reboot-loop"
            then, reboot = "reboot-loop", False
            event, detail = "exited", (f"reboot loop: more than {REBOOT_BURST} reboots "
                                       f"in {REBOOT_WINDOW:.0f} s, stopped")
        elif reboot:
            then, event, detail = "reboot", "reboot", None
        if self.forced:
            detail = f"{detail}; {self.forced}" if detail else self.forced
        self._mark(event, detail)
        self._event(event, kind=outcome.kind, status=outcome.status, detail=detail)
        self.exit_status = self._exit_status(outcome, then)
        self.local.ended(outcome, then, self.forced)
        self._answer_waiters()
        if reboot:
            self.phase = "rebooting"
            self._write_state()
        if self.registration is not None:
            self.registration.unregister()
        if container.pidfd is not None:
            self.unwatch(container.pidfd)
        self.container = None
        self.last_container = container
        # The last boot's run files (the seccomp filter, the notify socket) are the entry's:
        # they go with its own files, at once (_remove_entry); a reboot's next boot makes them anew.
        container.close(leave_run_files=not reboot)
        return reboot

    def _exit_status(self, outcome: Outcome, then: str) -> int:
        """systemd-nspawn's exit codes: the payload's own status, 128+N for a signal, 133 for
        a reboot under --reboot=exit, 0 for a poweroff; 137 when a stop had to be forced."""
        if then == "reboot-loop":
            return 1
        if then == "reboot-exit":
            return REBOOT_EXIT
        if self.forced:
            return 128 + signal.SIGKILL
        if outcome.kind == "killed" and self.stop_reason == "terminate":
            return 0  # killed as asked (machinectl terminate); any other death by signal is 128+N
        return outcome.exit_code()

    def _drain_console(self) -> None:
        """The console's last words (runit's "power off...", a payload's last line) reach the
        log and every client.  PID 1 has exited, so every process of the machine has: closing
        our own slave fd leaves none open, and the master then reads what is still buffered
        (the kernel flushes pending input first) and then EIO.  Bounded, in case someone
        outside the machine still holds the slave.  The master is done with then (the
        Container closes it); the next boot brings its own."""
        if self.master < 0:
            return
        self._close_slave()
        self._pty_retry = None
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while True:
            if self._pty_readable():
                break  # EIO: drained
            left = deadline - time.monotonic()
            if left <= 0 or not readable([self.master], left):
                break
        self.unwatch(self.master)
        self.master = -1

    # ---------------------------------------------------------------- actions

    def poweroff(self, timeout: float = STOP_TIMEOUT) -> None:
        self.stop_reason = self.stop_reason or "poweroff"
        self._ask_init("poweroff", timeout)

    def reboot(self, timeout: float = STOP_TIMEOUT) -> None:
        self.reboot_requested = True
        self._ask_init("reboot", timeout)

    def terminate(self) -> None:
        """machinectl terminate: every process of the machine gets SIGKILL, now (that is
        what the verb means; poweroff is the orderly way)."""
        self.stop_reason = self.stop_reason or "terminate"
        self._set_phase("stopping")
        if self.container is not None:
            self.container.signal(signal.SIGKILL, "all")

    def kill(self, sig: int, whom: str) -> None:
        if self.container is not None:
            self.container.signal(sig, whom)

    def kill_all(self) -> None:
        """^] three times in the terminal: SIGKILL to everything, no questions (as nspawn)."""
        if self.container is not None:
            self.container.signal(signal.SIGKILL, "all")

    def _ask_init(self, action: str, timeout: float) -> None:
        """Ask the init to ACTION in its own way (shutdown.request); SIGKILL at the deadline."""
        c = self.container
        if c is None or c.leader is None:
            return
        if self.init == "command":
            # A plain command: --kill-signal, else SIGTERM (as machinectl poweroff asks a payload
            # that is no init); one that ignores it is killed at the deadline, and that is said.
            c.signal(self.spec.kill_signal or signal.SIGTERM)
        else:
            kill_signal = c.plan.kill_signal if c.plan is not None else signal.SIGTERM
            shutdown.request(self.init, action, c.leader, kill_signal)
            if self.init == "runit":
                # runit acts on SIGCONT only in stage 2, and its stage 1 resets the flags:
                # asked while it still boots, it is asked again until it stops.
                self.nudge_due, self.nudge_action = time.monotonic() + NUDGE_INTERVAL, action
        self._set_phase("rebooting" if action == "reboot" and self.stop_reason is None else "stopping")
        deadline = time.monotonic() + timeout
        if self.kill_deadline is None or deadline < self.kill_deadline:
            self.kill_deadline, self.stop_action, self.stop_timeout = deadline, action, timeout

    def _nudge_runit(self) -> None:
        """Ask runit again: its stage 1 resets the flag files, and it heeds SIGCONT only in
        stage 2, so a stop asked while it boots would otherwise be lost."""
        c = self.container
        self.nudge_due = time.monotonic() + NUDGE_INTERVAL
        if c is None or c.leader is None:
            return
        with contextlib.suppress(NsdashError):
            shutdown.request("runit", self.nudge_action, c.leader, signal.SIGTERM)

    def _stop_signal_received(self) -> None:
        """SIGTERM/SIGINT/SIGHUP to us: stop the machine as systemd-nspawn does, with its kill
        signal (--kill-signal, or SIGKILL for a plain command) -- but a booted init without
        --kill-signal is asked in its own way (nspawn's SIGRTMIN+3 means nothing to BusyBox,
        SysV or runit).  A second signal kills everything."""
        self.stop_requests += 1
        c = self.container
        if c is None:
            return
        if self.stop_requests > 1:
            self.stop_reason = self.stop_reason or "signal"
            c.signal(signal.SIGKILL, "all")
            return
        self.stop_reason = self.stop_reason or "poweroff"
        if self.spec.kill_signal or self.init == "command":
            c.signal(self.spec.kill_signal or (c.plan.kill_signal if c.plan is not None else signal.SIGKILL))
            self._set_phase("stopping")
            return
        try:
            self.poweroff()
        except NsdashError:
            c.signal(signal.SIGKILL, "all")  # no way to ask this init: the second signal's answer now

    def _deadline_passed(self) -> None:
        self.kill_deadline = None
        if self.container is None:
            return
        self.forced = (f"did not {'power off' if self.stop_action == 'poweroff' else self.stop_action} "
                       f"within {self.stop_timeout:g} s: killed")
        self.container.signal(signal.SIGKILL, "all")

    def _set_phase(self, phase: Phase) -> None:
        if self.phase != phase:
            self.phase = phase
            self._write_state()

    # ---------------------------------------------------------------- state

    def _state(self) -> st.MachineState:
        c = self.container
        status_text = c.status_text if c is not None else None
        return st.MachineState(
            name=self.name, root=str(self.spec.image or self.spec.directory), leader=c.leader if c is not None else None,
            cgroup=c.cgroup if c is not None else "", supervisor=os.getpid(), started=self.started,
            since=self.since, boot=self.boot, state=self.phase, uuid=self.uuid,
            netif=tuple(c.netif) if c is not None else (), boot_mode=self.spec.boot,
            command=tuple(self.spec.command), ephemeral=self.spec.ephemeral,
            registered=self.registration is not None and self.registration.active,
            network=getattr(self.container, "network_mode", None),
            status_text=status_text, foreground=self.foreground)

    def _write_state(self) -> None:
        st.write_state(self.dir, self._state())
        self._state_written, self._state_due = time.monotonic(), None

    def status(self) -> dict[str, Any]:
        data = self._state().to_json()
        data["init"] = self.init if data["leader"] else None
        data["attached"] = sum(1 for c in self.conns.values() if c.attached)
        return data

    # ---------------------------------------------------------------- guest health

    def _start_health_check(self) -> None:
        """Ask a systemd guest's manager, over the guest's own bus, whether units failed; in a
        thread (D-Bus is slow to import and the guest may be slow to answer), never blocking."""
        self.health_due = None
        c = self.container
        if c is None or c.leader is None or self.health_busy or self.spec.private_users != "no":
            return  # (under -U host root is nobody to the guest's bus: not asked)
        self.health_busy = True
        import threading

        self._health = threading.Thread(target=self._health_thread, args=(c.leader,), daemon=True)
        self._health.start()

    def _health_thread(self, leader: int) -> None:
        from nsdash.machines.health import system_state

        try:
            self.health_result = system_state(leader, HEALTH_TIMEOUT)
        finally:
            self.health_busy = False
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"h")

    def _apply_health(self) -> None:
        result, self.health_result = self.health_result, None
        if result is None or self.container is None:
            return
        if self.phase in st.UP_STATES:
            self._set_phase("degraded" if result == "degraded" else "running")
        self.health_checked = time.monotonic()
        self.health_due = self.health_checked + HEALTH_INTERVAL

    def _health_on_demand(self) -> None:
        """Someone asks for the status: a systemd guest's health older than HEALTH_FRESH is
        asked again now (the answer shows in the next status), not only on the slow timer."""
        now = time.monotonic()
        if (self.init == "systemd" and self.phase in st.UP_STATES and self.health_due is not None
                and now - self.health_checked > HEALTH_FRESH):
            self.health_due = now

    # ---------------------------------------------------------------- event loop

    def _loop(self) -> None:
        while True:
            deadlines = [d for d in (self.kill_deadline, self._pty_retry, self.health_due, self.nudge_due,
                                     self._dhcp_retry, self._notify_retry, self._state_due,
                                     *self.registration_checks[:1]) if d is not None]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            try:
                events = self.poller.poll(None if timeout is None else int(timeout * 1000) + 1)
            except InterruptedError:
                events = []
            if len(events) > 1 and self.master >= 0:  # the console first: see _catch_console
                events.sort(key=lambda event: event[0] != self.master)
            for fd, mask in events:
                handler = self.handlers.get(fd)
                if handler is not None:
                    handler(mask)
            if self.bus_proxy is not None:
                self._deliver_bus_replies()
            self._handle_signals()
            now = time.monotonic()
            if self._pty_retry is not None and now >= self._pty_retry:
                self._pty_retry = None
                if self.master >= 0:
                    self.watch(self.master, self._pty_event)
                    self._pty_event(POLLIN)  # still flooding: another rest
            if self._dhcp_retry is not None and now >= self._dhcp_retry:
                self._dhcp_retry = None
                c = self.container
                if c is not None and c.dhcp is not None:
                    self.watch(c.dhcp.fileno(), lambda _mask: self._serve_dhcp())
            if self._notify_retry is not None and now >= self._notify_retry:
                self._watch_notify_again()
            if self._state_due is not None and now >= self._state_due:
                self._write_state()
            if self.registration_checks and now >= self.registration_checks[0]:
                self.registration_checks.pop(0)
                self._check_registration()
            if self.health_result is not None:
                self._apply_health()
            if self.health_due is not None and now >= self.health_due:
                self._start_health_check()
            if self.kill_deadline is not None and now >= self.kill_deadline:
                self._deadline_passed()
            if self.nudge_due is not None and now >= self.nudge_due:
                self._nudge_runit()
            if self.outcome is not None and self.container is not None:
                if not self._after_exit():
                    return
                try:
                    self._boot_once()
                except (NsdashError, OSError) as e:
                    reason = e.message if isinstance(e, NsdashError) else str(e)
                    self._mark("exited", f"reboot failed: {reason}")
                    self.exit_status = 1
                    return

    def _handle_signals(self) -> None:
        while self.caught:
            signum = self.caught.pop(0)
            if signum == signal.SIGWINCH:
                self.local.signal(signum)
            else:
                self._stop_signal_received()

    def _check_registration(self) -> None:
        """machined may drop a registration whose unit systemd does not know (ours is
        a scope made by nsdash, not by systemd) when unit events from the previous
        boot arrive late; a short while after each registration, make sure it holds."""
        if self.registration is None or self.container is None or self.phase not in st.UP_STATES + ("starting",):
            return
        with contextlib.suppress(NsdashError):
            self.registration.ensure(self._state())

    @staticmethod
    def _drain(fd: int) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(fd, 4096):
                pass

    # ---------------------------------------------------------------- console

    def _pty_event(self, _mask: int) -> None:
        began = time.monotonic()
        if not self._pty_readable() and self._pty_retry is None:
            rest = self._pace.rest_after(self._pty_took, began, time.monotonic())
            if rest:
                self._pty_rest(rest)

    def _pty_rest(self, seconds: float) -> None:
        """Leave the console unread for SECONDS, the bucket being empty (issue 15; ConsolePace).

        A guest's `yes > /dev/console` never waits: read whenever the master polls readable,
        the console came in 40-byte pieces, 27,000 reads a second, each with its log write
        and its frame to every attacher, and every attacher woken as often (the dashboard's
        reader, `nsdash login`).  Resting a tick lets the PTY's buffer fill, so a flood costs
        one read, one log write and one frame per attacher a tick, and once the buffer is full
        the guest's writer waits (as on a real console) instead of taking a core."""
        self.unwatch(self.master)
        self._pty_retry = time.monotonic() + seconds

    def _pty_readable(self) -> bool:
        """Read the console until it would block (at most CONSOLE_BATCH bytes), then hand what
        came on at once; True at EIO (no slave open anywhere)."""
        chunks: list[bytes] = []
        took = 0
        eio = False
        while took < CONSOLE_BATCH:
            try:
                data = os.read(self.master, 65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                if e.errno != errno.EIO:
                    raise
                if self.slave >= 0:
                    self._pty_no_reader()
                eio = True
                break
            if not data:
                eio = True
                break
            chunks.append(data)
            took += len(data)
        self._pty_took = took
        if chunks:
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            if self.log is not None:
                self.log.write(data)
            self.local.output(data)
            self._broadcast(data)
        return eio

    def _pty_no_reader(self) -> None:
        """EIO from the master while the machine runs (after a hangup of the console).  The
        master then polls readable without pause, so stop watching it for a moment rather
        than spin; the machine and its attachers carry on."""
        if self._pty_retry is None:
            self.unwatch(self.master)
            self._pty_retry = time.monotonic() + self.PTY_RETRY

    def write_console(self, data: bytes) -> None:
        """Keyboard bytes for the console.  The PTY's input queue is small; a client that
        types faster than the machine reads loses the excess rather than blocking every
        other client."""
        if self.master >= 0:
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self.master, data)

    _write_console = write_console

    def set_winsize(self, rows: int, cols: int) -> None:
        # Kept for the next boot's console.  Through the master: the slave fd is hung up (EIO
        # on every ioctl) once systemd or getty has called vhangup() on the console; the
        # master always reaches the pair.
        self.winsize = (rows, cols)
        if self.master >= 0:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    _set_winsize = set_winsize

    def _mark(self, event: str, detail: str | None = None) -> None:
        """A separator in the console log, and to attached clients."""
        if self.log is not None:
            self._broadcast(self.log.mark(event, detail))

    def _event(self, event: str, **fields: Any) -> None:
        if self.conns:
            from nsdash.machines import protocol as proto

            self._broadcast(proto.event_frame(event, **fields), raw=True)

    def _broadcast(self, data: bytes, raw: bool = False) -> None:
        if not self.conns:
            return
        from nsdash.machines import protocol as proto

        wire = data if raw else proto.output_frames(data)
        for conn in list(self.conns.values()):
            if not conn.attached:
                continue
            if raw:
                # An event goes in its place in the stream, after the output that came before
                # it, even output skipped: the gap so far and its tail (a boot's last lines and
                # separator) first.  The tail while the queue stays within twice the limit (an
                # attacher that never reads, through a reboot loop, must not grow the supervisor).
                self._send(conn, self._gap(conn, len(conn.out) < 2 * CLIENT_BUFFER_LIMIT) + wire)
                continue
            # Behind is what the client has not taken yet, not what one look at a flooding console
            # handed it at once.  A slow attacher skips ahead, as a terminal would, rather than
            # being dropped (its pane would tell a machine that runs on from one that stopped).
            if conn.behind or len(conn.out) + len(wire) > CLIENT_BUFFER_LIMIT:
                conn.behind = True
                if not conn.skipped and self.log is not None:  # (the log has DATA already)
                    conn.skip_from = self.log.position - len(data)
                conn.skipped += len(data)
                continue
            self._send(conn, wire)

    def _answer_waiters(self) -> None:
        """Answer the stop requests that asked to wait for the end of this boot."""
        if not self.waiters:
            return  # (the foreground spawn's case: no protocol import for nothing)
        from nsdash.machines import protocol as proto

        waiters, self.waiters = self.waiters, []
        for conn, rid, op in waiters:
            if self.forced:
                self._send(conn, proto.error("killed", f"machine '{self.name}' {self.forced}", rid))
            else:
                self._send(conn, proto.ok(rid, op=op, boot=self.boot))

    # ---------------------------------------------------------------- bus calls

    def _bus_call(self, conn: _Conn, rid: Any, req: Request, leader: int) -> None:
        """Queue a bus-call for the worker (machines/busproxy.py); the answer comes back through
        the wake pipe.  Nothing here waits on the guest."""
        from nsdash.machines import protocol as proto

        if self.spec.private_users != "no":
            self._send(conn, proto.error("unsupported", "bus-call is not made for machines with a user "
                                                        "namespace of their own (-U)", rid))
            return
        if self.bus_proxy is None:
            from nsdash.machines.busproxy import BusProxy

            self.bus_proxy = BusProxy(self._wake_bus)
        from nsdash.machines.busproxy import Job

        try:
            pidfd = os.pidfd_open(leader)  # (busproxy.Job: the call is made while this process lives)
        except OSError:
            self._send(conn, proto.error("not-running", f"machine '{self.name}' is not running now", rid))
            return
        job = Job(conn, rid, leader, req.args or {}, pidfd)
        if not self.bus_proxy.submit(job):
            job.release()
            self._send(conn, proto.error("busy", "too many bus calls waiting; retry", rid))
            return
        conn.busy = True

    def _wake_bus(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"b")

    def _deliver_bus_replies(self) -> None:
        for conn, line in self.bus_proxy.take():
            conn.busy = False
            if conn.sock.fileno() < 0:
                continue  # the client left before its answer
            self._for_client(conn, self._bus_answer(conn, line))

    def _bus_answer(self, conn: _Conn, line: bytes) -> Callable[[], None]:
        def answer() -> None:
            self._send(conn, line)
            if conn.sock.fileno() >= 0:
                self._process_lines(conn)  # the requests that waited behind it

        return answer

    # ---------------------------------------------------------------- clients

    def _accept(self) -> None:
        from nsdash.machines import protocol as proto

        while True:
            try:
                fd, _ = self.listener._accept()
            except (BlockingIOError, InterruptedError):
                return
            sock = _socket.socket(fileno=fd)
            sock.setblocking(False)
            conn = _Conn(sock)
            creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, struct.calcsize("3i"))
            _pid, uid, _gid = struct.unpack("3i", creds)
            self.conns[fd] = conn
            self.watch(fd, self._conn_handler(conn))
            if uid != 0:
                # Defence in depth: the socket's mode already keeps others out.  The
                # connection stays open, unread, until the peer closes it: closing
                # with its request unread would reset it before it saw the error.
                conn.refused = True
                self._send(conn, proto.error("permission-denied", "only root may control machines"))

    def _conn_handler(self, conn: _Conn) -> Callable[[int], None]:
        return lambda mask: self._serve(conn, mask)

    def _serve(self, conn: _Conn, mask: int) -> None:
        def work() -> None:
            if mask & (POLLIN | _POLLERR):
                self._conn_readable(conn)
            if mask & POLLOUT and conn.sock.fileno() >= 0:
                self._flush(conn)

        self._for_client(conn, work)

    def _for_client(self, conn: _Conn, work: Callable[[], None]) -> None:
        """WORK for one client; whatever it raises ends that client's connection, not the machine."""
        from nsdash.machines import protocol as proto

        try:
            work()
        except Exception as e:  # noqa: BLE001 - one client's request must never bring the machine down
            message = f"{type(e).__name__}: {e}"[:500]
            # An attached client reads console frames: a JSON line there would be garbage to it.
            wire = proto.event_frame("error", code="internal", message=message) if conn.attached \
                else proto.error("internal", message)
            with contextlib.suppress(OSError, proto.BadMessage):
                conn.sock.send(bytes(conn.out) + wire)
            self._drop(conn)

    def _drop(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        if fd >= 0:
            self.unwatch(fd)
            self.conns.pop(fd, None)
            conn.sock.close()
        self.waiters = [w for w in self.waiters if w[0] is not conn]

    def _close_conns(self) -> None:
        for conn in list(self.conns.values()):
            with contextlib.suppress(OSError):
                conn.sock.setblocking(True)
                conn.sock.settimeout(0.5)
                conn.sock.sendall(bytes(conn.out))
            self._drop(conn)

    def _send(self, conn: _Conn, data: bytes) -> None:
        conn.out += data
        self._flush(conn)
        # Answers a client does not take: dropped (an attacher's output is bounded by _broadcast).
        if not conn.attached and len(conn.out) > CLIENT_BUFFER_LIMIT and conn.sock.fileno() >= 0:
            self._drop(conn)

    def _flush(self, conn: _Conn) -> None:
        try:
            while conn.out:
                n = conn.sock.send(conn.out)
                del conn.out[:n]
                if not conn.out and conn.behind:
                    conn.behind = False
                    conn.out += self._gap(conn)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._drop(conn)
            return
        if conn.closing and not conn.out:
            self._drop(conn)
            return
        fd = conn.sock.fileno()
        if fd in self.handlers:
            self.poller.modify(fd, POLLIN | (POLLOUT if conn.out else 0))

    def _gap(self, conn: _Conn, tail: bool = True) -> bytes:
        """What an attacher that was behind missed (once it has taken all it held, or before an
        event): the gap (a `skipped` event), then with TAIL the console's latest bytes, as a new
        attacher's replay, so it sees the screen the skipped output left (a flood's last line may
        be the last the machine prints for a while).  What it missed is shown whole when it is
        no more than that tail: it goes on from the attacher's last byte (skip_from), no gap
        to say (a small one after an event lost its first line to a safe start).  Nothing if it
        missed nothing since the last event."""
        from nsdash.machines import protocol as proto

        if not conn.skipped:
            return b""
        shown = b""
        if tail and self.log is not None:
            shown = self.log.tail_safe(min(conn.skipped, self.replay_bytes), since=conn.skip_from)
        gap, conn.skipped = conn.skipped - len(shown), 0
        if not gap:
            return proto.output_frames(shown)
        return proto.event_frame("skipped", bytes=gap) + (proto.output_frames(shown) if shown else b"")

    def _conn_readable(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)  # detaching (or a truncated request) never stops the machine
            return
        if conn.refused:
            return
        if conn.attached:
            self._console_input(conn, data)
            return
        conn.lines.push(data)
        self._process_lines(conn)

    def _process_lines(self, conn: _Conn) -> None:
        from nsdash.machines import protocol as proto

        if conn.busy:
            if len(conn.lines.buf) > proto.MAX_LINE:
                self._drop(conn)  # piling requests behind a bus-call: one at a time is the deal
            return
        while not conn.busy and (item := conn.lines.pop()) is not None:
            if isinstance(item, proto.BadMessage):
                self._send(conn, proto.error(item.code, item.message))
                continue
            self._request(conn, item)
            if conn.attached:
                rest = conn.lines.pending()
                if rest:
                    self._console_input(conn, rest)
                return

    def _console_input(self, conn: _Conn, data: bytes) -> None:
        from nsdash.machines import protocol as proto

        assert conn.frames is not None
        try:
            frames = conn.frames.feed(data)
        except proto.BadMessage as e:
            self._send(conn, proto.event_frame("error", code=e.code, message=e.message))
            conn.closing = True
            self._flush(conn)
            return
        for kind, payload in frames:
            if kind == proto.FRAME_INPUT:
                if self.spec.console != "read-only":
                    self._write_console(payload)
            elif kind == proto.FRAME_WINSIZE:
                try:
                    rows, cols = proto.parse_winsize(payload)
                    if rows and cols:
                        self._set_winsize(rows, cols)
                except proto.BadMessage as e:
                    self._send(conn, proto.event_frame("error", code=e.code, message=e.message))
            else:
                self._send(conn, proto.event_frame("error", code="bad-frame",
                                                   message="clients send only I and W frames"))

    def _request(self, conn: _Conn, req: Request | bytes) -> None:
        from nsdash.machines import protocol as proto

        if isinstance(req, bytes):
            try:
                req = proto.decode_request(req)
            except proto.BadMessage as e:
                self._send(conn, proto.error(e.code, e.message))
                return
        rid = req.id
        if not conn.greeted:
            if req.op != "hello":
                self._send(conn, proto.error("out-of-order", "send hello first", rid))
                return
            if req.arg("version") != proto.VERSION:
                self._send(conn, proto.error(
                    "version", f"protocol version {req.arg('version')} not supported "
                               f"(this supervisor speaks {proto.VERSION})", rid))
                return
            conn.greeted = True
            # bus_call: this supervisor makes bus-calls for this machine (not under -U, where
            # host root is nobody to the guest's bus: the client connects from inside instead)
            self._send(conn, proto.ok(rid, version=proto.VERSION, machine=self.name,
                                      bus_call=self.spec.private_users == "no"))
            return
        if req.op == "hello":
            self._send(conn, proto.error("out-of-order", "hello was already sent", rid))
            return
        if req.op == "status":
            self._send(conn, proto.ok(rid, status=self.status()))
            self._health_on_demand()
            return
        if self.container is None or self.container.leader is None:
            self._send(conn, proto.error("not-running", f"machine '{self.name}' is not running now", rid))
            return
        if req.op == "bus-call":
            self._bus_call(conn, rid, req, self.container.leader)
            return
        if req.op == "attach":
            if not self.use_pty:
                self._send(conn, proto.error("no-console", f"machine '{self.name}' runs with --console=pipe: "
                                                           "its console is the terminal that started it", rid))
                return
            self._send(conn, proto.ok(rid, replay=True))
            conn.frames = proto.FrameReader()
            if req.arg("rows") and req.arg("cols"):
                self._set_winsize(req.arg("rows"), req.arg("cols"))
            history = self.log.tail_safe(req.arg("replay", self.replay_bytes)) if self.log is not None else b""
            if history:
                self._send(conn, proto.output_frames(history))
            return
        try:
            if req.op == "poweroff":
                self.poweroff(req.arg("timeout", STOP_TIMEOUT))
            elif req.op == "reboot":
                self.reboot(req.arg("timeout", STOP_TIMEOUT))
            elif req.op == "terminate":
                self.terminate()
            elif req.op == "kill":
                self.kill(req.arg("signal"), req.arg("whom", "leader"))
        except (OSError, NsdashError) as e:
            self._send(conn, proto.error("failed", str(e), rid))
            return
        if req.op in ("poweroff", "reboot", "terminate") and req.arg("wait"):
            self.waiters.append((conn, rid, req.op))  # answered when this boot ends (_answer_waiters)
            return
        self._send(conn, proto.ok(rid, leader=self.container.leader, boot=self.boot))
