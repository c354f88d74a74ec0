"""The far side of -H: `nsdash _remote`, started by sshd for one session, never a daemon.

It greets with its protocol version, then runs each requested verb as
`nsdash VERB ...` in a forked child (the same nsdash, so every verb behaves
and sanitises exactly as it does when typed on that host) on a channel of its
own: with pipes, or in a new PTY when the client has a terminal (login,
shell).  Output goes back as "out" messages, the exit status as "exit".

When the connection ends (the client quit, ssh dropped) the far side's stdin
closes: every verb still running gets SIGHUP, as a terminal hang-up would
give it, then SIGKILL, and the session ends.  Nothing stays behind but what
a verb itself started on purpose (a machine after `start`).
"""

from __future__ import annotations

import gc
import io
import os
import sys
import time

from nsdash.remote import REMOTE_VERBS
from nsdash.remote import protocol as p
from nsdash.system.ready import readable

# Every -H command pays for this process's start, so it imports what serving needs and no more
# (python -X importtime): not dataclasses (inspect, ast, dis: a quarter of the start), typing,
# selectors, contextlib or signal (enum); the terminal's (fcntl, termios, struct) and signal
# only where a verb has a PTY or is hung up.
TYPE_CHECKING = False  # mypy takes this as true
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    RunVerb = Callable[[list[str]], int]

HANGUP_GRACE = 3.0  # seconds a verb has after SIGHUP before SIGKILL


class Channel:
    """One verb running for the client: its process (the leader of a session of its own)."""

    __slots__ = ("ch", "pid", "outputs", "stdin", "code")

    def __init__(self, ch: int, pid: int, outputs: dict[int, int], stdin: int | None) -> None:
        self.ch, self.pid = ch, pid
        self.outputs = outputs  # our read end -> the fd it stands for (1, 2)
        self.stdin = stdin  # our write end of the verb's input (the PTY master, or a pipe)
        self.code: int | None = None  # its exit status, once reaped

    def poll(self, block: bool = False) -> int | None:
        if self.code is None:
            pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
            if pid:
                self.code = os.waitstatus_to_exitcode(status)
        return self.code


