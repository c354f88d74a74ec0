"""What the CLI and the dashboard call to run and manage machines.

Every call resolves the name first: a live machine is reached through its
supervisor's control socket; an orphan (its supervisor died) is cleaned up
and reported; an unknown name is an error naming the choices.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nsdash.errors import MachineNotFound, NsdashError, PrivilegeError, ProtocolError
from nsdash.launcher import speccodec
from nsdash.launcher.spec import ContainerSpec
from nsdash.machines import protocol as proto
from nsdash.machines import registry
from nsdash.machines import state as st
from nsdash.system.text import escape

Notice = Callable[[str], None]
STOP_TIMEOUT = 15.0  # the engine's default: then SIGKILL (supervisor.STOP_TIMEOUT)
STOP_GRACE = 15.0  # how much longer a client waits for the engine's answer


def _stderr_notice(text: str) -> None:
    sys.stderr.write(f"nsdash: {text}\n")


class OrphanCleaned(MachineNotFound):
    """The name belonged to an orphan, which has now been cleaned up."""


def require_root() -> None:
    if os.geteuid() != 0:
        raise PrivilegeError("managing machines needs root", "run the command with sudo")


def clean_if_orphan(name: str, notice: Notice | None = _stderr_notice) -> bool:
    """Clean NAME's entry if its supervisor died; True if there was one."""
    if not st.orphaned(name):
        return False
    from nsdash.machines.orphans import clean_orphan

    done = clean_orphan(name)
    if notice is not None:
        notice(f"machine '{name}' was orphaned (its supervisor died); cleaned up: "
               + ("; ".join(done) if done else "nothing left"))
    return True


# ---------------------------------------------------------------- control connection


