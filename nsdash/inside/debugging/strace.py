"""strace from the host on a machine's processes, its output shown as the machine sees it.

strace runs on the host (see the package's docstring) and attaches by host
PID with -f, so it follows forks.  What it prints that is in the host's terms
is rewritten, and only that:

- the PID that starts each line (strace -f -o) and strace's own messages ("Process N
  attached") carry host PIDs: they become the machine's PIDs (NSpid);
- syscall arguments and results are the tracee's own values and are already
  the machine's (`clone() = 45`, `si_pid=45`, `"/etc/hostname"`), untouched;
- -y's `<path>` after a file descriptor is the path as the tracer sees it:
  the kernel prints it relative to the machine's root when the machine lives
  in a mount namespace of its own (nsdash's, nspawn's), but with the host's
  path of the root in front when that root is reachable from the host's
  namespace; that prefix (readlink of /proc/LEADER/root) is cut.

The trace goes to a pipe of its own (-o /dev/fd/N), strace's messages to
another, so a message never lands in the middle of a trace line.  Every line
is escaped before anyone shows it: strace quotes strings, but fd paths and
names come from the guest.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from nsdash.errors import UsageError
from nsdash.inside.debugging import tools
from nsdash.inside.debugging.escape import escape
from nsdash.inside.debugging.pids import MachineProcesses

# strace's short options that take their value as the next word (strace 6.1's getopt string).
_VALUE_SHORT = set("abeEIoOpPsSuUX")
# Options nsdash sets itself: where the trace goes and whom it attaches to.
_REFUSED = {"-o": "the trace goes to standard output: redirect it with the shell",
            "--output": "the trace goes to standard output: redirect it with the shell",
            "-ff": "one output file per process is not supported",
            "--output-separately": "one output file per process is not supported",
            "-p": "name the process as nsdash's PID argument (the machine's PID)",
            "--attach": "name the process as nsdash's PID argument (the machine's PID)",
            "-D": "strace must stay the tracees' tracer, not a detached grandchild",
            "--daemonize": "strace must stay the tracees' tracer, not a detached grandchild"}

# With -f and -o, strace starts every line with the tracee's PID and blanks to width 5.
_PID_PREFIX = re.compile(r"^(\d+)(\s+)")
_MESSAGE_PIDS = re.compile(r"(Process |PTRACE_[A-Z]+, |pid )(\d+)")
_EXITED = re.compile(r"^(?:(\d+)\s+)?\+\+\+ (?:exited|killed) ")
def check_options(options: list[str]) -> None:
    """Refuse strace options that would trace something other than the machine's processes.

    A bare word would be a command for strace to start, on the host: only the
    value of a short option that takes one may stand alone; long options take
    theirs as --option=VALUE.
    """
    expect_value = False
    for word in options:
        if expect_value:
            expect_value = False
            continue
        name = word.split("=", 1)[0]
        if name in _REFUSED:
            raise UsageError(f"strace option '{name}' is not accepted", _REFUSED[name])
        if word.startswith("--") or word == "-":
            continue
        if word.startswith("-"):
            expect_value = _short_cluster(word)
            continue
        raise UsageError(f"'{word}' is not a strace option: strace would run it as a command on the host",
                         "give strace's options only, long ones as --option=VALUE")


def _short_cluster(word: str) -> bool:
    """Check a cluster of short options ('-fe', '-s200'); True when its last one takes the next word."""
    for i, c in enumerate(word[1:], 1):
        if f"-{c}" in _REFUSED:
            raise UsageError(f"strace option '-{c}' is not accepted", _REFUSED[f"-{c}"])
        if c in _VALUE_SHORT:
            return i == len(word) - 1  # the value is the rest of the word, or the next one
    return False


def build_argv(strace: str, host_pids: list[int], options: list[str], out_fd: int) -> list[str]:
    """strace's command line: follow forks, decode fd paths (unless the user chose -y's level), attach."""
    argv = [strace, "-f", "-o", f"/dev/fd/{out_fd}"]
    if not any(o.startswith(("-y", "--decode-fds")) for o in options):
        argv.append("-y")
    for pid in host_pids:
        argv += ["-p", str(pid)]
    return argv + options


class Rewriter:
    """Turns strace's lines into the machine's terms (pure, given a host->machine PID function)."""

    def __init__(self, machine_pid: Callable[[int], int | None], root_prefix: str = "/") -> None:
        self._lookup = machine_pid
        self._cache: dict[int, int | None] = {}
        prefix = root_prefix.rstrip("/")
        self._root = re.compile("<" + re.escape(prefix) + r"(/|>)") if prefix else None

    def pid(self, host_pid: int) -> str:
        if host_pid not in self._cache:
            self._cache[host_pid] = self._lookup(host_pid)
        inner = self._cache[host_pid]
        return str(inner) if inner is not None else f"host:{host_pid}"

    def trace_line(self, line: str) -> str:
        out = _PID_PREFIX.sub(lambda m: f"{self.pid(int(m.group(1))):<5} ", line, count=1)
        if self._root is not None:
            out = self._root.sub(lambda m: "</" if m.group(1) == "/" else "</>", out)
        gone = _EXITED.match(line)
        if gone and gone.group(1):
            self._cache.pop(int(gone.group(1)), None)  # the host may reuse that PID now
        return escape(out)

    def message_line(self, line: str) -> str:
        return escape(_MESSAGE_PIDS.sub(lambda m: m.group(1) + self.pid(int(m.group(2))), line))


@dataclass(frozen=True)
class Line:
    """One line of a trace: 'trace' (a syscall, a signal, an exit) or 'message' (strace's own)."""

    kind: str
    text: str


class StraceRun:
    """One strace process attached to some of a machine's processes.  A context manager:
    leaving it detaches strace (SIGINT: the tracees run on) and reaps it."""

    def __init__(self, procs: MachineProcesses, host_pids: list[int], options: list[str] | None = None,
                 strace_path: str | None = None) -> None:
        check_options(list(options or []))
        self.procs = procs
        self.host_pids = host_pids
        self.options = list(options or [])
        self.strace = tools.find("strace", strace_path)
        try:
            root_prefix = os.readlink(procs.proc / str(procs.target.leader) / "root")
        except OSError:
            root_prefix = "/"
        self.rewriter = Rewriter(procs.machine_pid, root_prefix)
        self.process: subprocess.Popen[bytes] | None = None
        self._fds: dict[int, str] = {}
        self._open: set[int] = set()
        self._partial: dict[int, bytes] = {}

    def __enter__(self) -> StraceRun:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        read_end, write_end = os.pipe()
        try:
            argv = build_argv(self.strace, self.host_pids, self.options, write_end)
            # A session of its own: the terminal's Ctrl-C reaches nsdash, which detaches strace
            # itself and still shows the lines strace writes while it lets go.
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.PIPE, pass_fds=(write_end,),
                                            start_new_session=True)
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        assert self.process.stderr is not None
        self._fds = {read_end: "trace", self.process.stderr.fileno(): "message"}
        self._open = set(self._fds)
        self._partial = {fd: b"" for fd in self._fds}
        for fd in self._fds:
            os.set_blocking(fd, False)

    def lines(self, timeout: float | None = None) -> Iterator[Line]:
        """Lines as strace writes them, until it exits (or, with TIMEOUT, until nothing came for that long)."""
        with selectors.DefaultSelector() as sel:
            for fd in self._open:
                sel.register(fd, selectors.EVENT_READ)
            while sel.get_map():
                ready = sel.select(timeout)
                if not ready:
                    return
                for key, _ in ready:
                    fd = int(key.fd)
                    try:
                        chunk = os.read(fd, 65536)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        sel.unregister(fd)
                        self._open.discard(fd)
                        rest = self._partial.pop(fd, b"")
                        if rest:
                            yield self._line(self._fds[fd], rest)
                        continue
                    *whole, self._partial[fd] = (self._partial[fd] + chunk).split(b"\n")
                    for raw in whole:
                        yield self._line(self._fds[fd], raw)

    @property
    def finished(self) -> bool:
        """strace closed both its outputs: it has exited (or is about to)."""
        return self.process is not None and not self._open

    def _line(self, kind: str, raw: bytes) -> Line:
        text = raw.decode("utf-8", "backslashreplace")
        rewrite = self.rewriter.trace_line if kind == "trace" else self.rewriter.message_line
        return Line(kind, rewrite(text))

    def stop(self) -> None:
        """Ask strace to detach (it then writes its last lines and exits)."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGINT)

    def close(self, grace: float = 5.0) -> list[Line]:
        """Detach and reap strace; the lines it wrote meanwhile are returned."""
        tail: list[Line] = []
        if self.process is None:
            return tail
        self.stop()
        deadline = time.monotonic() + grace
        with contextlib.suppress(OSError, ValueError):
            for line in self.lines(timeout=max(deadline - time.monotonic(), 0.05)):
                tail.append(line)
                if time.monotonic() > deadline:
                    break
        try:
            self.process.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            self.process.kill()  # the kernel detaches a dead tracer's tracees
            self.process.wait()
        for fd, kind in self._fds.items():
            if kind == "trace":  # the other one is the Popen's stderr, closed with it
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self.process.stderr is not None:
            self.process.stderr.close()
        self._fds = {}
        self._open = set()
        return tail

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()