def _set_winsize(fd: int, rows: int, cols: int) -> None:
    import contextlib
    import fcntl
    import struct
    import termios

    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _child_env(term: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NSDASH_HOST",)}  # never hop on
    if term:
        env["TERM"] = term
    return env


def _bounded(value: Any, low: int, high: int) -> int:
    return max(low, min(high, value)) if isinstance(value, int) else low


def _fork_verb(argv: list[str], stdio: tuple[int, int, int], env: dict[str, str], tty: bool,
               run_verb: RunVerb) -> int:
    """Run `nsdash ARGV` in a child of ours on STDIO, in a session of its own; its PID.

    A fork, not a new interpreter: this process has Python and nsdash loaded
    already, and a second start would double what every remote command costs.
    The child takes the verb's stdio as Python's own unbuffered streams (as
    `python -u` has them), so `journal -f` lines leave as they are written."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        gc.disable()  # as a new `nsdash` starts: off while the verb imports (cli.main turns it on)
        os.setsid()
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)
        if tty:  # after setsid: the PTY becomes the verb's controlling terminal
            import fcntl
            import termios

            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        os.closerange(3, 1 << 16)  # our other channels' ends and the ssh channel
        # SIGPIPE stays ignored, as Python starts a program (and as this process keeps it): EPIPE
        os.environ.clear()
        os.environ.update(env)
        # What the verb's own process would have had: a verb that re-executes itself (the
        # sealed copy of the interpreter, before joining a machine) must run the verb, not us.
        sys.orig_argv = [sys.executable, "-m", "nsdash", *argv]
        sys.argv = [sys.argv[0], *argv]
        encoding = sys.stdout.encoding if sys.stdout else "utf-8"
        sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding=encoding)
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding=encoding,
                                      write_through=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding=encoding,
                                      errors="backslashreplace", write_through=True)
        code = run_verb(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException as e:  # nothing may return into the server's loop from here
        import contextlib

        with contextlib.suppress(BaseException):
            os.write(2, f"nsdash: {type(e).__name__}: {e}\n".encode(errors="replace"))
    finally:
        try:  # noqa: SIM105  (contextlib imports collections and functools: off every verb's path)
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:
            pass
        os._exit(code)
    raise AssertionError("unreachable")


def start_channel(message: dict[str, Any], run_verb: RunVerb) -> Channel | str:
    """Start the verb MESSAGE asks for; a sentence when it is not one we run."""
    ch, argv, tty = message.get("ch"), message.get("argv"), message.get("tty")
    if not isinstance(ch, int) or not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        return "a malformed run request"
    if not argv or argv[0] not in REMOTE_VERBS:
        return f"'{argv[0] if argv else ''}' is not a verb nsdash runs over -H"
    version = message.get("v")
    if version is not None and not (isinstance(version, list) and version[:1] == [p.MAJOR]):
        theirs = ".".join(str(x) for x in version) if isinstance(version, list) else "?"
        return (f"this host speaks nsdash protocol {p.MAJOR}.{p.MINOR}, the client {theirs[:20]}; "
                "install the same nsdash version on both hosts")
    sys.stdout.flush()
    sys.stderr.flush()
    if isinstance(tty, dict):
        master, slave = os.openpty()
        os.set_inheritable(master, False)
        _set_winsize(slave, _bounded(tty.get("rows"), 1, 1000), _bounded(tty.get("cols"), 1, 1000))
        term = tty.get("term") if isinstance(tty.get("term"), str) else None
        pid = _fork_verb(argv, (slave, slave, slave), _child_env(term), True, run_verb)
        os.close(slave)
        os.set_blocking(master, False)
        return Channel(ch, pid, {master: 1}, master)
    if message.get("stdin"):
        stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
    else:
        stdin_r, stdin_w = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), None
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    pid = _fork_verb(argv, (stdin_r, out_w, err_w), _child_env(None), False, run_verb)
    for fd in (stdin_r, out_w, err_w):
        os.close(fd)
    for fd in (out_r, err_r):
        os.set_blocking(fd, False)
    return Channel(ch, pid, {out_r: 1, err_r: 2}, stdin_w)


class Server:
    """The session: the client's messages in on RFILE, ours out on WFILE."""

    def __init__(self, rfd: int, wfd: int, run_verb: RunVerb) -> None:
        self.rfd, self.wfd, self.run_verb = rfd, wfd, run_verb
        self.channels: dict[int, Channel] = {}
        self.outputs: dict[int, Channel] = {}  # a verb's output we read -> its channel
        self.decoder = p.Decoder()
        self.client_open = True  # until the client's end closes, or writing to it fails
        self.last: int | None = None  # the channel whose end ends the session ("last" in its run)
        self.done = False  # that channel has ended: the session is over, whatever the client sends

    def send(self, data: bytes) -> None:
        """DATA to the client; if it is gone (the ssh channel closed: EPIPE), the session ends."""
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.wfd, view):]
        except OSError:
            self.client_open = False

    def serve(self) -> int:
        from nsdash import __version__

        self.send(p.hello(__version__))
        while self.client_open and not self.done:
            for fd in readable([self.rfd, *self.outputs]):
                if fd == self.rfd:
                    self.client_open = self._from_client() and self.client_open
                elif fd in self.outputs:  # (not ended earlier in this round)
                    self._from_verb(self.outputs[fd], fd)
        self._hang_up()
        return 0

    def _from_client(self) -> bool:
        try:
            data = os.read(self.rfd, 65536)
        except OSError:
            data = b""
        if not data:
            return False
        for message in self.decoder.feed(data):
            self._handle(message)
        return True

    def _handle(self, message: dict[str, Any]) -> None:
        kind, ch = message["t"], message.get("ch")
        if kind == "run":
            if message.get("last") is True:
                self.last = ch if isinstance(ch, int) else None
            started = start_channel(message, self.run_verb)
            if isinstance(started, str):
                self.send(p.encode("out", ch=ch, fd=2, d=p.data_field(f"nsdash: {started}\n".encode())))
                self.send(p.encode("exit", ch=ch, code=2))
                self.done = self.done or message.get("last") is True
                return
            self.channels[started.ch] = started
            for fd in started.outputs:
                self.outputs[fd] = started
            return
        channel = self.channels.get(ch) if isinstance(ch, int) else None
        if channel is None or channel.stdin is None:
            return  # input for a verb that has ended: dropped, as a closed terminal drops keys
        if kind == "in":
            import contextlib

            with contextlib.suppress(OSError):  # the verb stopped reading: its exit will tell
                _write_blocking(channel.stdin, p.data_of(message))
        elif kind == "winch" and channel.stdin in channel.outputs:  # a PTY
            _set_winsize(channel.stdin, _bounded(message.get("rows"), 1, 1000),
                         _bounded(message.get("cols"), 1, 1000))
            import signal

            _kill_session(channel.pid, signal.SIGWINCH)
        elif kind == "eof" and channel.stdin not in channel.outputs:
            os.close(channel.stdin)
            channel.stdin = None

    def _from_verb(self, channel: Channel, fd: int) -> None:
        try:
            data = os.read(fd, p.CHUNK)
        except BlockingIOError:
            return
        except OSError:  # EIO: the PTY's last holder closed it
            data = b""
        if data:
            self.send(p.encode("out", ch=channel.ch, fd=channel.outputs[fd], d=p.data_field(data)))
            return
        del self.outputs[fd]
        del channel.outputs[fd]
        if channel.stdin == fd:  # the PTY master: our one end, closed below
            channel.stdin = None
        os.close(fd)
        if not channel.outputs:
            self._finish(channel)

    def _finish(self, channel: Channel) -> None:
        code = channel.poll(block=True)
        assert code is not None
        if channel.stdin is not None:
            try:  # noqa: SIM105  (contextlib imports collections and functools: off every verb's path)
                os.close(channel.stdin)
            except OSError:
                pass
        del self.channels[channel.ch]
        self.send(p.encode("exit", ch=channel.ch, code=128 - code if code < 0 else code))
        self.done = self.done or channel.ch == self.last

    def _hang_up(self) -> None:
        """The session is over (the client is gone, or its last verb ended): SIGHUP to every
        verb's session still running, then SIGKILL to what lingers."""
        if not self.channels:
            return
        import signal

        for channel in self.channels.values():
            _kill_session(channel.pid, signal.SIGHUP)
        deadline = time.monotonic() + HANGUP_GRACE
        while any(c.poll() is None for c in self.channels.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        for channel in self.channels.values():
            if channel.poll() is None:
                _kill_session(channel.pid, signal.SIGKILL)
                channel.poll(block=True)


def _kill_session(pid: int, sig: int) -> None:
    """SIG to the session (process group) that verb PID leads, if it is still there."""
    import contextlib

    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _write_blocking(fd: int, data: bytes) -> None:
    """Write all of DATA to FD (non-blocking for a PTY master: wait while it is full)."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            time.sleep(0.01)


def main(run_verb: RunVerb) -> int:
    """Serve the session on our stdio; RUN_VERB(argv) -> status is nsdash's command line (the
    CLI passes itself in: it is the layer above this one)."""
    # The session's stdio is the ssh channel.  SIGPIPE stays ignored: a write there that fails
    # (EPIPE) ends the session as its closing does, its verbs hung up (Server.send).
    return Server(sys.stdin.fileno(), sys.stdout.fileno(), run_verb).serve()
