"""One supervisor per machine: it owns the machine for as long as it runs.

It holds the console PTY (master and slave, so the console survives reboots
and nobody attached is needed to drain it), writes the console log, keeps the
state entry, serves the control socket, registers with systemd-machined, and
runs the reboot loop.  It is single-threaded around a selector; only the
blocking Container.wait() runs in a helper thread that wakes the loop.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import selectors
import signal
import socket
import struct
import termios
import threading
import time
import uuid as uuidlib
from collections import deque
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from nsdash.errors import MachineExists, NsdashError
from nsdash.launcher.spec import ContainerSpec
from nsdash.machines import protocol as proto
from nsdash.machines import state as st
from nsdash.machines.consolelog import ConsoleLog, utc_now

REBOOT_BURST = 5  # more than this many reboots ...
REBOOT_WINDOW = 10.0  # ... within this many seconds stops the machine
STOP_TIMEOUT = 15.0  # poweroff/reboot: SIGKILL everything after this long
REPLAY_BYTES = 16 * 1024  # console history sent to a new attacher
CLIENT_BUFFER_LIMIT = 1024 * 1024  # an attacher this far behind is dropped
REGISTRATION_CHECKS = (1.0, 3.0, 8.0)  # seconds after each registration
SIGRTMIN = signal.SIGRTMIN.value if hasattr(signal.SIGRTMIN, "value") else int(signal.SIGRTMIN)


def init_kind(leader: int | None, boot: bool) -> str:
    """systemd | busybox | sysv for a booted tree's init; 'command' without -b."""
    if not boot:
        return "command"
    try:
        exe = os.readlink(f"/proc/{leader}/exe")
    except OSError:
        return "sysv"
    base = os.path.basename(exe.removesuffix(" (deleted)"))
    if "systemd" in base:
        return "systemd"
    if base.startswith("busybox"):
        return "busybox"
    return "sysv"


# What each init takes as "power off" and "reboot" (SysV init: powerfail and
# ctrl-alt-del from inittab; a plain command just gets SIGTERM, then SIGKILL).
POWEROFF_SIGNAL: dict[str, int] = {"systemd": SIGRTMIN + 4, "busybox": signal.SIGUSR2, "sysv": signal.SIGPWR,
                   "command": signal.SIGTERM}
REBOOT_SIGNAL: dict[str, int] = {"systemd": signal.SIGINT, "busybox": signal.SIGTERM, "sysv": signal.SIGINT,
                 "command": signal.SIGTERM}


class RebootLimiter:
    """Allows at most BURST reboots within WINDOW seconds."""

    def __init__(self, burst: int = REBOOT_BURST, window: float = REBOOT_WINDOW) -> None:
        self.burst, self.window = burst, window
        self.times: deque[float] = deque()

    def allow(self, now: float) -> bool:
        while self.times and now - self.times[0] > self.window:
            self.times.popleft()
        self.times.append(now)
        return len(self.times) <= self.burst


def outcome_event(kind: str, status: int) -> tuple[str, str | None]:
    """The console-log separator for how a boot ended."""
    if kind == "exited":
        return "exited", f"status {status}"
    if kind == "killed":
        try:
            name = signal.Signals(status).name
        except ValueError:
            name = str(status)
        return "killed", f"signal {name}"
    return kind, None


