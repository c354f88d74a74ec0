"""This side of -H: one verb on a remote host over one ssh connection.

The far side runs the verb as if typed there and streams its output back.
That output is still text from another host (and, through it, from its
guests), so every verb's output is escaped again here, line by line, by the
one sanitiser, except login's and shell's: those are a terminal session and a
command's own output, passed through raw exactly as locally (with a PTY on
the far side when this side has a terminal, the window size following ours,
and ^] three times to leave login, handled by the far side's login); and
cgtop's when this side is a terminal, where it draws its screen and takes
keys as locally.

A failure before the far side greets is ssh's (or the far shell's): its
exit status and last words become one line saying what to fix.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

from nsdash.remote import RAW_VERBS, REMOTE_VERBS, SCREEN_VERBS
from nsdash.remote import protocol as p
from nsdash.remote.ssh import SshProcess
from nsdash.remote.target import Target, ssh_argv
from nsdash.system import terminal as term
from nsdash.system.fdio import write_all
from nsdash.system.ready import readable
from nsdash.system.text import escape, escape_bytes

# `nsdash -H HOST list` imports only what its answer needs: typing is for mypy, and the
# terminal's modules (termios, tty, signal's window changes) load for login, shell and cgtop.
TYPE_CHECKING = False  # mypy takes this as true
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import IO, Any

CHANNEL = 1
GREETING_LIMIT = 64 * 1024  # bytes of shell start-up chatter skipped before the hello, at most


LAST_WORDS_MAX = 300  # characters of what ssh or a far verb said last, quoted in an error


def last_words(data: bytes | bytearray | str, fallback: str) -> str:
    """The last non-blank line of DATA (ssh's or a far verb's stderr) for a one-line error:
    escaped, and at most LAST_WORDS_MAX characters of it (the far side chooses it, and a far
    verb's stderr may be megabytes); FALLBACK when there is none."""
    text = data.decode(errors="replace") if isinstance(data, bytes | bytearray) else data
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return fallback
    line = lines[-1]
    return escape(line[:LAST_WORDS_MAX]) + ("…" if len(line) > LAST_WORDS_MAX else "")


def diagnose(target: Target, returncode: int | None, stderr: str) -> p.RemoteError:
    """What went wrong before the far nsdash greeted: one line from ssh's exit status and stderr."""
    last = last_words(stderr, f"ssh exited {returncode}")
    host = str(target)
    text = stderr.lower()
    if "host key verification failed" in text or "remote host identification has changed" in text:
        return p.RemoteError(f"{host}'s host key is unknown or has changed ({last})",
                             f"check it and add it to known_hosts (run 'ssh {target.destination}' once)")
    if "permission denied" in text or "too many authentication failures" in text:
        return p.RemoteError(f"{host} refused the login ({last})",
                             f"check the user and key for it (ssh -v {target.destination})")
    if returncode == 127 or "not found" in text or "no such file or directory" in text:
        return p.RemoteError(f"nsdash is not installed on {host} ({last})",
                             "install it there, or name it with NSDASH_REMOTE_COMMAND=/path/to/nsdash")
    if returncode == 255:
        return p.RemoteError(f"cannot reach {host} ({last})", f"check the address (ssh -v {target.destination})")
    return p.RemoteError(f"{host} did not start nsdash ({last})", "try 'ssh HOST nsdash --version'")


class Connection:
    """`ssh HOST nsdash _remote`, greeted: messages out with send(), in with messages()."""

    def __init__(self, target: Target, timeout: float | None = None,
                 started: Callable[[SshProcess], object] | None = None,
                 first: dict[str, Any] | None = None) -> None:
        """TIMEOUT: seconds to wait for the far side's greeting (None: as long as ssh waits).
        STARTED: called with ssh's process before the greeting (a dashboard quitting kills it).
        FIRST: a run request sent as soon as ssh runs, before the greeting has come (a round
        trip saved: the far side reads it once it has greeted; it goes nowhere if it never
        does).  Encoded only once ssh runs: json loads here while the far side starts."""
        self.target = target
        try:
            self.proc = SshProcess(ssh_argv(target))
        except FileNotFoundError as e:
            raise p.RemoteError(f"cannot run ssh ({e.strerror}: {e.filename})",
                                "install OpenSSH's client, or name it with NSDASH_SSH_COMMAND") from None
        if started is not None:
            started(self.proc)
        if first is not None:
            self.send(p.encode("run", **first))
        self.out, self.err = self.proc.stdout.fileno(), self.proc.stderr.fileno()
        self.err_open = True
        self.stderr = bytearray()  # what ssh said (kept for the diagnosis, the tail only)
        self.decoder = p.Decoder()
        self.pending: list[dict[str, Any]] = []
        self.version = self._greet(timeout)

    def _greet(self, timeout: float | None) -> tuple[int, int]:
        try:
            return self._await_hello(timeout)
        except p.RemoteError:
            if self.proc.poll() is None:
                self.proc.kill()
            self.close()
            raise

    def _await_hello(self, timeout: float | None) -> tuple[int, int]:
        skipped = 0
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if deadline is not None and not readable(self.fds(), max(0.0, deadline - time.monotonic())):
                raise p.RemoteError(f"{self.target} did not answer within {timeout:.0f} s",
                                    "check that it is up and reachable (ssh -v)")
            data = self.read(block=deadline is None)
            if data is None:
                raise diagnose(self.target, self.proc.returncode, self.stderr.decode(errors="replace"))
            skipped += len(data)
            messages = self.decoder.feed(data, strict=False)
            if messages:
                self.pending = messages[1:]
                return p.check_hello(messages[0], str(self.target))
            if skipped > GREETING_LIMIT:
                raise p.RemoteError(f"{self.target} sent no nsdash greeting",
                                    "is the far side's shell start-up printing text?")

    def fds(self) -> list[int]:
        """What to watch for the far side: ssh's stdout, and its stderr while open."""
        return [self.out] + ([self.err] if self.err_open else [])

    def read(self, block: bool) -> bytes | None:
        """The next bytes from ssh's stdout (collecting its stderr meanwhile): b"" when none is
        there yet (not BLOCK), None at its end."""
        while True:
            ready = readable(self.fds(), None if block else 0)
            if self.err_open and self.err in ready:
                self._take_stderr()
            if self.out in ready:
                data = os.read(self.out, 65536)
                if data:
                    return data
                # ssh is ending: what it says last may still be on its way (a ControlPersist
                # master can hold stderr open for good, hence the bound)
                deadline = time.monotonic() + 1.0
                while self.err_open and readable([self.err], max(0, deadline - time.monotonic())):
                    self._take_stderr()
                self.proc.ended(5)
                return None
            if not block:
                return b""

    def _take_stderr(self) -> None:
        chunk = os.read(self.err, 65536)
        if chunk:
            self.stderr = (self.stderr + chunk)[-8192:]
        else:
            self.err_open = False

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[self.proc.stdin.write(view) or 0:]
        except (BrokenPipeError, ValueError):
            pass  # the far side is gone (or we closed our end); reading says so

    def messages(self, data: bytes) -> list[dict[str, Any]]:
        got, self.pending = self.pending + self.decoder.feed(data), []
        return got

    def lost(self) -> p.RemoteError:
        words = last_words(self.stderr, "")
        why = f" ({words})" if words else ""
        return p.RemoteError(f"the connection to {self.target} was lost{why}", "run the command again")

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.proc.stdin.close()
        if not self.proc.ended(5):
            self.proc.terminate()
            self.proc.wait()


PARTIAL_MAX = 64 * 1024  # bytes of an unfinished line held back for its end; past it, shown as it is


class LineEscaper:
    """Output of one stream, escaped a whole line at a time (a UTF-8 character never split).

    A line longer than PARTIAL_MAX is shown in pieces as it comes: the far side is not trusted
    to end its lines, and one that never did made this side hold (and at the end escape) all
    it sent, 64 MiB costing over 300 MiB here (issue 15)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.partial = bytearray()

    def feed(self, data: bytes) -> None:
        self.partial += data
        end = self.partial.rfind(b"\n") + 1
        if not end and len(self.partial) > PARTIAL_MAX:
            end = _character_start(self.partial)
        if end:
            self.stream.write(escape_bytes(bytes(self.partial[:end]), newline=True, tab=True))
            del self.partial[:end]
            self.stream.flush()

    def close(self) -> None:
        if self.partial:
            self.stream.write(escape_bytes(bytes(self.partial), tab=True) + "\n")
            self.partial.clear()
        self.stream.flush()


def _character_start(data: bytearray) -> int:
    """Where DATA may be cut without cutting a UTF-8 character: before a lead byte among its
    last three bytes (its character may not be whole yet), else at its end."""
    for back in range(1, min(3, len(data)) + 1):
        if data[-back] >= 0xC0:  # 11xxxxxx: a lead byte
            return len(data) - back
    return len(data)


def check_verb(argv: list[str]) -> None:
    from nsdash.errors import UsageError

    verb = argv[0] if argv else "dashboard"
    if verb not in REMOTE_VERBS:
        raise UsageError(f"'nsdash {verb}' does not run over -H",
                         "run it on the host itself; -H takes " + ", ".join(sorted(REMOTE_VERBS)))
    if verb == "spawn" and not any(a == "--detach" or a.startswith("--detach=") for a in argv[1:]):
        raise UsageError("'nsdash spawn' over -H needs --detach",
                         "add --detach, then 'nsdash -H HOST login NAME' for its console")


@contextlib.contextmanager
def _winch_pipe(terminal: bool) -> Iterator[int | None]:
    """A descriptor readable when this terminal's size changes (None without a terminal)."""
    if not terminal:
        yield None
        return
    import signal

    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    old_wakeup = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    old = signal.signal(signal.SIGWINCH, lambda *_: None)
    try:
        yield r
    finally:
        signal.signal(signal.SIGWINCH, old)
        signal.set_wakeup_fd(old_wakeup)
        os.close(r)
        os.close(w)


def run(target: Target, argv: list[str]) -> int:
    """Run nsdash ARGV on TARGET; its exit status."""
    check_verb(argv)
    stdin = sys.stdin.fileno()
    screen = argv[0] in SCREEN_VERBS and os.isatty(stdin) and os.isatty(sys.stdout.fileno())
    raw = argv[0] in RAW_VERBS or screen
    terminal = raw and os.isatty(stdin)
    size = term.window_size(stdin) if terminal else None
    request: dict[str, Any] = {"ch": CHANNEL, "argv": argv, "stdin": raw, "tty": None, "last": True,
                               "v": [p.MAJOR, p.MINOR]}
    if terminal:
        rows, cols = size or (24, 80)
        request["tty"] = {"rows": rows, "cols": cols, "term": os.environ.get("TERM", "vt220")}
    # The request goes with the connection, before the far side's greeting, and it is the
    # session's last: the far side ends once the verb has, without waiting for us to close.
    conn = Connection(target, first=request)
    try:
        with term.raw(stdin if terminal else None), _winch_pipe(terminal) as winch:
            return _pump(conn, raw, stdin if raw else None, winch)
    finally:
        conn.close()


def _pump(conn: Connection, raw: bool, stdin: int | None, winch: int | None) -> int:
    sinks: dict[int, Any] = {1: sys.stdout, 2: sys.stderr}
    escapers = {fd: LineEscaper(stream) for fd, stream in sinks.items()} if not raw else {}
    sys.stdout.flush()
    code: int | None = None
    for message in conn.messages(b""):
        code = _deliver(message, escapers, code)
    while code is None:
        watch = [*conn.fds()] + [fd for fd in (winch, stdin) if fd is not None]
        ready = readable(watch)
        if winch is not None and winch in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(winch, 64)
            size = term.window_size(stdin) if stdin is not None else None
            if size:
                conn.send(p.encode("winch", ch=CHANNEL, rows=size[0], cols=size[1]))
        if stdin is not None and stdin in ready:
            data = os.read(stdin, 16384)
            if data:
                conn.send(p.encode("in", ch=CHANNEL, d=p.data_field(data)))
            else:
                conn.send(p.encode("eof", ch=CHANNEL))
                stdin = None
        if any(fd in ready for fd in conn.fds()):
            got = conn.read(block=False)
            if got is None:
                raise conn.lost()
            for message in conn.messages(got):
                code = _deliver(message, escapers, code)
    for escaper in escapers.values():
        escaper.close()
    return code


def _deliver(message: dict[str, Any], escapers: dict[int, LineEscaper], code: int | None) -> int | None:
    """Show one message from the far side; the exit status once it is there."""
    if message.get("ch") != CHANNEL:
        return code
    if message["t"] == "out":
        data = p.data_of(message)
        fd = 2 if message.get("fd") == 2 else 1
        if escapers:
            escapers[fd].feed(data)
        else:
            write_all(fd, data)
    elif message["t"] == "exit":
        value = message.get("code")
        return value if isinstance(value, int) and 0 <= value < 256 else 1
    return code
