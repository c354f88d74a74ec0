"""Reach a running machine's own system bus from the host, with a deadline on every step.

The socket is looked up *inside* the machine's root (system/confined: as openat2
with RESOLVE_IN_ROOT resolves, without ctypes where it can): walking
/proc/LEADER/root/run/dbus/system_bus_socket directly would follow an absolute symlink planted by the machine against the host's root, and could
connect us, as root, to the host's own bus.  What the guest sends back is bounded
too: the blocking calls read at most BUS_REPLY_MAX bytes a call (machines/busguard.py),
dbus-fast's MessageBus gets its messages through a relay that lets none longer
through (inside/busrelay.py).  The O_PATH fd is then connected
through /proc/self/fd/N, which also keeps the address far below AF_UNIX's
108-byte limit whatever the PID.  The bus daemon inside authenticates EXTERNAL
by uid; without a user namespace, root on the host is root inside; with one
(-U), the connection is made from inside it (connect_as_machine_root).
"""

from __future__ import annotations

import errno
import posix
import sys
import time

from nsdash.errors import NsdashError, PrivilegeError
from nsdash.inside.target import Target
from nsdash.machines import identity
from nsdash.system import bareos, confined

TYPE_CHECKING = False  # typing costs `systemctl` 2 ms; the annotations are strings
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Sequence
    from typing import Any

    from dbus_fast import Message
    from dbus_fast.aio import MessageBus

    from nsdash.inside.busrelay import Relay
    from nsdash.machines.buscall import CallFailed, SupervisorBus
    from nsdash.machines.busguard import Guarded
    from nsdash.system import dbuswire

# asyncio and dbus-fast are imported only by connections that need them (blocking=False), the
# blocking client (dbuswire, with dbus-fast's marshalling) only by blocking connections made here,
# not through the supervisor: they cost a read-only command several times its own work.

BUS_SOCKET = "run/dbus/system_bus_socket"
_TIMEOUT = bareos.getenv("NSDASH_BUS_TIMEOUT")
DEFAULT_TIMEOUT = float("10" if _TIMEOUT is None else _TIMEOUT)


class BusUnreachable(NsdashError):
    """The machine has no bus we can reach (no systemd, no dbus, not booted yet)."""


class BusTimeout(NsdashError):
    """The machine's bus or its systemd did not answer in time."""


class BusRefused(NsdashError):
    """The machine's bus sent what no dbus sends (a message over the limit): the connection is ended."""


class MachineGone(NsdashError):
    """The machine powered off while we were talking to it."""


def plain(value: Any) -> Any:
    """A property's value: dbus-fast's Variant unwrapped (the blocking client returns it bare)."""
    fast = sys.modules.get("dbus_fast")
    return value.value if fast is not None and isinstance(value, fast.Variant) else value


class BusCallError(NsdashError):
    """A D-Bus error reply, e.g. org.freedesktop.systemd1.NoSuchUnit."""

    def __init__(self, name: str, text: str, hint: str | None = None) -> None:
        super().__init__(text, hint)
        self.name = name


def _diagnose_missing_bus(target: Target) -> BusUnreachable:
    """Say why the socket is missing: no systemd at all, or systemd without a bus (yet)."""
    if confined.is_dir(target.root_dir, "/run/systemd/system"):
        return BusUnreachable(
            f"machine '{target.name}' runs systemd but has no system bus at /{BUS_SOCKET}",
            "install dbus in the machine's tree, or wait until its boot has started dbus.service")
    return BusUnreachable(
        f"machine '{target.name}' does not run systemd (no /run/systemd/system inside)",
        "units can only be managed in machines booted with systemd (nsdash spawn -b)")


def open_bus_socket(target: Target) -> int:
    """An O_PATH fd on the machine's bus socket, resolved within the machine's root."""
    try:
        rootfd = posix.open(target.root_dir, posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)
    except PermissionError as e:
        raise PrivilegeError(f"reaching machine '{target.name}' needs root", "run it with sudo") from e
    except OSError as e:
        raise MachineGone(f"machine '{target.name}' is not running (its init {target.leader} is gone)",
                          "see 'nsdash list'") from e
    try:
        return confined.open_path_in_root(rootfd, BUS_SOCKET)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            raise _diagnose_missing_bus(target) from e
        raise BusUnreachable(f"cannot open the bus socket of machine '{target.name}': {e.strerror}",
                             "check that the machine is running and booted") from e
    finally:
        posix.close(rootfd)


