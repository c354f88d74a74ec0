"""ssh as a child of ours, its stdio on pipes: the part of subprocess.Popen that -H uses.

`nsdash -H HOST list` spent a tenth of its own start importing subprocess
(locale, signal, threading, selectors, contextlib, warnings; python -X
importtime).  posix_spawn starts ssh the same way (no shell, the signal
dispositions Popen restores, no descriptor of ours but its three pipes) from
modules the command loads anyway.

Why not Popen, which spawns with posix_spawn itself when it can (Python 3.11's
_execute_child): only with close_fds=False (and an executable with a directory part, no
cwd, pass_fds, preexec_fn, ...), and then every inheritable descriptor whoever started us
left open goes on to ssh, whose ControlMaster stays on for ControlPersist after we end;
with close_fds=True it forks (vfork) and execs instead.  posix_spawn learnt to close from a
number on (closefrom) in CPython 3.13 (gh-113117); tests/unit/test_remote_start.py says when
the Python in use has it.  And importing subprocess costs 13-15% of a -H command's own start
(about 4 of 30 ms, measured side by side).

The object answers to what Connection and the dashboard's workers ask of a
Popen: pid, returncode, poll(), wait([timeout]) (subprocess.TimeoutExpired
when it runs out), kill(), terminate(), and stdin/stdout/stderr as unbuffered
files.  Its end is waited for on a pidfd, not by polling.
"""

from __future__ import annotations

import io
import os
import signal

from nsdash.system.ready import readable

TYPE_CHECKING = False  # mypy takes this as true
if TYPE_CHECKING:
    from collections.abc import Sequence

# What Popen (restore_signals) gives a child back; Python itself ignores them.
_RESTORED = tuple(getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, name))


def _inheritable() -> list[int]:
    """Our descriptors past stderr that an exec would pass on: what whoever started us left open
    (Python opens its own close-on-exec).  (A close of one gone meanwhile is ignored by glibc.)"""
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    found.append(fd)
            except OSError:  # (the directory's own descriptor, closed by now)
                pass
    return found


class SshProcess:
    """ARGV (ssh and its arguments, looked up on PATH) running with pipes on its stdin, stdout
    and stderr.  FileNotFoundError (filename: ARGV[0]) when there is no such program."""

    def __init__(self, argv: Sequence[str]) -> None:
        ends: list[int] = []
        try:
            in_r, in_w = os.pipe2(os.O_CLOEXEC)
            ends += (in_r, in_w)
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            ends += (out_r, out_w)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            ends += (err_r, err_w)
            # dup2 onto 0, 1, 2 clears close-on-exec there; the rest is closed, as Popen does
            actions = [(os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
                       (os.POSIX_SPAWN_DUP2, err_w, 2), *((os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable())]
            self.pid = os.posix_spawnp(argv[0], list(argv), os.environ, setsigdef=_RESTORED, file_actions=actions)
        except BaseException:
            for fd in ends:
                os.close(fd)
            raise
        for fd in (in_r, out_w, err_w):
            os.close(fd)
        self.args = list(argv)
        self.returncode: int | None = None
        self.stdin = io.FileIO(in_w, "w")
        self.stdout = io.FileIO(out_r, "r")
        self.stderr = io.FileIO(err_r, "r")

    def poll(self) -> int | None:
        """Its exit status if it has ended (then reaped), else None; as Popen, -N for signal N."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: nothing more to learn
                pid, status = self.pid, 255 << 8
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Its exit status, waiting at most TIMEOUT seconds (subprocess.TimeoutExpired after)."""
        if timeout is not None and not self.ended(timeout):
            import subprocess  # (only here: the exception its callers already know)

            raise subprocess.TimeoutExpired(self.args, timeout)
        code = self.poll()
        if code is not None:
            return code
        try:
            _, status = os.waitpid(self.pid, 0)
            code = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            code = 255
        self.returncode = code
        return code

    def ended(self, timeout: float) -> bool:
        """Whether it ends within TIMEOUT seconds (reaped then).  Told by a pidfd the moment it
        ends: Popen.wait(timeout) polls, sleeping up to 50 ms between looks."""
        if self.poll() is not None:
            return True
        try:
            pidfd = os.pidfd_open(self.pid)
        except ProcessLookupError:  # (a zombie has a pidfd: only a reaped pid has none)
            return self.poll() is not None
        try:
            if not readable([pidfd], timeout):
                return False
        finally:
            os.close(pidfd)
        self.wait()
        return True

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:  # never a pid that has been reaped (and maybe reused)
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)
