"""The far side of -H: `nsdash _remote`, started by sshd for one session, never a daemon.

It greets with its protocol version, then runs each requested verb as
`python -m nsdash VERB ...` (the same nsdash, so every verb behaves and
sanitises exactly as it does when typed on that host) on a channel of its
own: with pipes, or in a new PTY when the client has a terminal (login,
shell).  Output goes back as "out" messages, the exit status as "exit".

When the connection ends (the client quit, ssh dropped) the far side's stdin
closes: every verb still running gets SIGHUP, as a terminal hang-up would
give it, then SIGKILL, and the session ends.  Nothing stays behind but what
a verb itself started on purpose (a machine after `start`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import selectors
import signal
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass, field
from typing import Any

from nsdash.remote import REMOTE_VERBS
from nsdash.remote import protocol as p

HANGUP_GRACE = 3.0  # seconds a verb has after SIGHUP before SIGKILL


@dataclass
class Channel:
    """One verb running for the client."""

    ch: int
    proc: subprocess.Popen[bytes]
    outputs: dict[int, int] = field(default_factory=dict)  # our read end -> the fd it stands for (1, 2)
    stdin: int | None = None  # our write end of the verb's input (the PTY master, or a pipe)


def _set_winsize(fd: int, rows: int, cols: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _child_env(term: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NSDASH_HOST",)}  # never hop on
    if term:
        env["TERM"] = term
    else:
        # A verb's stdout is our pipe, which Python would buffer by the block: `journal -f`
        # and `cgtop` lines must reach the client as they are written.
        env["PYTHONUNBUFFERED"] = "1"
    return env


def _bounded(value: Any, low: int, high: int) -> int:
    return max(low, min(high, value)) if isinstance(value, int) else low


def start_channel(message: dict[str, Any]) -> Channel | str:
    """Start the verb MESSAGE asks for; a sentence when it is not one we run."""
    ch, argv, tty = message.get("ch"), message.get("argv"), message.get("tty")
    if not isinstance(ch, int) or not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        return "a malformed run request"
    if not argv or argv[0] not in REMOTE_VERBS:
        return f"'{argv[0] if argv else ''}' is not a verb nsdash runs over -H"
    command = [sys.executable, "-m", "nsdash", *argv]
    if isinstance(tty, dict):
        master, slave = os.openpty()
        _set_winsize(slave, _bounded(tty.get("rows"), 1, 1000), _bounded(tty.get("cols"), 1, 1000))
        term = tty.get("term") if isinstance(tty.get("term"), str) else None

        def controlling_tty() -> None:  # after setsid: the PTY becomes the verb's terminal
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        proc = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, env=_child_env(term),
                                start_new_session=True, preexec_fn=controlling_tty)
        os.close(slave)
        os.set_blocking(master, False)
        return Channel(ch, proc, {master: 1}, master)
    stdin = subprocess.PIPE if message.get("stdin") else subprocess.DEVNULL
    proc = subprocess.Popen(command, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_child_env(None), start_new_session=True)
    assert proc.stdout is not None and proc.stderr is not None
    outputs = {proc.stdout.fileno(): 1, proc.stderr.fileno(): 2}
    for fd in outputs:
        os.set_blocking(fd, False)
    return Channel(ch, proc, outputs, proc.stdin.fileno() if proc.stdin else None)


class Server:
    """The session: the client's messages in on RFILE, ours out on WFILE."""

    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd, self.wfd = rfd, wfd
        self.channels: dict[int, Channel] = {}
        self.selector = selectors.DefaultSelector()
        self.decoder = p.Decoder()

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.wfd, view):]

    def serve(self) -> int:
        from nsdash import __version__

        self.send(p.hello(__version__))
        self.selector.register(self.rfd, selectors.EVENT_READ, None)
        client_open = True
        while client_open or self.channels:
            if not client_open:
                self._hang_up()
                break
            for key, _ in self.selector.select():
                if key.data is None:
                    client_open = self._from_client()
                else:
                    self._from_verb(key.data, key.fd)
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
            started = start_channel(message)
            if isinstance(started, str):
                self.send(p.encode("out", ch=ch, fd=2, d=p.data_field(f"nsdash: {started}\n".encode())))
                self.send(p.encode("exit", ch=ch, code=2))
                return
            self.channels[started.ch] = started
            for fd in started.outputs:
                self.selector.register(fd, selectors.EVENT_READ, started)
            return
        channel = self.channels.get(ch) if isinstance(ch, int) else None
        if channel is None or channel.stdin is None:
            return  # input for a verb that has ended: dropped, as a closed terminal drops keys
        if kind == "in":
            with contextlib.suppress(OSError):  # the verb stopped reading: its exit will tell
                _write_blocking(channel.stdin, p.data_of(message))
        elif kind == "winch" and channel.stdin in channel.outputs:  # a PTY
            _set_winsize(channel.stdin, _bounded(message.get("rows"), 1, 1000),
                         _bounded(message.get("cols"), 1, 1000))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(channel.proc.pid, signal.SIGWINCH)
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
        self.selector.unregister(fd)
        del channel.outputs[fd]
        if channel.stdin == fd:  # the PTY master: our one end, closed below
            channel.stdin = None
        os.close(fd)
        if not channel.outputs:
            self._finish(channel)

    def _finish(self, channel: Channel) -> None:
        code = channel.proc.wait()
        if channel.stdin is not None:
            with contextlib.suppress(OSError):
                os.close(channel.stdin)
        del self.channels[channel.ch]
        self.send(p.encode("exit", ch=channel.ch, code=128 - code if code < 0 else code))

    def _hang_up(self) -> None:
        """The client is gone: SIGHUP to every verb's session, then SIGKILL to what lingers."""
        for channel in self.channels.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(channel.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + HANGUP_GRACE
        for channel in self.channels.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                channel.proc.wait(max(0.0, deadline - time.monotonic()))
            if channel.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(channel.proc.pid, signal.SIGKILL)
                channel.proc.wait()


def _write_blocking(fd: int, data: bytes) -> None:
    """Write all of DATA to FD (non-blocking for a PTY master: wait while it is full)."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            time.sleep(0.01)


def main() -> int:
    # The session's stdio is the ssh channel; a SIGPIPE there ends the session quietly.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    return Server(sys.stdin.fileno(), sys.stdout.fileno()).serve()