def own_user_namespace(target: Target) -> bool:
    """True when the machine runs in a user namespace of its own (-U): host root is nobody there."""
    return identity.shares_host_namespace(target.leader, "user", target.proc) is False


def connect_as_machine_root(target: Target, path_fd: int, timeout: float) -> socket.socket:
    """A connection to the socket at PATH_FD made from inside the machine's user namespace, as its root.

    The bus daemon authenticates EXTERNAL by the peer credentials the kernel recorded at
    connect(); from the host they would read "nobody".  A forked child (single-threaded, as
    setns(CLONE_NEWUSER) requires) enters the namespace, becomes its root, connects and hands
    the connected socket back over a socketpair.
    """
    import socket

    from nsdash.system import syscalls  # ctypes (before the fork): only for a machine with -U

    userns = posix.open(f"{target.proc}/{target.leader}/ns/user", posix.O_RDONLY | posix.O_CLOEXEC)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        pid = posix.fork()
        if pid == 0:  # the child: system calls only, then _exit
            status = 1
            try:
                syscalls.setns(userns, syscalls.CLONE_NEWUSER)
                posix.setresgid(0, 0, 0)
                posix.setresuid(0, 0, 0)
                conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                conn.connect(f"/proc/self/fd/{path_fd}")
                socket.send_fds(theirs, [b"k"], [conn.fileno()])
                status = 0
            finally:
                posix._exit(status)
        theirs.close()
        ours.settimeout(timeout)
        try:
            _, fds, _, _ = socket.recv_fds(ours, 1, 1)
        except TimeoutError:
            posix.kill(pid, 9)
            raise
        finally:
            posix.waitpid(pid, 0)
        if not fds:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "could not connect from the machine's user namespace")
        return _preconnected(fds[0])
    finally:
        posix.close(userns)
        ours.close()
        theirs.close()


def _preconnected(fd: int) -> socket.socket:
    """A socket on FD, connected elsewhere (connect_as_machine_root): dbus-fast's connect() is a
    no-op on it.  (A class made here: socket.py is not imported by connections that need none.)"""
    import socket

    class _Preconnected(socket.socket):
        def connect(self, address: Any) -> None:
            return None

    return _Preconnected(socket.AF_UNIX, socket.SOCK_STREAM, fileno=fd)


def _preconnected_bus(sock: socket.socket, **kw: Any) -> MessageBus:
    """dbus-fast's bus over a socket we connected ourselves.

    dbus-fast 5 has no public way to give MessageBus a connected socket or descriptor (its
    addresses are unix paths, abstract names and tcp); connect() asks the private
    _create_socket_for_transport for its socket, and this subclass answers with ours.  So
    pyproject pins dbus-fast below 6, tests/unit/test_busrelay.py checks that connect() still
    asks it, and without the hook we refuse here rather than connect around the relay."""
    from dbus_fast.aio import MessageBus

    if not callable(getattr(MessageBus, "_create_socket_for_transport", None)):
        raise NsdashError("this dbus-fast cannot be given a connected socket (no _create_socket_for_transport)",
                          "install dbus-fast 5 (pip install 'dbus-fast>=5,<6'), as pyproject.toml asks")

    # dbus-fast logs what a guest's garbage does to it ("Unexpected error processing message",
    # a traceback) through logging's last resort: onto the CLI's stderr, or under the dashboard's
    # screen.  nsdash says what went wrong itself, once (loss(), the relay's error).
    import logging

    quiet = logging.getLogger("dbus_fast")
    if not quiet.handlers:
        quiet.addHandler(logging.NullHandler())
        quiet.propagate = False

    class _PreconnectedBus(MessageBus):
        def _create_socket_for_transport(  # type: ignore[override]  # an instance method: it needs our socket
                self, transport: str, options: dict[str, str]) -> Any:
            return sock, sock.makefile("rwb"), options.get("path", "")

    return _PreconnectedBus(bus_address="unix:path=/nsdash-preconnected", **kw)


