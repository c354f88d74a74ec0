"""The foreground run loop: what `nsdash spawn` does in a terminal.

The caller's terminal is bridged to the container's console (a PTY whose slave
is the container's /dev/console), in raw mode with window-size changes passed
on, as systemd-nspawn does.  ^] three times within a second kills the
container.  A reboot starts the container again in this same process unless
--reboot=exit asked for exit code 133.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import signal
import struct
import sys
import termios
import time
import tty
from collections.abc import Callable

from nsdash.launcher.container import Container, Outcome
from nsdash.launcher.plan import new_uuid, signal_name
from nsdash.launcher.spec import ContainerSpec

if False:  # typing.TYPE_CHECKING without importing typing on the spawn path
    from nsdash.launcher.cgroup import MachineCgroup
    from nsdash.machines.machined import Registration

ESCAPE = 0x1D  # ^]
ESCAPE_COUNT = 3
ESCAPE_WINDOW = 1.0
REBOOT_EXIT = 133


def console_mode(requested: str, stdin_tty: bool, stdout_tty: bool) -> str:
    """The console mode actually used (systemd-nspawn's rules for autopipe)."""
    if requested == "autopipe":
        return "interactive" if stdin_tty and stdout_tty else "pipe"
    if requested == "interactive" and not stdin_tty:
        return "read-only"  # nspawn's default off a terminal; the spec cannot tell us it was explicit
    return requested


class EscapeDetector:
    """Counts ^] presses; true once three arrive within a second."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def feed(self, data: bytes, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        for byte in data:
            if byte == ESCAPE:
                self.times = [t for t in self.times if now - t < ESCAPE_WINDOW] + [now]
                if len(self.times) >= ESCAPE_COUNT:
                    return True
            else:
                self.times = []
        return False


_raw = False  # the terminal is in raw mode: lines need an explicit carriage return


def _say(spec: ContainerSpec, text: str) -> None:
    if not spec.quiet:
        sys.stderr.write(text + ("\r\n" if _raw else "\n"))
        sys.stderr.flush()


def _copy_winsize(src: int, dst: int) -> None:
    with contextlib.suppress(OSError):
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        if struct.unpack("HHHH", size)[:2] != (0, 0):
            fcntl.ioctl(dst, termios.TIOCSWINSZ, size)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            n = os.write(fd, data)
        except BlockingIOError:
            select.select([], [fd], [], 1.0)
            continue
        data = data[n:]


class _Signals:
    """Signals caught from before the first start to the end: none may kill us mid-set-up."""

    HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGWINCH)

    def __init__(self) -> None:
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.caught: list[int] = []
        self.stop_requests = 0
        self._old = {s: signal.signal(s, self._on_signal) for s in self.HANDLED}
        self._old_wakeup = signal.set_wakeup_fd(self.wake_w)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.caught.append(signum)
        if signum != signal.SIGWINCH:
            self.stop_requests += 1

    def restore(self) -> None:
        signal.set_wakeup_fd(self._old_wakeup)
        for s, h in self._old.items():
            signal.signal(s, h)
        os.close(self.wake_r)
        os.close(self.wake_w)


def run_foreground(spec: ContainerSpec) -> int:
    """Run SPEC with the caller's terminal as its console; the exit code for nsdash spawn."""
    global _raw
    stdin_tty = os.isatty(0)
    mode = console_mode(spec.console, stdin_tty, os.isatty(1))
    saved = None
    if mode == "interactive" and stdin_tty:
        # Raw before the container starts, so early keys (^] included) reach us, not the line editor.
        saved = termios.tcgetattr(0)
        tty.setraw(0)
        _raw = True
    # One identity for the whole session: a reboot must not give the machine a new UUID
    # (systemd derives a missing machine ID from it), as with systemd-nspawn.
    session_uuid = new_uuid()
    sigs = _Signals()
    registration = None
    try:
        registration = _registration(spec)
        return _run_all(spec, mode, stdin_tty, sigs, session_uuid, registration)
    finally:
        if registration is not None:
            registration.unregister()
        sigs.restore()
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
            _raw = False


def _registration(spec: ContainerSpec) -> Registration | None:
    """systemd-machined registration for a run in the terminal, as systemd-nspawn does.

    With --register=auto on a host not booted with systemd there is no machined
    to ask: skip it without importing the D-Bus client, which would cost every
    spawn (a system bus alone, as here when a test starts one, is not enough).
    """
    if spec.register == "no":
        return None
    if spec.register == "auto" and not os.path.isdir("/run/systemd/system"):
        return None  # not booted with systemd (sd_booted()): no machined to find
    from nsdash.machines import machined

    return machined.Registration.open(required=spec.register == "yes")


def _register(registration: Registration, spec: ContainerSpec, c: Container, session_uuid: str) -> None:
    from nsdash.machines.state import MachineState

    netif = getattr(c, "netif", None)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    registration.register(MachineState(
        name=spec.machine, root=str(spec.directory), leader=c.leader, cgroup=c.cgroup,
        supervisor=os.getpid(), started=now, since=now, uuid=session_uuid,
        netif=[netif] if isinstance(netif, str) else list(netif or [])))


def _run_all(spec: ContainerSpec, mode: str, stdin_tty: bool, sigs: _Signals, session_uuid: str,
             registration: Registration | None = None) -> int:
    first = True

    def started(c: Container) -> None:
        nonlocal first
        if registration is not None:
            _register(registration, spec, c, session_uuid)
        if first:
            _say(spec, f"Spawning container {spec.machine} on {spec.directory}.")
            if mode == "interactive" and stdin_tty:
                _say(spec, "Press ^] three times within 1s to kill container.")
        first = False

    while True:
        outcome = _run_once(spec, mode, started, sigs, session_uuid)
        if outcome.kind == "reboot":
            _say(spec, f"Container {spec.machine} is being rebooted.")
            if spec.reboot_exit:
                return REBOOT_EXIT
            if not sigs.stop_requests:
                continue
            outcome = Outcome("poweroff", 0)  # asked to stop while it rebooted: do not start again
        if outcome.kind == "poweroff":
            _say(spec, f"Container {spec.machine} has been shut down.")
        elif outcome.kind == "killed":
            _say(spec, f"Container {spec.machine} terminated by signal {signal_name(outcome.status)}.")
        elif outcome.status == 0:
            _say(spec, f"Container {spec.machine} exited successfully.")
        else:
            _say(spec, f"Container {spec.machine} failed with error code {outcome.status}.")
        return outcome.exit_code()


def _cgroup_backend(spec: ContainerSpec) -> MachineCgroup | None:
    """A systemd scope for this run where systemd manages the host (not --keep-unit),
    else None: nsdash makes the cgroups itself (machines/units.py)."""
    if spec.keep_unit or not os.path.isdir("/run/systemd/system"):
        return None  # without the D-Bus client's import cost on hosts without systemd
    from nsdash.machines import units

    return units.cgroup_backend(spec)


def _run_once(spec: ContainerSpec, mode: str, started: Callable[[Container], None], sigs: _Signals,
              session_uuid: str) -> Outcome:
    if mode == "pipe":
        with Container(spec, uuid=session_uuid, cgroup=_cgroup_backend(spec)) as c:
            c.start()
            started(c)
            return _loop(c, None, mode, sigs)
    master, slave = os.openpty()
    try:
        if os.isatty(0):
            _copy_winsize(0, master)
        with Container(spec, console_fd=slave, uuid=session_uuid, cgroup=_cgroup_backend(spec)) as c:
            c.start()
            started(c)
            return _loop(c, master, mode, sigs)
    finally:
        for fd in (master, slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def _loop(c: Container, master: int | None, mode: str, sigs: _Signals) -> Outcome:
    """Shuttle bytes and signals until PID 1 ends."""
    wake_r, caught = sigs.wake_r, sigs.caught
    stdin_fd = 0
    forward_input = master is not None and mode == "interactive"
    show_output = master is not None and mode in ("interactive", "read-only")
    escape = EscapeDetector()
    stdin_open = forward_input
    terminating = 0
    # A signal caught while starting is still in `caught`, handled on the first turn.
    if master is not None:
        os.set_blocking(master, False)
    while True:
        outcome = c.poll()
        if outcome is not None:
            if master is not None and show_output:
                _drain(master)
            return outcome
        rlist = [wake_r]
        if c.pidfd is not None:
            rlist.append(c.pidfd)
        if c.notify_fd is not None:
            rlist.append(c.notify_fd)
        if master is not None:
            rlist.append(master)
        if stdin_open:
            rlist.append(stdin_fd)
        try:
            ready, _, _ = select.select(rlist, [], [], None if c.pidfd is not None else 0.1)
        except InterruptedError:
            ready = []
        if wake_r in ready:
            with contextlib.suppress(OSError):
                os.read(wake_r, 512)
        while caught:
            signum = caught.pop(0)
            if signum == signal.SIGWINCH and master is not None and os.isatty(stdin_fd):
                _copy_winsize(stdin_fd, master)
            elif signum != signal.SIGWINCH:
                # nspawn: SIGTERM asks the payload to stop with the kill signal; again means now.
                terminating += 1
                if terminating == 1:
                    c.terminate()
                else:
                    c.signal(signal.SIGKILL, "all")
        if c.notify_fd is not None and c.notify_fd in ready:
            c.read_notify()
        if master is not None and master in ready:
            try:
                data = os.read(master, 65536)
            except OSError as e:
                if e.errno != errno.EIO:
                    raise
                data = b""
            if data and show_output:
                _write_all(1, data)
        if stdin_open and stdin_fd in ready:
            data = os.read(stdin_fd, 4096)
            if not data:
                stdin_open = False
            elif _raw and escape.feed(data):
                c.signal(signal.SIGKILL, "all")
                stdin_open = False
            elif master is not None:
                _write_all(master, data)


def _drain(master: int) -> None:
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            return
        if not data:
            return
        _write_all(1, data)
