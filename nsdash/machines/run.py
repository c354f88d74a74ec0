"""`nsdash spawn` in a terminal: the boot engine with the caller's terminal as its console.

The machine runs under the same engine as a detached one (machines/supervisor.py:
state entry, control socket, sd_notify, init-aware stops, reboot loop, exit
codes); this module is only the terminal side, an in-process console client.
It puts the terminal in raw mode (before the container starts, so early keys,
^] included, reach us), passes window-size changes on, kills the container on
^] three times within a second, and prints systemd-nspawn's messages.  With
--console=pipe there is no PTY: the payload keeps our stdin, stdout and stderr.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import struct
import sys
import termios
import time
import tty

from nsdash.errors import UsageError
from nsdash.launcher.plan import signal_name
from nsdash.launcher.spec import ContainerSpec
from nsdash.machines.supervisor import LocalConsole, Supervisor
from nsdash.system.fdio import writable
from nsdash.system.ready import wait

if False:  # typing.TYPE_CHECKING without importing typing on the spawn path
    from nsdash.launcher.container import Outcome
    from nsdash.launcher.modes import ConsoleMode

ESCAPE = 0x1D  # ^]
ESCAPE_COUNT = 3
ESCAPE_WINDOW = 1.0


def console_mode(requested: ConsoleMode, stdin_tty: bool, stdout_tty: bool) -> ConsoleMode:
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


def _copy_winsize(src: int, engine: Supervisor) -> None:
    """The terminal SRC's size for the machine's console (this boot's and the next ones')."""
    with contextlib.suppress(OSError):
        rows, cols = struct.unpack("HHHH", fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8))[:2]
        if (rows, cols) != (0, 0):
            engine.set_winsize(rows, cols)


# Our terminal or reader went away (`| head`, a hung-up terminal): the machine runs on, quietly,
# as systemd-nspawn's PTY forwarder treats them.  Any other write error is said once.
_HANGUPS = frozenset((errno.EPIPE, errno.ECONNRESET, errno.EIO))


def _write_all(fd: int, data: bytes) -> OSError | None:
    """Write all of DATA to FD (non-blocking); the error that stopped it, if it was not a hang-up."""
    while data:
        try:
            n = os.write(fd, data)
        except BlockingIOError:
            wait((), [fd], 1.0)
            continue
        except OSError as e:
            return None if e.errno in _HANGUPS else e
        data = data[n:]
    return None


class Terminal(LocalConsole):
    """The caller's terminal as the engine's in-process console client."""

    def __init__(self, spec: ContainerSpec, mode: str) -> None:
        self.spec = spec
        self.mode = mode
        self.raw = False
        self.stdin_tty = os.isatty(0)
        self.forward_input = mode == "interactive"
        self.show_output = mode in ("interactive", "read-only")
        self.escape = EscapeDetector()
        self.engine: Supervisor | None = None
        self.lost_output = False  # the guest's output could not be written: the exit status says so
        self._saved: list | None = None

    def __enter__(self) -> Terminal:
        if self.mode == "interactive" and self.stdin_tty:
            self._saved = termios.tcgetattr(0)
            tty.setraw(0)
            self.raw = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, self._saved)
            self.raw = False

    def say(self, text: str) -> None:
        """One of nspawn's messages on stderr (an explicit carriage return in raw mode)."""
        if not self.spec.quiet:
            with contextlib.suppress(OSError):
                sys.stderr.write(text + ("\r\n" if self.raw else "\n"))
                sys.stderr.flush()

    # ---- LocalConsole

    def bind(self, engine: Supervisor) -> None:
        self.engine = engine
        if engine.use_pty and self.stdin_tty:
            _copy_winsize(0, engine)
        if self.forward_input and engine.use_pty:
            engine.watch(0, self._stdin_readable)

    def output(self, data: bytes) -> None:
        if self.show_output:
            error = _write_all(1, data)
            if error is not None:  # a full disk (`> /dev/full`), say: once, and the machine runs on
                self.show_output = False
                self.lost_output = True
                with contextlib.suppress(OSError):
                    sys.stderr.write(f"nsdash: write error: {error.strerror}; the guest's output is dropped "
                                     "from here on (free some space or send it elsewhere)"
                                     + ("\r\n" if self.raw else "\n"))
                    sys.stderr.flush()

    def booted(self, boot: int) -> None:
        if boot != 1:
            return
        self.say(f"Spawning container {self.spec.machine} on {self.spec.image or self.spec.directory}.")
        if self.raw:
            self.say("Press ^] three times within 1s to kill container.")

    def ended(self, outcome: Outcome, then: str, forced: str | None) -> None:
        name = self.spec.machine
        if forced:
            self.say(f"Container {name} {forced}.")
        if then in ("reboot", "reboot-exit"):
            self.say(f"Container {name} is being rebooted.")
        elif then == "reboot-loop":
            self.say(f"Container {name} rebooted too often (more than 5 times in 10 s); stopped.")
        elif outcome.kind in ("poweroff", "reboot"):
            self.say(f"Container {name} has been shut down.")
        elif outcome.kind == "killed":
            self.say(f"Container {name} terminated by signal {signal_name(outcome.status)}.")
        elif outcome.status == 0:
            self.say(f"Container {name} exited successfully.")
        else:
            self.say(f"Container {name} failed with error code {outcome.status}.")

    def signal(self, signum: int) -> None:
        if signum == signal.SIGWINCH and self.engine is not None and self.engine.use_pty and self.stdin_tty:
            _copy_winsize(0, self.engine)

    # ---- input

    def _stdin_readable(self, _mask: int) -> None:
        assert self.engine is not None
        try:
            data = os.read(0, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.engine.unwatch(0)  # piped input ended: keep showing output
        elif self.raw and self.escape.feed(data):
            self.engine.kill_all()
            self.engine.unwatch(0)
        else:
            self.engine.write_console(data)


def run_foreground(spec: ContainerSpec, kept: list[object] | None = None) -> int:
    """Run SPEC with the caller's terminal as its console; the exit code for nsdash spawn.
    KEPT: where the caller that ends its process right after (os._exit) keeps the engine, its
    last Container and their plans, so that they go with the process's memory, not object by
    object after PID 1 has gone (some 60 us of the tool's exit, then)."""
    mode = console_mode(spec.console, os.isatty(0), os.isatty(1))
    if mode in ("interactive", "read-only") and not writable(1):
        # (systemd-nspawn drops the output then and exits 0; --console=pipe hands the payload our
        # descriptors, which then says so itself, and passive shows nothing: both run as asked)
        raise UsageError("standard output is closed (or read-only): the guest's console has nowhere to go",
                         "run it with its output open (>/dev/null drops it; --console=passive shows none)")
    with Terminal(spec, mode) as terminal:
        engine = Supervisor(spec, console=terminal, pty=mode != "pipe", foreground=True)
        if kept is not None:
            kept.append(engine)
        code = engine.run()
    return 1 if code == 0 and terminal.lost_output else code