class MachineBus:
    """An open connection to one machine's system bus; use as `async with MachineBus(target)`.

    BLOCKING: method calls only, over nsdash.system.dbuswire, without asyncio
    or dbus-fast's bus; no signals.  Its coroutines never suspend, so a command can
    drive them without an event loop (units.run_blocking).  VIA_SUPERVISOR (with
    BLOCKING): the calls are made by the machine's supervisor (`bus-call`,
    machines/buscall.py), so this process imports no D-Bus code at all; where the
    machine has no supervisor that makes them, the calls are made here as without it.
    """

    def __init__(self, target: Target, timeout: float = DEFAULT_TIMEOUT, blocking: bool = False,
                 via_supervisor: bool = False, preload: tuple[str, ...] = ()) -> None:
        """PRELOAD: modules the caller will import, imported while the supervisor answers
        (SupervisorBus.meanwhile); where the calls are made here, they are imported as needed."""
        self.target = target
        self.preload = preload
        self.timeout = timeout
        self.blocking = blocking
        self.via_supervisor = via_supervisor and blocking
        self._bus: MessageBus | None = None
        self._wire: dbuswire.Connection | None = None
        self._proxy: SupervisorBus | None = None
        self._relay: Relay | None = None
        self._guard: Guarded | None = None

    async def __aenter__(self) -> MachineBus:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def connect(self) -> None:
        if self.via_supervisor:
            from nsdash.machines.buscall import SupervisorBus

            self._proxy = SupervisorBus.open(self.target.name, self.timeout, self.preload)
            if self._proxy is not None:
                return
        fd = open_bus_socket(self.target)
        try:
            if self.blocking:
                self._connect_blocking(fd)
                return
            bus = _preconnected_bus(self._relayed(self._connect_guest(fd)), auth_timeout=self.timeout)
            self._bus = await self._deadline(bus.connect(), "connecting to its bus")
        except ConnectionRefusedError as e:
            raise self._refused() from e
        except OSError as e:
            raise await self.loss(e) from e
        finally:
            posix.close(fd)

    def _connect_guest(self, fd: int) -> socket.socket:
        """A socket connected to the bus socket at FD (from inside the machine's user namespace
        when it has one of its own)."""
        import socket

        if own_user_namespace(self.target):
            return connect_as_machine_root(self.target, fd, self.timeout)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(self.timeout)  # a listener that never accepts: its backlog fills, connect waits
        try:
            sock.connect(f"/proc/self/fd/{fd}")
        except TimeoutError as e:
            sock.close()
            raise self._timed_out(self.timeout, "connecting to its bus", e) from e
        except BaseException:
            sock.close()
            raise
        return sock

    def _relayed(self, guest: socket.socket) -> socket.socket:
        """The MessageBus's end of a socketpair whose other end a Relay joins to GUEST: dbus-fast
        reads a message of any size whole (up to 128 MiB), the relay lets none over BUS_REPLY_MAX
        through (the supervisor's bus-calls read no more than that for one call either)."""
        import socket

        from nsdash.inside.busrelay import Relay
        from nsdash.machines.busguard import BUS_REPLY_MAX

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self._relay = Relay(guest, theirs, BUS_REPLY_MAX)
        self._relay.start()
        return _preconnected(ours.detach())

    def _refused_by_relay(self) -> NsdashError | None:
        """Why the relay ended the connection (the guest sent a message over the limit), if it did."""
        if self._relay is None or self._relay.error is None:
            return None
        return self._bus_refused(self._relay.error)

    def _too_large(self) -> BusRefused:
        from nsdash.inside.busrelay import amount
        from nsdash.machines.busguard import BUS_REPLY_MAX

        return self._bus_refused(f"sent more than {amount(BUS_REPLY_MAX)} for one call")

    def _bus_refused(self, what: str) -> BusRefused:
        return BusRefused(f"the bus of machine '{self.target.name}' {what}",
                          "something other than dbus answers at /run/dbus/system_bus_socket inside the "
                          f"machine; see 'nsdash journal -M {self.target.name} -u dbus.service'")

    def _refused(self) -> BusUnreachable:
        return BusUnreachable(f"the bus of machine '{self.target.name}' refuses connections",
                              "its dbus.service may have stopped; see 'nsdash journal -M "
                              f"{self.target.name} -u dbus.service'")

    def _connect_blocking(self, fd: int) -> None:
        import socket

        from nsdash.machines.busguard import BUS_REPLY_MAX, Guarded, ReplyTooLarge
        from nsdash.system import dbuswire

        try:
            if own_user_namespace(self.target):
                sock = connect_as_machine_root(self.target, fd, self.timeout)
            else:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
                sock.settimeout(self.timeout)
                sock.connect(f"/proc/self/fd/{fd}")
            # As the supervisor's bus-calls read it: one deadline per call and at most
            # BUS_REPLY_MAX of the guest's bytes for it (dbuswire would read 128 MiB).
            self._guard = Guarded(sock)
            self._guard.arm(time.monotonic() + self.timeout, BUS_REPLY_MAX)
            self._wire = dbuswire.Connection(self._guard, self.timeout)
        except ConnectionRefusedError as e:
            raise self._refused() from e
        except ReplyTooLarge as e:
            raise self._too_large() from e
        except TimeoutError as e:
            raise self._timed_out(self.timeout, "connecting to its bus", e) from e
        except (OSError, EOFError, dbuswire.WireError) as e:
            raise self._lost_blocking(e) from e

    def close(self) -> None:
        if self._proxy is not None:
            self._proxy.close()
            self._proxy = None
        if self._wire is not None:
            self._wire.close()
            self._wire = self._guard = None
        if self._bus is not None:
            self._bus.disconnect()
            self._bus = None
        if self._relay is not None:
            self._relay.close()

    @property
    def bus(self) -> MessageBus:
        if self._bus is None:
            raise RuntimeError("MachineBus used before connect()")
        return self._bus

    async def call(self, destination: str, path: str, interface: str, member: str,
                   signature: str = "", body: Sequence[Any] = (), timeout: float | None = None) -> list[Any]:
        """Call a method; returns the reply's body, raises BusCallError on an error reply."""
        if self._proxy is not None:
            return self._call_proxy(self._proxy, destination, path, interface, member, signature, body, timeout)
        if self.blocking:
            return self._call_blocking(destination, path, interface, member, signature, body, timeout)
        from dbus_fast import Message, MessageType

        msg = Message(destination=destination, path=path, interface=interface, member=member,
                      signature=signature, body=list(body))
        reply = await self._deadline(self.bus.call(msg), f"{interface.rsplit('.', 1)[-1]}.{member}", timeout)
        if reply.message_type == MessageType.ERROR:
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else reply.error_name
            raise _call_error(reply.error_name or "unknown", str(text))
        return list(reply.body)

    def _call_proxy(self, proxy: SupervisorBus, destination: str, path: str, interface: str, member: str,
                    signature: str, body: Sequence[Any], timeout: float | None) -> list[Any]:
        from nsdash.machines.buscall import CallFailed
        from nsdash.machines.protocol import BUS_TIMEOUT_MAX

        limit = min(self.timeout if timeout is None else timeout, BUS_TIMEOUT_MAX)
        what = f"{interface.rsplit('.', 1)[-1]}.{member}"
        try:
            return proxy.call(destination, path, interface, member, signature, list(body), limit)
        except CallFailed as e:
            raise self._proxy_error(e, limit, what) from None
        except TimeoutError as e:
            raise self._timed_out(limit, what, e) from e
        except (OSError, EOFError, ValueError) as e:
            raise self._lost_blocking(e) from e

    def _proxy_error(self, e: CallFailed, limit: float, what: str) -> NsdashError:
        """The supervisor's error answer as the error the direct path would raise."""
        if e.code == "bus-error":
            return _call_error(e.name or "unknown", e.message)
        if e.code == "bus-timeout":
            return self._timed_out(limit, what, e)
        if e.code == "bus-unreachable" and e.message == "no-socket":
            return _diagnose_missing_bus(self.target)
        if e.code == "bus-unreachable" and e.message == "refused":
            return self._refused()
        if e.code in ("bus-unreachable", "not-running"):
            return self._lost_blocking(e)
        return NsdashError(f"machine '{self.target.name}' could not answer {what}: {e.message}",
                           "retry; if it persists, see 'nsdash status " + self.target.name + "'")

    def _call_blocking(self, destination: str, path: str, interface: str, member: str,
                       signature: str, body: Sequence[Any], timeout: float | None) -> list[Any]:
        from nsdash.system import dbuswire

        if self._wire is None:
            raise RuntimeError("MachineBus used before connect()")
        from nsdash.machines.busguard import BUS_REPLY_MAX, ReplyTooLarge

        limit = self.timeout if timeout is None else timeout
        if self._guard is not None:
            self._guard.arm(time.monotonic() + limit, BUS_REPLY_MAX)
        try:
            return self._wire.call(destination, path, interface, member, signature, list(body))
        except dbuswire.WireError as e:
            raise _call_error(e.name, e.name if e.text is None else e.text) from None
        except ReplyTooLarge as e:
            raise self._too_large() from e
        except TimeoutError as e:
            raise self._timed_out(limit, f"{interface.rsplit('.', 1)[-1]}.{member}", e) from e
        except (OSError, EOFError) as e:
            raise self._lost_blocking(e) from e

    def _timed_out(self, timeout: float, what: str, cause: BaseException) -> NsdashError:
        if not self.target.alive():
            return self._lost_blocking(cause) if self.blocking else MachineGone(
                f"machine '{self.target.name}' powered off during the call",
                "start it again with 'nsdash start' or 'nsdash spawn -b'")
        return BusTimeout(f"machine '{self.target.name}' did not answer within {timeout:g}s "
                          f"({what})", "it may be overloaded or stuck booting; retry, or raise "
                          "NSDASH_BUS_TIMEOUT")

    def _lost_blocking(self, cause: BaseException, grace: float = 2.0) -> NsdashError:
        """loss() for blocking connections: the same verdict, waited for with sleeps."""
        deadline = time.monotonic() + grace
        while self.target.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self._verdict(cause)

    async def wait_closed(self) -> None:
        """Return (or raise the connection's error) once the bus connection is gone."""
        import asyncio

        # shield: cancelling a waiter must not cancel dbus-fast's own disconnect future
        await asyncio.shield(self.bus.wait_for_disconnect())

    def on_signal(self, handler: Callable[[Message], None]) -> Callable[[], None]:
        """Route every incoming message to HANDLER (it filters); returns a function that removes it."""
        from dbus_fast import MessageType

        def _wrapped(msg: Message) -> None:
            if msg.message_type == MessageType.SIGNAL:
                handler(msg)

        self.bus.add_message_handler(_wrapped)
        return lambda: self.bus.remove_message_handler(_wrapped)

    async def add_match(self, rule: str) -> None:
        await self.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                        "AddMatch", "s", [rule])

    async def _deadline(self, awaitable: Any, what: str, timeout: float | None = None) -> Any:
        import asyncio

        timeout = self.timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(awaitable, timeout)
        except TimeoutError as e:
            if not self.target.alive():
                raise await self.loss(e) from e
            raise self._timed_out(timeout, what, e) from e
        except (BusCallError, NsdashError):
            raise
        except Exception as e:  # dbus-fast fails pending calls with the disconnect's error
            raise await self.loss(e) from e

    async def loss(self, cause: BaseException, grace: float = 2.0) -> NsdashError:
        """Why the connection broke: the machine went away (given GRACE to finish dying), or just its bus."""
        if self.blocking:
            return self._lost_blocking(cause, grace)
        refused = self._refused_by_relay()
        if refused is not None:
            return refused
        import asyncio

        deadline = asyncio.get_running_loop().time() + grace
        while self.target.alive() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        return self._verdict(cause)

    def _verdict(self, cause: BaseException) -> NsdashError:
        if not self.target.alive():
            return MachineGone(f"machine '{self.target.name}' powered off during the call",
                               "start it again with 'nsdash start' or 'nsdash spawn -b'")
        return BusUnreachable(f"lost the bus of machine '{self.target.name}' ({str(cause) or type(cause).__name__})",
                              "its dbus.service may have stopped or restarted; retry")


def _call_error(name: str, text: str) -> BusCallError:
    hint = None
    if name in ("org.freedesktop.DBus.Error.AccessDenied",
                "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"):
        hint = ("the machine's D-Bus policy or polkit refused host root; check its "
                "/etc/dbus-1 and polkit rules")
    return BusCallError(name, text, hint)
