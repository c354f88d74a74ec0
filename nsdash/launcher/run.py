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
from nsdash.launcher.spec import ContainerSpec

ESCAPE = 0x1D  # ^]
ESCAPE_COUNT = 3
ESCAPE_WINDOW = 1.0
REBOOT_EXIT = 133


def console_mode(requested: str, stdin_tty: bool, stdout_tty: bool) -> str:
    """The console mode actually used (systemd-nspawn's rules for autopipe)."""
    if requested == "autopipe":
        return "interactive" if stdin_tty and stdout_tty else "pipe"
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


def _say(spec: ContainerSpec, text: str) -> None:
    if not spec.quiet:
        sys.stderr.write(text + "\n")
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


def run_foreground(spec: ContainerSpec) -> int:
    """Run SPEC with the caller's terminal as its console; the exit code for nsdash spawn."""
    stdin_tty = os.isatty(0)
    mode = console_mode(spec.console, stdin_tty, os.isatty(1))
    first = True

    def started() -> None:
        nonlocal first
        if first:
            _say(spec, f"Spawning container {spec.machine} on {spec.directory}.")
            if mode == "interactive" and stdin_tty:
                _say(spec, "Press ^] three times within 1s to kill container.")
        first = False

    while True:
        outcome = _run_once(spec, mode, started)
        if outcome.kind == "reboot":
            if spec.reboot_exit:
                _say(spec, f"Container {spec.machine} is being rebooted.")
                return REBOOT_EXIT
            _say(spec, f"Container {spec.machine} is being rebooted.")
            continue
        if outcome.kind == "poweroff":
            _say(spec, f"Container {spec.machine} has been shut down.")
        elif outcome.kind == "killed":
            _say(spec, f"Container {spec.machine} terminated by signal {signal.Signals(outcome.status).name}.")
        elif outcome.status == 0:
            _say(spec, f"Container {spec.machine} exited successfully.")
        else:
            _say(spec, f"Container {spec.machine} failed with error code {outcome.status}.")
        return outcome.exit_code()


def _run_once(spec: ContainerSpec, mode: str, started: Callable[[], None]) -> Outcome:
    if mode == "pipe":
        with Container(spec) as c:
            c.start()
            started()
            return _loop(c, None, None, mode)
    master, slave = os.openpty()
    try:
        if os.isatty(0):
            _copy_winsize(0, master)
        with Container(spec, console_fd=slave) as c:
            c.start()
            started()
            return _loop(c, master, slave, mode)
    finally:
        for fd in (master, slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def _loop(c: Container, master: int | None, slave: int | None, mode: str) -> Outcome:
    """Shuttle bytes and signals until PID 1 ends."""
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    caught: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        caught.append(signum)

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGWINCH)
    old_handlers = {s: signal.signal(s, on_signal) for s in handled}
    old_wakeup = signal.set_wakeup_fd(wake_w)
    stdin_fd = 0
    forward_input = master is not None and mode == "interactive"
    show_output = master is not None and mode in ("interactive", "read-only")
    raw_saved = None
    if forward_input and os.isatty(stdin_fd):
        raw_saved = termios.tcgetattr(stdin_fd)
        tty.setraw(stdin_fd)
    escape = EscapeDetector()
    stdin_open = forward_input
    terminating = 0
    try:
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
                elif raw_saved is not None and escape.feed(data):
                    c.signal(signal.SIGKILL, "all")
                    stdin_open = False
                elif master is not None:
                    _write_all(master, data)
    finally:
        if raw_saved is not None:
            termios.tcsetattr(stdin_fd, termios.TCSADRAIN, raw_saved)
        signal.set_wakeup_fd(old_wakeup)
        for s, h in old_handlers.items():
            signal.signal(s, h)
        os.close(wake_r)
        os.close(wake_w)


def _drain(master: int) -> None:
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            return
        if not data:
            return
        _write_all(1, data)