class Control:
    """A request/response connection to one supervisor."""

    def __init__(self, name: str, timeout: float = 10.0) -> None:
        self.name = name
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.settimeout(timeout)
        self.lines = proto.LineReader()
        self._id = 0
        try:
            self._connect(str(st.machine_dir(name) / st.CONTROL), timeout)
        except PermissionError:
            self.sock.close()
            raise PrivilegeError(f"no permission to control machine '{name}'", "run the command as root") from None
        except OSError as e:
            self.sock.close()
            raise MachineNotFound(f"machine '{name}' is not answering ({e.strerror})",
                                  "see 'nsdash list'") from None
        self.request("hello", version=proto.VERSION)

    def _connect(self, path: str, timeout: float) -> None:
        # With a timeout set, connect() on a unix socket whose backlog is full fails at
        # once with EAGAIN instead of waiting: retry until the supervisor catches up.
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock.connect(path)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        """One request; its reply as it came, an error reply included."""
        self._id += 1
        try:
            self.sock.sendall(proto.encode_request(op, self._id, **args))
            return proto.decode_response(self._line())
        except (ConnectionResetError, BrokenPipeError):
            # the supervisor exited mid-call (its machine stopped): as a close, not a traceback,
            # and not a BrokenPipeError, which nsdash.cli takes for `| head` and exits 0 on
            raise ProtocolError(f"machine '{self.name}': the supervisor closed the connection") from None

    def request(self, op: str, **args: Any) -> dict[str, Any]:
        reply = self.call(op, **args)
        if not reply["ok"]:
            code, message = reply.get("error"), reply.get("message", "")
            if code == "permission-denied":
                raise PrivilegeError(message, "run the command as root")
            raise ProtocolError(f"machine '{self.name}': {message}")
        return reply

    def _line(self) -> bytes:
        while True:
            item = self.lines.pop()
            if isinstance(item, proto.BadMessage):
                raise ProtocolError(f"machine '{self.name}': {item.message}")
            if item is not None:
                return item
            data = self.sock.recv(65536)
            if not data:
                raise ProtocolError(f"machine '{self.name}': the supervisor closed the connection")
            self.lines.push(data)

    def wait_closed(self, timeout: float) -> bool:
        """Wait until the supervisor closes the connection (it exits); True if it did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                if not self.sock.recv(65536):
                    return True
            except TimeoutError:
                return False
            except OSError:
                return True
        return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Control:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(name: str, notice: Notice | None = _stderr_notice) -> Control:
    require_root()
    registry.validate_name(name)
    if clean_if_orphan(name, notice):
        raise OrphanCleaned(f"machine '{name}' is not running (its orphaned remains were cleaned up)",
                            f"start it again with 'nsdash start {name}' or 'nsdash spawn'")
    directory = st.machine_dir(name)
    if not directory.exists():
        registry.lookup(name, with_machined=False)  # raises with suggestions
    return Control(name)


def _wait_entry_gone(name: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    directory = st.machine_dir(name)
    while time.monotonic() < deadline:
        if not directory.exists():
            return True
        time.sleep(0.02)
    return not directory.exists()


# ---------------------------------------------------------------- verbs


def status(name: str) -> dict[str, Any]:
    with connect(name) as c:
        return dict(c.request("status")["status"])


def _stop(name: str, op: str, wait: bool, timeout: float) -> dict[str, Any]:
    """Ask NAME's engine to OP; with WAIT, until this boot has ended.  A machine that had to be
    killed at the deadline is an error that says so (the command exits non-zero)."""
    with connect(name) as c:
        if not wait:
            return c.request(op)
        c.sock.settimeout(timeout + STOP_GRACE)
        args: dict[str, Any] = {"timeout": timeout} if op != "terminate" else {}
        try:
            reply = c.call(op, wait=True, **args)
        except TimeoutError:
            raise NsdashError(f"machine '{name}' did not stop within {timeout + STOP_GRACE:.0f} s",
                              f"force it with 'nsdash terminate {name}'") from None
        if not reply["ok"]:
            if reply.get("error") == "killed":
                raise NsdashError(f"{escape(reply.get('message', ''))} (SIGKILL to every process)",
                                  "its init did not finish shutting down in time; see "
                                  f"'nsdash journal -M {name}' or its console log") from None
            raise ProtocolError(f"machine '{name}': {reply.get('message', '')}")
        if op != "reboot" and not (c.wait_closed(STOP_GRACE) and _wait_entry_gone(name, 5.0)):
            raise NsdashError(f"machine '{name}' stopped, but its supervisor did not exit",
                              f"see 'nsdash status {name}'")
        return reply


def poweroff(name: str, wait: bool = True, timeout: float = STOP_TIMEOUT) -> None:
    _stop(name, "poweroff", wait, timeout)


def terminate(name: str, wait: bool = True, timeout: float = 10.0) -> None:
    _stop(name, "terminate", wait, timeout)


def reboot(name: str, wait: bool = True, timeout: float = 30.0) -> dict[str, Any]:
    with connect(name) as c:
        before = c.request("status")["status"]["boot"]
    _stop(name, "reboot", wait, STOP_TIMEOUT)
    if not wait:
        return {}
    deadline = time.monotonic() + timeout
    with connect(name) as c:
        while time.monotonic() < deadline:
            s = c.request("status")["status"]
            if s["boot"] > before and s["state"] in st.UP_STATES:
                return dict(s)
            time.sleep(0.05)
    raise NsdashError(f"machine '{name}' did not come back within {timeout:.0f} s", f"see 'nsdash status {name}'")


def wait_up(name: str, timeout: float) -> dict[str, Any]:
    """Wait until NAME's guest is up (READY=1, or its init runs): start --wait, spawn --wait.
    If it is not up in time, an error with its last STATUS= line and the console's last
    lines; the machine is left running for inspection."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    try:
        with connect(name, notice=None) as c:
            while True:
                last = dict(c.request("status")["status"])
                if last.get("state") in st.UP_STATES:
                    return last
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.05)
    except (ProtocolError, MachineNotFound):
        raise NsdashError(f"machine '{name}' stopped before it was up{_tail(name, last)}",
                          f"run it in the foreground to watch it boot: nsdash spawn -bD {last.get('root', 'DIR')}") \
            from None
    state = last.get("state", "?")
    raise NsdashError(f"machine '{name}' is not up after {timeout:g} s (state: {state}){_tail(name, last)}",
                      f"it is left running for inspection: 'nsdash status {name}', 'nsdash login {name}'; "
                      f"stop it with 'nsdash poweroff {name}' or 'nsdash terminate {name}'")