class _Conn:
    """One control-socket client."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lines = proto.LineReader()
        self.frames: proto.FrameReader | None = None  # set once attached
        self.greeted = False
        self.out = bytearray()
        self.closing = False
        self.refused = False  # a non-root peer: everything it sends is discarded

    @property
    def attached(self) -> bool:
        return self.frames is not None


class Supervisor:
    """Runs SPEC until it powers off, exits or is terminated; returns its exit status."""

    def __init__(self, spec: ContainerSpec, *, register: bool | None = None,
                 on_ready: Callable[[int], None] | None = None,
                 replay_bytes: int = REPLAY_BYTES) -> None:
        self.spec = spec
        self.name = spec.machine
        self.dir = st.machine_dir(self.name)
        self.on_ready = on_ready
        self.replay_bytes = replay_bytes
        self.register_mode = spec.register if register is None else ("yes" if register else "no")
        self.sel = selectors.DefaultSelector()
        self.conns: dict[int, _Conn] = {}
        self.container: Any = None
        self.outcome: Any = None
        self.boot = 0
        self.started = utc_now()
        self.since = self.started
        self.phase = "starting"
        self.stop_reason: str | None = None  # "poweroff" | "terminate" | "reboot-loop" ...
        self.reboot_requested = False
        self.kill_deadline: float | None = None
        self.registration_checks: list[float] = []
        self.limiter = RebootLimiter()
        self.uuid = spec.uuid or uuidlib.uuid4().hex
        self.registration: Any = None
        self.exit_status = 0
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._lock_fd = -1
        self._pty_retry: float | None = None  # when to watch the PTY master again after EIO

    # ---------------------------------------------------------------- lifecycle

    def run(self) -> int:
        with ExitStack() as stack:
            self._claim_entry()
            stack.callback(self._remove_entry)
            self.master, self.slave = os.openpty()
            self.slave_path = os.ttyname(self.slave)
            stack.callback(os.close, self.master)
            stack.callback(lambda: os.close(self.slave))
            os.set_blocking(self.master, False)
            os.set_inheritable(self.master, False)
            self._set_winsize(24, 80)
            self.log = ConsoleLog(self.dir / st.CONSOLE_LOG)
            stack.callback(self.log.close)
            self.listener = self._listen()
            stack.callback(self.listener.close)
            stack.callback(self._close_conns)
            self._signals(stack)
            stack.callback(self._close_container)  # on every path, a crash included
            self.registration = self._registration()
            if self.registration is not None:
                stack.callback(self.registration.unregister)
            self._boot_once()
            if self.on_ready is not None:
                self.on_ready(self.container.leader)
            self._loop()
            return self.exit_status

    def _close_container(self) -> None:
        if self.container is not None:
            container, self.container = self.container, None
            container.close()

    def _claim_entry(self) -> None:
        """Create the state entry holding its lock, atomically by rename."""
        from nsdash.machines.orphans import clean_orphan

        root = st.machines_root()
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".{self.name}.{os.getpid()}"
        tmp.mkdir(mode=0o755)
        self._lock_fd = os.open(tmp / st.LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        for _ in range(3):
            try:
                os.rename(tmp, self.dir)
                return
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
            if st.supervisor_alive(self.dir):
                os.close(self._lock_fd)
                for f in tmp.iterdir():
                    f.unlink()
                tmp.rmdir()
                raise MachineExists(f"machine '{self.name}' is already running",
                                    f"pick another name with -M, or stop it with 'nsdash poweroff {self.name}'")
            clean_orphan(self.name)
        raise NsdashError(f"could not claim the state entry for '{self.name}'")

    def _remove_entry(self) -> None:
        # Everything the entry holds (state, socket, the console log and its side files,
        # temporaries), whatever other modules keep there: only the supervisor removes it.
        for entry in self.dir.iterdir():
            if entry.name != st.LOCK_FILE:
                with contextlib.suppress(OSError):
                    entry.unlink()
        # The lock goes last, so nobody sees a lock-less entry while we tear down.
        with contextlib.suppress(OSError):
            (self.dir / st.LOCK_FILE).unlink()
        with contextlib.suppress(OSError):
            self.dir.rmdir()
        os.close(self._lock_fd)

    def _listen(self) -> socket.socket:
        path = self.dir / st.CONTROL
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(socket.SOMAXCONN)
        sock.setblocking(False)
        self.sel.register(sock, selectors.EVENT_READ, "listen")
        return sock

    def _signals(self, stack: ExitStack) -> None:
        self._sig_r, sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        old_fd = signal.set_wakeup_fd(sig_w, warn_on_full_buffer=False)
        stack.callback(signal.set_wakeup_fd, old_fd)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            previous = signal.signal(sig, lambda *_: None)
            stack.callback(signal.signal, sig, previous)
        self.sel.register(self._sig_r, selectors.EVENT_READ, "signal")
        self.sel.register(self._wake_r, selectors.EVENT_READ, "wake")

    def _cgroup_backend(self) -> Any:
        """A systemd scope for this boot where systemd manages the host, else None (nsdash
        makes the cgroups itself): machines/units.py."""
        from nsdash.machines import units

        return units.cgroup_backend(self.spec)

    def _in_systemd_scope(self) -> bool:
        """machined keeps a registration whose unit systemd made; only a cgroup nsdash made
        itself needs the checks after each registration."""
        return bool(getattr(self.container, "managed_cgroup", False))

    def _registration(self) -> Any:
        if self.register_mode == "no":
            return None
        from nsdash.machines import machined

        return machined.Registration.open(required=self.register_mode == "yes")

    # ---------------------------------------------------------------- boots

    def _boot_once(self) -> None:
        from nsdash.launcher.container import Container

        self.boot += 1
        self.outcome = None
        self.reboot_requested = False
        self.kill_deadline = None
        self._broadcast(self.log.mark(f"boot {self.boot}"))
        self._reopen_console()
        self.container = Container(self.spec, console_fd=self.slave, cgroup=self._cgroup_backend())
        try:
            self.container.start()
        except BaseException:
            self.container.close()
            self.container = None
            raise
        self.phase = "running"
        self.since = utc_now()  # when this boot's init started, after any slow set-up
        if self.registration is not None:
            self.registration.register(self._state())
            if not self._in_systemd_scope():
                now = time.monotonic()
                self.registration_checks = [now + d for d in REGISTRATION_CHECKS]
        self._write_state()
        self._broadcast(proto.event_frame(f"boot {self.boot}", leader=self.container.leader), raw=True)
        pidfd = getattr(self.container, "pidfd", None)
        if pidfd is not None:
            self.sel.register(pidfd, selectors.EVENT_READ, "leader")
        else:  # no pidfd (old kernel): a thread blocks in wait() and wakes the loop
            threading.Thread(target=self._wait_container, args=(self.container,), daemon=True).start()

    def _reopen_console(self) -> None:
        """A fresh slave fd for each boot: systemd's shutdown hangs the console up
        (vhangup), after which every operation on the old fd fails with EIO."""
        if self.boot == 1:
            return
        fd = os.open(self.slave_path, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        winsize = fcntl.ioctl(self.master, termios.TIOCGWINSZ, b"\0" * 8)
        os.close(self.slave)
        self.slave = fd
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, winsize)

    def _wait_container(self, container: Any) -> None:
        outcome = container.wait()
        self.outcome = outcome
        os.write(self._wake_w, b"x")

    def _leader_exited(self) -> None:
        self.outcome = self.container.poll()
        if self.outcome is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(self.container.pidfd)

    def _after_exit(self) -> bool:
        """The container's init ended: log it, then reboot (True) or stop (False)."""
        outcome = self.outcome
        event, detail = outcome_event(outcome.kind, outcome.status)
        reboot = self.stop_reason is None and (outcome.kind == "reboot" or self.reboot_requested)
        if reboot and not self.limiter.allow(time.monotonic()):
            self._broadcast(self.log.mark("reboot"))
            self.stop_reason = "reboot-loop"
            event, detail = "exited", (f"reboot loop: more than {REBOOT_BURST} reboots "
                                       f"in {REBOOT_WINDOW:.0f} s, stopped")
            reboot = False
        elif reboot:
            event, detail = "reboot", None
        self._broadcast(self.log.mark(event, detail))
        self._broadcast(proto.event_frame(event, kind=outcome.kind, status=outcome.status,
                                          detail=detail), raw=True)
        self.exit_status = self._exit_status(outcome)
        if reboot:
            self.phase = "rebooting"
            self._write_state()
        if self.registration is not None:
            self.registration.unregister()
        pidfd = getattr(self.container, "pidfd", None)
        if pidfd is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(pidfd)
        self.container.close()
        self.container = None
        return reboot

    def _exit_status(self, outcome: Any) -> int:
        if self.stop_reason == "reboot-loop":
            return 1
        if outcome.kind == "exited":
            return outcome.status
        if outcome.kind == "killed" and self.stop_reason is None:
            return 128 + outcome.status
        return 0

    # ---------------------------------------------------------------- actions

    def poweroff(self, timeout: float = STOP_TIMEOUT) -> None:
        self.stop_reason = self.stop_reason or "poweroff"
        self._stop_signal(POWEROFF_SIGNAL, timeout)

    def reboot(self, timeout: float = STOP_TIMEOUT) -> None:
        self.reboot_requested = True
        self._stop_signal(REBOOT_SIGNAL, timeout)

    def terminate(self) -> None:
        self.stop_reason = self.stop_reason or "terminate"
        self._set_phase("stopping")
        self.container.signal(signal.SIGKILL, "all")

    def kill(self, sig: int, whom: str) -> None:
        self.container.signal(sig, whom)

    def _stop_signal(self, table: dict[str, int], timeout: float) -> None:
        kind = init_kind(self.container.leader, self.spec.boot)
        sig = table[kind]
        if kind == "command" and table is POWEROFF_SIGNAL and self.spec.kill_signal:
            sig = self.spec.kill_signal
        self._set_phase("rebooting" if table is REBOOT_SIGNAL and self.stop_reason is None else "stopping")
        self.container.signal(sig, "leader")
        deadline = time.monotonic() + timeout
        self.kill_deadline = min(self.kill_deadline or deadline, deadline)

    def _set_phase(self, phase: str) -> None:
        if self.phase != phase:
            self.phase = phase
            self._write_state()

    # ---------------------------------------------------------------- state

    def _state(self) -> st.MachineState:
        leader = self.container.leader if self.container is not None else None
        cgroup = getattr(self.container, "cgroup", "") or ""
        netif = getattr(self.container, "netif", None)
        if isinstance(netif, str):
            netif = [netif]
        return st.MachineState(
            name=self.name, root=str(self.spec.directory), leader=leader, cgroup=cgroup,
            supervisor=os.getpid(), started=self.started, since=self.since, boot=self.boot,
            state=self.phase, uuid=self.uuid, netif=list(netif or []), boot_mode=self.spec.boot,
            command=list(self.spec.command), ephemeral=self.spec.ephemeral,
            registered=self.registration is not None and self.registration.active)

    def _write_state(self) -> None:
        st.write_state(self.dir, self._state())

    def status(self) -> dict[str, Any]:
        data = self._state().to_json()
        data["init"] = init_kind(data["leader"], self.spec.boot) if data["leader"] else None
        data["attached"] = sum(1 for c in self.conns.values() if c.attached)
        return data

    # ---------------------------------------------------------------- event loop

    def _loop(self) -> None:
        self.sel.register(self.master, selectors.EVENT_READ, "pty")
        while True:
            deadlines = [d for d in (self.kill_deadline, self._pty_retry, *self.registration_checks[:1])
                         if d is not None]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            for key, mask in self.sel.select(timeout):
                what = key.data
                if what == "pty":
                    self._pty_readable()
                elif what == "listen":
                    self._accept()
                elif what == "signal":
                    self._drain(self._sig_r)
                    if self.container is not None and self.stop_reason is None:
                        self.poweroff()
                elif what == "wake":
                    self._drain(self._wake_r)
                elif what == "leader":
                    self._leader_exited()
                elif isinstance(what, _Conn):
                    self._serve(what, mask)
            if self._pty_retry is not None and time.monotonic() >= self._pty_retry:
                self._pty_retry = None
                self.sel.register(self.master, selectors.EVENT_READ, "pty")
                self._pty_readable()
            if self.registration_checks and time.monotonic() >= self.registration_checks[0]:
                self.registration_checks.pop(0)
                self._check_registration()
            if self.kill_deadline is not None and time.monotonic() >= self.kill_deadline:
                self.kill_deadline = None
                if self.container is not None:
                    self.container.signal(signal.SIGKILL, "all")
            if self.outcome is not None and self.container is not None:
                self._pty_readable()  # the last words before the separator
                if not self._after_exit():
                    self._pty_readable()
                    return
                try:
                    self._boot_once()
                except (NsdashError, OSError) as e:
                    reason = e.message if isinstance(e, NsdashError) else str(e)
                    self._broadcast(self.log.mark("exited", f"reboot failed: {reason}"))
                    self.exit_status = 1
                    return

    def _check_registration(self) -> None:
        """machined may drop a registration whose unit systemd does not know (ours is
        a scope made by nsdash, not by systemd) when unit events from the previous
        boot arrive late; a short while after each registration, make sure it holds."""
        if self.registration is None or self.container is None or self.phase != "running":
            return
        with contextlib.suppress(NsdashError):
            self.registration.ensure(self._state())

    @staticmethod
    def _drain(fd: int) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(fd, 4096):
                pass

    def _pty_readable(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno == errno.EIO:
                    self._pty_no_reader()
                    return
                raise
            if not data:
                return
            self.log.write(data)
            self._broadcast(data)

    PTY_RETRY = 0.1  # seconds between looks at a PTY whose slave nobody has open

    def _pty_no_reader(self) -> None:
        """EIO from the master: no slave is open right now (between systemd closing the
        console and getty opening it, or after a hangup).  The master then polls readable
        without pause, so stop watching it for a moment rather than spin; the machine and
        its attachers carry on."""
        if self._pty_retry is None:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(self.master)
            self._pty_retry = time.monotonic() + self.PTY_RETRY

    def _broadcast(self, data: bytes, raw: bool = False) -> None:
        if not self.conns:
            return
        wire = data if raw else proto.output_frames(data)
        for conn in list(self.conns.values()):
            if conn.attached:
                self._send(conn, wire)

    def _set_winsize(self, rows: int, cols: int) -> None:
        # Through the master: the slave fd is hung up (EIO on every ioctl) once systemd or
        # getty has called vhangup() on the console; the master always reaches the pair.
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    # ---------------------------------------------------------------- clients

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            conn = _Conn(sock)
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _pid, uid, _gid = struct.unpack("3i", creds)
            self.conns[sock.fileno()] = conn
            self.sel.register(sock, selectors.EVENT_READ, conn)
            if uid != 0:
                # Defence in depth: the socket's mode already keeps others out.  The
                # connection stays open, unread, until the peer closes it: closing
                # with its request unread would reset it before it saw the error.
                conn.refused = True
                self._send(conn, proto.error("permission-denied", "only root may control machines"))

    def _serve(self, conn: _Conn, mask: int) -> None:
        try:
            if mask & selectors.EVENT_READ:
                self._conn_readable(conn)
            if mask & selectors.EVENT_WRITE and conn.sock.fileno() >= 0:
                self._flush(conn)
        except Exception as e:  # noqa: BLE001 - one client's request must never bring the machine down
            message = f"{type(e).__name__}: {e}"[:500]
            # An attached client reads console frames: a JSON line there would be garbage to it.
            wire = proto.event_frame("error", code="internal", message=message) if conn.attached \
                else proto.error("internal", message)
            with contextlib.suppress(OSError, proto.BadMessage):
                conn.sock.send(bytes(conn.out) + wire)
            self._drop(conn)

    def _drop(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        if fd >= 0:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(conn.sock)
            self.conns.pop(fd, None)
            conn.sock.close()

    def _close_conns(self) -> None:
        for conn in list(self.conns.values()):
            with contextlib.suppress(OSError):
                conn.sock.setblocking(True)
                conn.sock.settimeout(0.5)
                conn.sock.sendall(bytes(conn.out))
            self._drop(conn)

    def _send(self, conn: _Conn, data: bytes) -> None:
        conn.out += data
        if len(conn.out) > CLIENT_BUFFER_LIMIT:
            self._drop(conn)  # a stalled attacher must never stall the machine
            return
        self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        try:
            while conn.out:
                n = conn.sock.send(conn.out)
                del conn.out[:n]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._drop(conn)
            return
        if conn.closing and not conn.out:
            self._drop(conn)
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out else 0)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.modify(conn.sock, events, conn)

    def _conn_readable(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)  # detaching (or a truncated request) never stops the machine
            return
        if conn.refused:
            return
        if conn.attached:
            self._console_input(conn, data)
            return
        conn.lines.push(data)
        while (item := conn.lines.pop()) is not None:
            if isinstance(item, proto.BadMessage):
                self._send(conn, proto.error(item.code, item.message))
                continue
            self._request(conn, item)
            if conn.attached:
                rest = conn.lines.pending()
                if rest:
                    self._console_input(conn, rest)
                return

    def _console_input(self, conn: _Conn, data: bytes) -> None:
        assert conn.frames is not None
        try:
            frames = conn.frames.feed(data)
        except proto.BadMessage as e:
            self._send(conn, proto.event_frame("error", code=e.code, message=e.message))
            conn.closing = True
            self._flush(conn)
            return
        for kind, payload in frames:
            if kind == proto.FRAME_INPUT:
                if self.spec.console != "read-only":
                    self._write_console(payload)
            elif kind == proto.FRAME_WINSIZE:
                try:
                    rows, cols = proto.parse_winsize(payload)
                    if rows and cols:
                        self._set_winsize(rows, cols)
                except proto.BadMessage as e:
                    self._send(conn, proto.event_frame("error", code=e.code, message=e.message))
            else:
                self._send(conn, proto.event_frame("error", code="bad-frame",
                                                   message="clients send only I and W frames"))

    def _write_console(self, data: bytes) -> None:
        # The PTY's input queue is small; a client that types faster than the
        # machine reads loses the excess rather than blocking every other client.
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self.master, data)

    def _request(self, conn: _Conn, req: proto.Request | bytes) -> None:
        if isinstance(req, bytes):
            try:
                req = proto.decode_request(req)
            except proto.BadMessage as e:
                self._send(conn, proto.error(e.code, e.message))
                return
        rid = req.id
        if not conn.greeted:
            if req.op != "hello":
                self._send(conn, proto.error("out-of-order", "send hello first", rid))
                return
            if req.arg("version") != proto.VERSION:
                self._send(conn, proto.error(
                    "version", f"protocol version {req.arg('version')} not supported "
                               f"(this supervisor speaks {proto.VERSION})", rid))
                return
            conn.greeted = True
            self._send(conn, proto.ok(rid, version=proto.VERSION, machine=self.name))
            return
        if req.op == "hello":
            self._send(conn, proto.error("out-of-order", "hello was already sent", rid))
            return
        if req.op == "status":
            self._send(conn, proto.ok(rid, status=self.status()))
            return
        if self.container is None or self.container.leader is None:
            self._send(conn, proto.error("not-running", f"machine '{self.name}' is not running now", rid))
            return
        if req.op == "attach":
            self._send(conn, proto.ok(rid, replay=True))
            conn.frames = proto.FrameReader()
            if req.arg("rows") and req.arg("cols"):
                self._set_winsize(req.arg("rows"), req.arg("cols"))
            history = self.log.tail_safe(req.arg("replay", self.replay_bytes))
            if history:
                self._send(conn, proto.output_frames(history))
            return
        try:
            if req.op == "poweroff":
                self.poweroff(req.arg("timeout", STOP_TIMEOUT))
            elif req.op == "reboot":
                self.reboot(req.arg("timeout", STOP_TIMEOUT))
            elif req.op == "terminate":
                self.terminate()
            elif req.op == "kill":
                self.kill(req.arg("signal"), req.arg("whom", "leader"))
        except (OSError, NsdashError) as e:
            self._send(conn, proto.error("failed", str(e), rid))
            return
        self._send(conn, proto.ok(rid, leader=self.container.leader, boot=self.boot))
