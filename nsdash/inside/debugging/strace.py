"""strace from the host on a machine's processes, its output shown as the machine sees it.

strace runs on the host (see the package's docstring) and attaches by host
PID with -f, so it follows forks.  What it prints that is in the host's terms
is rewritten, and only that:

- the PID that starts each line (strace -f -o) and strace's own messages
  ("Process N attached") are host PIDs: they become the machine's, from
  /proc/HOSTPID/status (NSpid) while the process exists, else from strace's
  own --decode-pids=pidns note on the parent's clone()/fork() result
  ("= 45 /* 17009 in strace's PID NS */"), so a child that came and went
  before nsdash could look is still named right; lines wait (in order, at
  most Rewriter.HOLD) for that note, and nsdash adds those calls to a trace
  set that left them out, showing only what the user asked for;
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

The two are waited on with poll(2), not select(2): the dashboard keeps a
counter file open per cgroup (nsdash.monitor.sampler raises its descriptor
limit for that), so on a busy host the pipes are numbered past select's
FD_SETSIZE (1024), where select() refuses them outright.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from nsdash.errors import UsageError
from nsdash.inside.debugging import tools
from nsdash.inside.debugging.pids import MachineProcesses
from nsdash.system.text import escape

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
# --decode-pids=pidns: "clone(...) = 45 /* 17009 in strace's PID NS */" (machine 45 is host 17009)
_ANNOTATION = re.compile(r"(\d+) /\* (\d+) in strace's PID NS \*/")
_SYSCALL = re.compile(r"^\d+\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()")
# The calls whose results tell which machine PID a new child has.
PROCESS_CALLS = ("clone", "clone3", "fork", "vfork")


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
                         "name the PID or unit first, then strace's options only (long ones as --option=VALUE)")


def _short_cluster(word: str) -> bool:
    """Check a cluster of short options ('-fe', '-s200'); True when its last one takes the next word."""
    for i, c in enumerate(word[1:], 1):
        if f"-{c}" in _REFUSED:
            raise UsageError(f"strace option '-{c}' is not accepted", _REFUSED[f"-{c}"])
        if c in _VALUE_SHORT:
            return i == len(word) - 1  # the value is the rest of the word, or the next one
    return False


def build_argv(strace: str, host_pids: list[int], options: list[str], out_fd: int) -> tuple[list[str], set[str]]:
    """strace's command line, and the calls nsdash added to the user's trace set (to hide again).

    Follows forks, decodes fd paths (unless the user chose -y's level), and has
    strace print the host's PID next to every machine PID it reports
    (--decode-pids=pidns): a new child's lines carry the host's PID, and the
    parent's clone()/fork() result says which machine PID that is, even when the
    child has gone before nsdash could look at /proc.  A trace set that leaves
    those calls out gets them added; their lines are then not shown.
    """
    argv = [strace, "-f", "-o", f"/dev/fd/{out_fd}"]
    if not any(o.startswith(("-y", "--decode-fds")) for o in options):
        argv.append("-y")
    if not any(o.startswith(("-Y", "--decode-pids", "--pidns-translation")) for o in options):
        argv.append("--decode-pids=pidns")
    for pid in host_pids:
        argv += ["-p", str(pid)]
    options, added = with_process_calls(options)
    return argv + options, added


def with_process_calls(options: list[str]) -> tuple[list[str], set[str]]:
    """OPTIONS with clone, fork and the like added to the trace set (the last one: it wins), when
    that set is a plain list of calls; and which calls were added."""
    sets = list(_trace_sets(options))
    if not sets:
        return list(options), set()  # everything is traced
    index, head, calls = sets[-1]
    names = set(calls.split(","))
    if not calls or "%process" in names or any(c in calls for c in "!/?%@"):
        return list(options), set()  # a class, a negation or a pattern: left as the user wrote it
    added = {c for c in PROCESS_CALLS if c not in names}
    out = list(options)
    if added:
        out[index] = head + calls + "," + ",".join(f"?{c}" for c in PROCESS_CALLS if c in added)
    return out, added


def _trace_sets(options: list[str]) -> Iterator[tuple[int, str, str]]:
    """(index of the word, what precedes the set in it, the set) for each trace set given."""
    for i, word in enumerate(options):
        if word.startswith("--trace="):
            yield i, "--trace=", word[len("--trace="):]
            continue
        if word == "-e" and i + 1 < len(options):
            index, head, value = i + 1, "", options[i + 1]
        elif word.startswith("-e") and len(word) > 2 and (i == 0 or options[i - 1] != "-e"):
            index, head, value = i, "-e", word[2:]
        else:
            continue
        qualifier, eq, rest = value.partition("=")
        if not eq:
            yield index, head, value  # -e openat: trace=openat
        elif qualifier in ("trace", "t"):
            yield index, head + qualifier + "=", rest


@dataclass(frozen=True)
class Line:
    """One line of a trace: 'trace' (a syscall, a signal, an exit) or 'message' (strace's own)."""

    kind: str
    text: str


class Rewriter:
    """Turns strace's lines into the machine's terms, in the order strace wrote them.

    A host PID is translated through LOOKUP (NSpid, while the process exists)
    or, timing-proof, through what strace's --decode-pids=pidns annotations
    say.  A line whose PID is not known yet waits (and the lines after it, to
    keep the order) until a later line tells, or HOLD seconds pass; then the
    host's number shows, as 'host:N'.  Pure: time is a parameter.
    """

    HOLD = 2.0  # s; under load the parent's clone() line can come well after the child's first

    def __init__(self, lookup: Callable[[int], int | None], root_prefix: str = "/",
                 hidden: Iterable[str] = (), keep_annotations: bool = False,
                 known: dict[int, int] | None = None) -> None:
        self._lookup = lookup
        self._known: dict[int, int] = dict(known or {})  # host PID -> the machine's
        self._unknown: set[int] = set()  # looked up in vain: only an annotation can tell now
        self._queue: deque[tuple[str, str, float, tuple[int, ...]]] = deque()
        self._hidden = frozenset(hidden)
        self._keep_annotations = keep_annotations
        prefix = root_prefix.rstrip("/")
        self._root = re.compile("<" + re.escape(prefix) + r"(/|>)") if prefix else None

    def feed(self, kind: str, raw: str, now: float) -> list[Line]:
        """One line as strace wrote it; returns the lines that can be shown now, in order."""
        if kind == "trace":
            for m in _ANNOTATION.finditer(raw):
                self._known[int(m.group(2))] = int(m.group(1))
                self._unknown.discard(int(m.group(2)))
        pids = self._pids(kind, raw)
        for host_pid in pids:
            self._resolve(host_pid)
        self._queue.append((kind, raw, now, pids))
        return self.expire(now)

    def expire(self, now: float) -> list[Line]:
        """The waiting lines that are known now, or have waited HOLD seconds."""
        return self._release(lambda t, pids: all(p in self._known for p in pids) or now - t >= self.HOLD)

    def drain(self) -> list[Line]:
        """Every waiting line (strace has ended: nothing more will tell)."""
        return self._release(lambda t, pids: True)

    @property
    def waiting(self) -> bool:
        return bool(self._queue)

    # ---- helpers ---------------------------------------------------------------

    def _pids(self, kind: str, raw: str) -> tuple[int, ...]:
        if kind == "trace":
            m = _PID_PREFIX.match(raw)
            return (int(m.group(1)),) if m else ()
        return tuple(int(m.group(2)) for m in _MESSAGE_PIDS.finditer(raw))

    def _resolve(self, host_pid: int) -> None:
        if host_pid in self._known or host_pid in self._unknown:
            return
        inner = self._lookup(host_pid)
        if inner is None:
            self._unknown.add(host_pid)
        else:
            self._known[host_pid] = inner

    def _release(self, ready: Callable[[float, tuple[int, ...]], bool]) -> list[Line]:
        out: list[Line] = []
        while self._queue and ready(self._queue[0][2], self._queue[0][3]):
            kind, raw, _, _ = self._queue.popleft()
            line = self._render(kind, raw)
            if line is not None:
                out.append(line)
        return out

    def _pid(self, host_pid: int) -> str:
        inner = self._known.get(host_pid)
        return str(inner) if inner is not None else f"host:{host_pid}"

    def _render(self, kind: str, raw: str) -> Line | None:
        if kind != "trace":
            return Line(kind, escape(_MESSAGE_PIDS.sub(lambda m: m.group(1) + self._pid(int(m.group(2))), raw)))
        call = _SYSCALL.match(raw)
        if call and (call.group(1) or call.group(2)) in self._hidden:
            return None  # a clone() nsdash added to learn PIDs, not one the user asked for
        out = _PID_PREFIX.sub(lambda m: f"{self._pid(int(m.group(1))):<5} ", raw, count=1)
        if not self._keep_annotations:
            out = _ANNOTATION.sub(lambda m: m.group(1), out)  # the host's numbers: not the machine's view
        if self._root is not None:
            out = self._root.sub(lambda m: "</" if m.group(1) == "/" else "</>", out)
        gone = _EXITED.match(raw)
        if gone and gone.group(1):  # the host may reuse that PID now
            self._known.pop(int(gone.group(1)), None)
            self._unknown.discard(int(gone.group(1)))
        return Line(kind, escape(out))


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
            self.root_prefix = os.readlink(procs.proc / str(procs.target.leader) / "root")
        except OSError:
            self.root_prefix = "/"
        # Their machine PIDs now, while they exist: one may exit before strace attaches to it.
        self.seed = {h: p for h in host_pids if (p := procs.machine_pid(h)) is not None}
        self.rewriter = Rewriter(procs.machine_pid, self.root_prefix)
        self.process: subprocess.Popen[bytes] | None = None
        self._fds: dict[int, str] = {}
        self._open: set[int] = set()
        self._partial: dict[int, bytes] = {}
        self._poller = select.poll()

    def __enter__(self) -> StraceRun:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        read_end, write_end = os.pipe()
        try:
            argv, added = build_argv(self.strace, self.host_pids, self.options, write_end)
            keep = any(o.startswith(("--decode-pids", "--pidns-translation")) for o in self.options)
            self.rewriter = Rewriter(self.procs.machine_pid, self.root_prefix, added, keep, self.seed)
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
            self._poller.register(fd, select.POLLIN)

    def poll(self, timeout: float | None = None) -> list[Line]:
        """One look at strace's outputs: the lines in the machine's terms that are ready within
        TIMEOUT (None: until something comes), maybe none.  Nothing read is ever dropped."""
        if not self._open:
            return self.rewriter.drain()
        wait = timeout
        if self.rewriter.waiting:  # a held line is due within HOLD: look again soon
            wait = Rewriter.HOLD / 5 if timeout is None else min(timeout, Rewriter.HOLD / 5)
        # POLLHUP and POLLERR come without being asked for: the read then sees the end.
        ready = sorted(fd for fd, _ in self._poller.poll(None if wait is None else max(wait, 0) * 1000))
        now = time.monotonic()
        out = self.rewriter.expire(now)
        for fd in ready:
            out += self._read(fd, now)
        if not self._open:
            out += self.rewriter.drain()  # strace has closed both: nothing more will tell
        return out

    def lines(self) -> Iterator[Line]:
        """Every line, as strace writes them, until it exits."""
        while not self.finished:
            yield from self.poll(None)

    def _read(self, fd: int, now: float) -> list[Line]:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return []
        kind = self._fds[fd]
        out: list[Line] = []
        if not chunk:
            self._open.discard(fd)
            self._poller.unregister(fd)
            rest = self._partial.pop(fd, b"")
            if rest:
                out += self.rewriter.feed(kind, rest.decode("utf-8", "backslashreplace"), now)
            return out
        *whole, self._partial[fd] = (self._partial[fd] + chunk).split(b"\n")
        for raw in whole:  # decoded whole lines only: a read never splits a character
            out += self.rewriter.feed(kind, raw.decode("utf-8", "backslashreplace"), now)
        return out

    @property
    def finished(self) -> bool:
        """strace closed both its outputs (it has exited, or is about to) and every line is out."""
        return not self._open and not self.rewriter.waiting

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
            while not self.finished and time.monotonic() < deadline:
                tail += self.poll(max(deadline - time.monotonic(), 0.01))
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
        for fd in self._open:
            with contextlib.suppress(KeyError):
                self._poller.unregister(fd)
        self._fds = {}
        self._open = set()
        return tail

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()