def _tail(name: str, status: dict[str, Any], count: int = 10) -> str:
    """The guest's last STATUS= line and console lines, escaped, for an error message."""
    from nsdash.machines.consolelog import last_lines

    text = ""
    if status.get("status_text"):
        text += f"\n  last status: {escape(status['status_text'])}"
    lines = last_lines(st.machine_dir(name) / st.CONSOLE_LOG, count)
    if lines:
        text += "\n  console, last lines:\n" + "\n".join(f"    {escape(line)}" for line in lines)
    return text


def kill(name: str, signal: int, whom: str = "leader") -> None:
    with connect(name) as c:
        c.request("kill", signal=signal, whom=whom)


# ---------------------------------------------------------------- console


SEND_NOW_MAX = 1024  # bytes send_now() tries: well under the smallest socket buffer's half (2 KB)


class ConsoleSession:
    """An attached console: output frames in, keyboard bytes and window sizes out."""

    def __init__(self, control: Control) -> None:
        self.control = control
        self.sock = control.sock
        self.sock.settimeout(None)
        self.frames = proto.FrameReader()
        self._early = control.lines.pending()  # frames that came with the attach reply

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self, timeout: float | None = None) -> tuple[bytes, list[dict[str, Any]]] | None:
        """Console bytes and events received; None once the supervisor closed the connection.
        Each event gets `at`: where in those bytes it came (a `skipped` gap's place)."""
        if self._early:
            data, self._early = self._early, b""
        else:
            if not _readable(self.sock.fileno(), timeout):
                return b"", []
            data = self.sock.recv(65536)
            if not data:
                return None
        out, events = bytearray(), []
        for kind, payload in self.frames.feed(data):
            if kind == proto.FRAME_OUTPUT:
                out += payload
            elif kind == proto.FRAME_EVENT:
                events.append({**json.loads(payload), "at": len(out)})
        return bytes(out), events

    def send(self, data: bytes) -> None:
        for i in range(0, len(data), proto.MAX_FRAME):
            self.sock.sendall(proto.frame(proto.FRAME_INPUT, data[i:i + proto.MAX_FRAME]))

    def send_now(self, data: bytes) -> bool:
        """Send DATA (a key, a short paste) if the socket takes it at once, never waiting: the
        console pane's UI thread types this way when nothing waits ahead (no hand-off to its
        sender thread).  A unix stream socket queues a message this short whole or not at all."""
        if len(data) > SEND_NOW_MAX:
            return False
        wire = proto.frame(proto.FRAME_INPUT, data)
        try:
            sent = self.sock.send(wire, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return False
        if sent < len(wire):  # not for a message this short (one buffer: see above); were it, the rest follows
            self.sock.sendall(wire[sent:])
        return True

    def resize(self, rows: int, cols: int) -> None:
        self.sock.sendall(proto.winsize_frame(rows, cols))

    def close(self) -> None:
        self.control.close()

    def __enter__(self) -> ConsoleSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def attach(name: str, rows: int | None = None, cols: int | None = None,
           replay: int | None = None) -> ConsoleSession:
    c = connect(name)
    args: dict[str, Any] = {}
    if rows and cols:
        args.update(rows=rows, cols=cols)
    if replay is not None:
        args["replay"] = replay
    try:
        c.request("attach", **args)
    except BaseException:
        c.close()
        raise
    return ConsoleSession(c)


# ---------------------------------------------------------------- spawn / start


def spawn(spec: ContainerSpec, detach: bool = True, timeout: float = 120.0,
          notice: Notice | None = _stderr_notice) -> dict[str, Any]:
    """Start SPEC under a detached supervisor; returns once the machine runs."""
    require_root()
    if not detach:
        from nsdash.machines.supervisor import Supervisor

        return {"status": Supervisor(spec).run()}
    registry.validate_name(spec.machine)
    clean_if_orphan(spec.machine, notice)
    if st.supervisor_alive(st.machine_dir(spec.machine)):
        from nsdash.errors import MachineExists

        raise MachineExists(f"machine '{spec.machine}' is already running",
                            f"pick another name with -M, or stop it with 'nsdash poweroff {spec.machine}'")
    r, w = os.pipe2(os.O_CLOEXEC)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).resolve().parents[2]),
                                                     env.get("PYTHONPATH")) if p)
    received = bytearray()
    try:
        try:
            if _in_own_unit(spec):
                _start_service(spec, env, w)
            else:
                _fork_supervisor(spec, env, w)
        finally:
            os.close(w)
        try:
            _read_all(r, timeout, received)
        except NsdashError:
            _abandon_start(spec.machine, bytes(received))
            raise NsdashError(f"machine '{spec.machine}' did not start within {timeout:.0f} s "
                              "(its supervisor, processes and cgroups were removed)",
                              "the host may be overloaded; try again, or run it in the foreground "
                              "with NSDASH_DEBUG=1 to see where it stops") from None
    except KeyboardInterrupt:
        # ^C before the machine ran: the user gave up on the start, so it must not go on behind
        # the exit status 130.  The supervisor's first line names it (it may be on its way).
        with contextlib.suppress(NsdashError, OSError):
            if b'"supervisor"' not in received:
                _read_all(r, _NAMED_WITHIN, received, until=b'"supervisor"')
        _abandon_start(spec.machine, bytes(received))
        raise
    finally:
        os.close(r)
    # The supervisor first says who it is ({"supervisor": PID}), then how the start went.
    lines = [line for line in bytes(received).splitlines() if line.strip()]
    report = lines[-1] if lines and b'"supervisor"' not in lines[-1] else b""
    if not report:
        raise NsdashError(f"the supervisor for '{spec.machine}' exited before the machine ran",
                          "run it in the foreground (without --detach) to see why")
    result = json.loads(report)
    if not result.get("ok"):
        raise NsdashError(result.get("message", "the machine did not start"), result.get("hint"))
    if spec.wait:
        result["status"] = wait_up(spec.machine, spec.wait_timeout)
    return dict(result)


