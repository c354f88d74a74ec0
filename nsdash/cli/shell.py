"""`nsdash shell NAME [CMD...]`: run a command inside a running machine.

launcher/join.py joins the machine; this module gives the command its stdio
and carries the bytes.  In a terminal the command gets a new PTY pair, made in
the machine's own devpts, that nsdash bridges (raw mode, the window size
follows SIGWINCH), as machinectl shell does: never the caller's own terminal, which a process inside could
reopen through /proc/PID/fd/0, keep after the shell exits and use to write
to (or read from) the caller's prompt.  Once the command has exited the PTY
is closed, and what stays inside holds a hung-up terminal.  When stdin is
not a terminal, stdin goes in as it is, and stdout and stderr too unless they
are terminals (those get a pipe nsdash copies from).
Unlike `machinectl shell`, the command's exit status is passed back.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import signal
import struct
import termios
from collections.abc import Iterator
from typing import TYPE_CHECKING

from nsdash.errors import NsdashError
from nsdash.system.terminal import raw

if TYPE_CHECKING:
    from nsdash.launcher.join import Machine

INPUT_BUFFER = 64 * 1024  # typed or piped bytes waiting for the command to read them


def shell(name: str, command: list[str], env: dict[str, str]) -> int:
    from nsdash.launcher.join import Machine
    from nsdash.machines import client

    status = client.status(name)
    leader = status.get("leader")
    if not leader:
        raise NsdashError(f"machine '{name}' has no running leader", f"see 'nsdash status {name}'")
    with Machine.open(name, leader, status.get("cgroup")) as machine:
        if os.isatty(0):
            return _in_new_pty(machine, command, env)
        return _with_pipes(machine, command, env)


# ---------------------------------------------------------------- a terminal: a new PTY


def _in_new_pty(machine: Machine, command: list[str], env: dict[str, str]) -> int:
    # The new terminal starts as the caller's is set (erase key, flow control, size).
    mode = termios.tcgetattr(0)
    pid, master = machine.spawn_in_pty(command, env, mode, _winsize(0))
    machine.close()  # its namespaces and root stay with the helper only
    if master is None:
        return _wait(pid)  # it could not join, and said why
    try:
        with raw(0), _signals() as wakeup:
            _bridge_pty(pid, master, wakeup)
    finally:
        os.close(master)  # whatever stays inside now holds a hung-up terminal
    return _wait(pid)


def _bridge_pty(pid: int, master: int, wakeup: int) -> None:
    """Copy the caller's keys to MASTER and its output back until the helper PID exits."""
    os.set_blocking(master, False)
    pidfd = os.pidfd_open(pid)
    pending = bytearray()
    stdin_open, master_open = True, True
    try:
        while True:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            poller.register(wakeup, select.POLLIN)
            if master_open:
                poller.register(master, select.POLLIN | (select.POLLOUT if pending else 0))
            if stdin_open and len(pending) < INPUT_BUFFER:
                poller.register(0, select.POLLIN)
            events = dict(poller.poll())
            if wakeup in events:
                _drain(wakeup)
                _copy_winsize(0, master)
            if events.get(0):
                data = os.read(0, 65536)
                if data:
                    pending += data
                else:
                    stdin_open = False
            if master_open and events.get(master, 0) & select.POLLOUT and pending:
                with contextlib.suppress(BlockingIOError):
                    del pending[:os.write(master, pending)]
            if master_open and events.get(master, 0) & (select.POLLIN | select.POLLHUP | select.POLLERR):
                master_open = _copy_out(master, 1)
            if pidfd in events:
                if master_open:
                    _copy_out(master, 1)  # what the command wrote before it exited
                return
    finally:
        os.close(pidfd)


@contextlib.contextmanager
def _signals() -> Iterator[int]:
    """A descriptor that turns readable on SIGWINCH; SIGTERM and SIGHUP end the bridge (the
    terminal is restored, the PTY closed: the command inside gets its hangup)."""
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    old_wakeup = signal.set_wakeup_fd(w, warn_on_full_buffer=False)

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    old = {sig: signal.signal(sig, handler) for sig, handler in
           ((signal.SIGWINCH, lambda *_: None), (signal.SIGTERM, stop), (signal.SIGHUP, stop))}
    try:
        yield r
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(old_wakeup)
        os.close(r)
        os.close(w)


def _winsize(tty_fd: int) -> bytes | None:
    try:
        return fcntl.ioctl(tty_fd, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
    except OSError:
        return None


def _copy_winsize(tty_fd: int, master: int) -> None:
    size = _winsize(tty_fd)
    if size is not None:
        with contextlib.suppress(OSError):
            fcntl.ioctl(master, termios.TIOCSWINSZ, size)


# ---------------------------------------------------------------- no terminal: pipes


def _with_pipes(machine: Machine, command: list[str], env: dict[str, str]) -> int:
    stdio = [0, 1, 2]
    relays: list[tuple[int, int]] = []  # (read end, where its bytes go)
    try:
        for fd in (1, 2):
            if os.isatty(fd):
                r, w = os.pipe2(os.O_CLOEXEC)
                stdio[fd] = w
                relays.append((r, fd))
        pid = machine.spawn(command, env, (stdio[0], stdio[1], stdio[2]))
    finally:
        for fd in stdio[1:]:
            if fd > 2:
                os.close(fd)
    machine.close()
    try:
        _relay(pid, relays)
    finally:
        for r, _ in relays:
            os.close(r)
    return _wait(pid)


def _relay(pid: int, relays: list[tuple[int, int]]) -> None:
    """Copy each pipe to its terminal until the helper PID exits (not until EOF: a process
    left inside may hold the pipe open)."""
    if not relays:
        return
    for r, _ in relays:
        os.set_blocking(r, False)
    pidfd = os.pidfd_open(pid)
    try:
        open_ = dict(relays)
        while True:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            for r in open_:
                poller.register(r, select.POLLIN)
            try:
                events = dict(poller.poll())
            except KeyboardInterrupt:
                _interrupt(pid)
                continue
            for r in list(open_):
                if events.get(r) and not _copy_out(r, open_[r]):
                    del open_[r]
            if pidfd in events:
                for r, dest in open_.items():
                    _copy_out(r, dest)
                return
    finally:
        os.close(pidfd)


# ---------------------------------------------------------------- shared


def _copy_out(src: int, dest: int) -> bool:
    """Copy what SRC (non-blocking) holds now to DEST; False once SRC is at its end."""
    while True:
        try:
            data = os.read(src, 65536)
        except BlockingIOError:
            return True
        except OSError as e:
            if e.errno == errno.EIO:  # a PTY master whose slave nobody holds any more
                return False
            raise
        if not data:
            return False
        view = memoryview(data)
        while view:
            view = view[os.write(dest, view):]


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 256):
            pass


def _interrupt(pid: int) -> None:
    """^C at the caller: the helper passes it on to the command (they share no terminal)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)


def _wait(pid: int) -> int:
    from nsdash.launcher.join import exit_status

    while True:
        try:
            _, st = os.waitpid(pid, 0)
            return exit_status(st)
        except InterruptedError:
            continue
        except KeyboardInterrupt:
            _interrupt(pid)
