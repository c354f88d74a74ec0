"""The supervisor's `bus-call`: one method call on its guest's own bus, made off the engine's loop.

`nsdash systemctl -M M list-units`/`status` send their calls here over the
control socket instead of speaking D-Bus themselves: the supervisor has
dbus-fast's marshalling loaded once for its life, so the command does not pay
for it on every run (PROTOCOL.md, `bus-call`).

The guest is untrusted and its bus may stall, dribble, flood or answer
garbage.  So the calls run in one worker thread, one at a time, from a bounded
queue (a full queue answers `busy` at once); each call has a deadline that
covers connecting, every read and the wait in the queue, and a budget of
BUS_REPLY_MAX bytes read from the guest for it.  A call that breaks either
answers one error line and closes the guest connection (it may be mid-message).
The engine's loop only queues jobs and sends the finished lines, woken through
its wake pipe: the console, actions and reaping never wait on a guest's bus.

The connection is kept between calls (no authentication and Hello per call)
and closed after IDLE seconds without one, or when the machine rebooted.  The
worker thread ends with it: a reboot forks its new container straight into the
machine's cgroup only while no other thread runs (syscalls.fork_into_cgroup),
so the engine also asks it to end (quiesce) before each boot.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from nsdash.machines import protocol as proto
from nsdash.machines.busguard import BUS_REPLY_MAX, Guarded, ReplyTooLarge
from nsdash.system import confined, dbusjson, dbuswire

BUS_SOCKET = "run/dbus/system_bus_socket"
QUEUE_MAX = 8  # calls waiting for the worker; more answer `busy`
IDLE = 30.0  # seconds an unused guest connection is kept


class _NoSocket(Exception):
    """The guest has no bus socket (yet): the client says why (no systemd, no dbus)."""


class Job:
    """One bus-call request: who gets the answer (KEY, RID), on which boot (LEADER), what to call.

    PIDFD (-1: none, a test's fake /proc) is the leader's, opened by the engine when it queues the
    call, while the PID cannot have been reused (the engine is the one that reaps it).  The worker
    may run the call up to BUS_TIMEOUT_MAX later: by then that boot may have ended and its PID
    gone to another process (pid_max is 32768 on small hosts), whose /proc/PID/root may be the
    host's own, with the host's bus in it.  So the worker connects only while PIDFD's process lives.
    """

    def __init__(self, key: Any, rid: Any, leader: int, args: dict[str, Any], pidfd: int = -1) -> None:
        self.key = key
        self.rid = rid
        self.leader = leader
        self.args = args
        self.pidfd = pidfd
        self.deadline = time.monotonic() + float(args.get("timeout", 10.0))

    def release(self) -> None:
        """Close the leader's pidfd (the call was answered, or never queued)."""
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1


class BusProxy:
    """The worker and its queues.  submit() and take() are the engine's; the rest runs in the worker."""

    def __init__(self, wake: Callable[[], None], proc: str = "/proc") -> None:
        self.wake = wake
        self.proc = proc
        self.jobs: queue.Queue[Job | None] = queue.Queue(QUEUE_MAX)  # None: end when idle
        self.done: deque[tuple[Any, bytes]] = deque()  # (key, the reply line)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # the thread's start and end against submit()
        self._guard: Guarded | None = None
        self._wire: dbuswire.Connection | None = None
        self._leader = 0

    # ------------------------------------------------------------ the engine's side

    def submit(self, job: Job) -> bool:
        """Queue JOB; False when the queue is full (answer `busy`)."""
        with self._lock:
            try:
                self.jobs.put_nowait(job)
            except queue.Full:
                return False
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="bus-call", daemon=True)
                self._thread.start()
        return True

    def quiesce(self, timeout: float) -> None:
        """Ask the worker to end once its queue is empty, and wait up to TIMEOUT for it (a call
        to a guest that just ended fails at once; one that lasts longer just keeps running)."""
        with self._lock:
            thread = self._thread
            if thread is None:
                return
            with contextlib.suppress(queue.Full):  # full: it is busy, and stays so
                self.jobs.put_nowait(None)
        thread.join(timeout)

    def take(self) -> list[tuple[Any, bytes]]:
        """The answers finished since the last take()."""
        out = []
        while self.done:
            out.append(self.done.popleft())
        return out

    # ------------------------------------------------------------ the worker

    def _work(self) -> None:
        while True:
            try:
                job = self.jobs.get(timeout=IDLE)
            except queue.Empty:
                job = None
            if job is None:
                with self._lock:
                    if self.jobs.empty():
                        self._close()
                        self._thread = None
                        return
                continue
            try:
                line = self.answer(job)
            except Exception as e:  # noqa: BLE001 - whatever happens, the client gets its one line
                self._close()
                line = proto.error("failed", f"{type(e).__name__}: {e}"[:500], job.rid)
            finally:
                job.release()
            self.done.append((job.key, line))
            self.wake()

    def answer(self, job: Job) -> bytes:
        """JOB's reply line (performed in the calling thread; the worker's, or a test's)."""
        rid = job.rid
        try:
            body = self._call_retrying(job)
        except dbuswire.WireError as e:
            return proto.bus_error(rid, e.name, e.name if e.text is None else e.text)
        except TimeoutError:
            self._close()
            return proto.error("bus-timeout", "the machine's bus did not answer in time", rid)
        except ReplyTooLarge:
            self._close()
            return proto.error("oversized", f"the machine's answer is longer than {BUS_REPLY_MAX} bytes", rid)
        except _NoSocket:
            return proto.error("bus-unreachable", "no-socket", rid)
        except ConnectionRefusedError:
            self._close()
            return proto.error("bus-unreachable", "refused", rid)
        except Exception as e:  # noqa: BLE001 - EOF, a reset, or garbage the unmarshaller refused
            self._close()
            return proto.error("bus-unreachable", f"lost: {str(e)[:200] or type(e).__name__}", rid)
        try:
            return proto.bus_reply(rid, dbusjson.encode(body))
        except dbusjson.NotEncodable as e:
            return proto.error("failed", str(e), rid)

    def _call_retrying(self, job: Job) -> list[Any]:
        reused = self._wire is not None and self._leader == job.leader
        try:
            return self._call(job)
        except (EOFError, BrokenPipeError, ConnectionResetError):
            if not reused:
                raise
        # The kept connection had gone (the guest's dbus restarted): once more on a new one.
        self._close()
        return self._call(job)

    def _call(self, job: Job) -> list[Any]:
        if time.monotonic() >= job.deadline:
            raise TimeoutError("waited in the queue past the deadline")
        if self._wire is None or self._leader != job.leader:
            self._connect(job)
        assert self._wire is not None and self._guard is not None
        self._guard.arm(job.deadline, BUS_REPLY_MAX)
        a = job.args
        return self._wire.call(a["destination"], a["path"], a["interface"], a["member"],
                               a.get("signature", ""), dbusjson.restore(a.get("body", [])))

    def _connect(self, job: Job) -> None:
        self._close()
        try:
            rootfd = os.open(f"{self.proc}/{job.leader}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise EOFError(f"the machine's init is gone ({e.strerror})") from None
        try:
            if job.pidfd >= 0:
                try:  # after the open: alive now, it was the job's leader whose root we opened
                    signal.pidfd_send_signal(job.pidfd, 0)
                except ProcessLookupError:
                    raise EOFError("the machine's init is gone (its PID may belong to another process now)") from None
            try:
                # inside the guest's root, as openat2 RESOLVE_IN_ROOT resolves: a planted
                # absolute symlink cannot lead us to the host's own bus
                fd = confined.open_path_in_root(rootfd, BUS_SOCKET)
            except OSError as e:
                if e.errno in (errno.ENOENT, errno.ENOTDIR):
                    raise _NoSocket() from None
                raise
        finally:
            os.close(rootfd)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        guard = Guarded(sock)
        guard.arm(job.deadline, BUS_REPLY_MAX)
        try:
            guard.connect(f"/proc/self/fd/{fd}")
            wire = dbuswire.Connection(guard, 0)
        except BaseException:
            sock.close()
            raise
        finally:
            os.close(fd)
        self._guard, self._wire, self._leader = guard, wire, job.leader

    def _close(self) -> None:
        if self._wire is not None:
            self._wire.close()
        self._wire = self._guard = None
        self._leader = 0