def _in_own_unit(spec: ContainerSpec) -> bool:
    """On a host booted with systemd the supervisor runs in a service of its own, so the
    machine outlives the caller's unit; --keep-unit keeps it in the caller's."""
    if spec.keep_unit or not os.path.isdir("/run/systemd/system"):
        return False
    from nsdash.machines import units

    return units.manages(spec)


def _supervise_argv(*extra: str) -> list[str]:
    return [sys.executable, "-m", "nsdash", "_supervise", *extra]


def _fork_supervisor(spec: ContainerSpec, env: dict[str, str], w: int) -> None:
    """The supervisor as a detached grandchild of ours (cli/supervise.py), in our cgroup."""
    proc = subprocess.Popen(_supervise_argv("--ready-fd", str(w)), stdin=subprocess.PIPE, pass_fds=(w,),
                            env=env, cwd="/", stdout=subprocess.DEVNULL)
    assert proc.stdin is not None
    proc.stdin.write(speccodec.dumps(spec).encode())
    proc.stdin.close()
    proc.wait()


def _start_service(spec: ContainerSpec, env: dict[str, str], w: int) -> None:
    """The supervisor as nsdash@NAME.service: the spec on its stdin (a sealed memfd), the
    start report on its stdout (our pipe), its stderr in the journal."""
    from nsdash.machines import units
    from nsdash.machines.supervisor import STOP_TIMEOUT

    fd = os.memfd_create("nsdash-spec", os.MFD_CLOEXEC)
    try:
        os.write(fd, speccodec.dumps(spec).encode())
        os.lseek(fd, 0, os.SEEK_SET)
        units.start_supervisor(spec.machine, _supervise_argv("--ready-fd", "1", "--in-unit"), env,
                               stdin_fd=fd, stdout_fd=w, stop_timeout=STOP_TIMEOUT + 15)
    finally:
        os.close(fd)


def _readable(fd: int, timeout: float | None) -> bool:
    """Wait until FD is readable (or at EOF/error); poll(), since select() refuses fds over 1023."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000 + 0.999))))


_NAMED_WITHIN = 10.0  # s a start interrupted by ^C waits for the supervisor to say who it is


def _read_all(fd: int, timeout: float, into: bytearray, until: bytes = b'"ok"') -> None:
    """Read FD into INTO until EOF or the supervisor's line with UNTIL (by default its final
    report, {"ok": ...}): a service's stdout stays open in systemd for as long as the unit is
    loaded, so EOF alone cannot end the wait.  NsdashError once TIMEOUT seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise NsdashError(f"the machine did not start within {timeout:.0f} s")
        if _readable(fd, left):
            data = os.read(fd, 65536)
            if not data:
                return
            into += data
            if data.endswith(b"\n") and until in into:
                return


def _abandon_start(machine: str, received: bytes) -> None:
    """A start that never finished: kill its supervisor and the machine's processes, then
    clean up as for an orphan (cgroups, mounts, state entry), so nothing is left behind."""
    import signal

    from nsdash.launcher.cgroup import MachineCgroup
    from nsdash.machines.orphans import clean_orphan

    ours = False
    for line in received.splitlines():
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            pid = int(json.loads(line).get("supervisor"))
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            ours = True
    if ours:  # (without its PID we cannot tell whose the name's cgroup is: leave it)
        # The machine's processes may hold the entry's lock (forked before they exec).
        with contextlib.suppress(OSError, NsdashError):
            MachineCgroup(machine).kill(signal.SIGKILL)
    directory = st.machine_dir(machine)
    deadline = time.monotonic() + 10
    while st.supervisor_alive(directory) and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(NsdashError, OSError):
        clean_orphan(machine)
    if ours:
        from nsdash.launcher.inuse import drop_dead_lock

        drop_dead_lock(machine)  # the killed supervisor held the name's start lock


def find_image(name: str, dirs: tuple[Path, ...] | None = None) -> Path:
    """The tree or disk image (NAME.raw) of image NAME (nsdash.machines.images finds it)."""
    from nsdash.machines import images

    registry.validate_name(name)  # `start NAME` names a machine: the message says so
    return images.find(name, dirs).path


def list_images(dirs: tuple[Path, ...] | None = None) -> list[Path]:
    """The directory images, the first of each name, by name."""
    from nsdash.machines import images

    return [i.path for i in images.discover(dirs) if i.type != "raw"]


def start_spec(name: str, dirs: tuple[Path, ...] | None = None, *,
               trusted_dirs: tuple[str, ...] | None = None, ephemeral: bool = False) -> ContainerSpec:
    """What `machinectl start NAME` runs, through the one spec builder: systemd-nspawn@.service's
    --boot --link-journal=try-guest with --settings=override, so NAME.nspawn is read (and wins)
    exactly as `nsdash spawn -M NAME` reads it.  EPHEMERAL (the dashboard's "boot -x") adds
    --ephemeral and leaves the name to spawn's rule: the image's name with a random suffix,
    so several copies of one image run at once."""
    from nsdash.launcher.options import spec_from

    path = find_image(name, dirs)
    where = f"--image={path}" if path.is_file() else f"--directory={path}"
    naming = ["--ephemeral"] if ephemeral else [f"--machine={name}"]
    return spec_from(["--boot", "--link-journal=try-guest", "--settings=override", *naming, where],
                     trusted_dirs=trusted_dirs)


def start(name: str, dirs: tuple[Path, ...] | None = None, wait: bool = False,
          wait_timeout: float = 90.0) -> dict[str, Any]:
    """machinectl start: boot image NAME detached, with its journal linked into the tree;
    with WAIT, return once the guest is up (wait_up)."""
    result = spawn(start_spec(name, dirs), detach=True)
    if wait:
        result["status"] = wait_up(name, wait_timeout)
    return result
