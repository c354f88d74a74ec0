"""A guest that puts its own "bus" at /run/dbus/system_bus_socket: what reaches the host.

Root inside a machine owns that path.  A BusyBox machine (a private copy of the
demo tree) gets a scripted bus planted there: it authenticates and answers
Hello as a bus does, then answers each call as the test says, with real D-Bus
messages of the wrong shape, with a promise of a huge message, with file
descriptors attached, or after signals and replies to other calls.  The host's
side is the supervisor (its bus-calls for `nsdash systemctl -M`, its health
check) and the CLI that prints what came back: each answers in one line, reads
a bounded number of the guest's bytes, and keeps no descriptor the guest sent.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable

from _planted_bus import RawBus, guest_bus_path
from conftest import run_nsdash
from dbus_fast._private.unmarshaller import Unmarshaller
from dbus_fast.constants import MessageType
from dbus_fast.message import Message
from dbus_fast.signature import Variant

from nsdash.machines import client
from nsdash.machines import state as st


def _return(call: Message, signature: str, body: list, serial: int = 900, reply_serial: int | None = None) -> bytes:
    msg = Message(message_type=MessageType.METHOD_RETURN, serial=serial, signature=signature, body=body,
                  reply_serial=call.serial if reply_serial is None else reply_serial)
    return bytes(msg._marshall(False))


class ScriptedBus(RawBus):
    """A bus at PATH (inside the machine): each call after Hello gets ANSWER(call) -> [(bytes, fds)]."""

    def __init__(self, path: str) -> None:
        self.answer: Callable[[Message], list] = lambda call: []
        super().__init__(path, lambda conn, bus: self._scripted(conn))

    def _scripted(self, conn: socket.socket) -> None:
        line = b""
        while line != b"BEGIN\r\n":  # a byte at a time: what follows BEGIN is the message stream
            line = b"" if line.endswith(b"\r\n") else line
            byte = conn.recv(1)
            if not byte:
                return
            line += byte
            if line.endswith(b"\r\n") and b"AUTH" in line:
                conn.sendall(b"OK 0123456789abcdef0123456789abcdef\r\n")
        reader = Unmarshaller(None, conn, False)
        while True:
            call = reader.unmarshall()
            if call is None:
                continue
            out = ([(_return(call, "s", [":1.7"], serial=1), [])] if call.member == "Hello"
                   else self.answer(call))
            for data, fds in out:
                if fds:
                    socket.send_fds(conn, [data[:1]], fds)
                    data = data[1:]
                self.send(conn, data)


def _plant(leader: int) -> ScriptedBus:
    return ScriptedBus(guest_bus_path(leader))


def _systemctl(name: str, *args: str) -> subprocess.CompletedProcess:
    return run_nsdash("systemctl", "-M", name, *args, "--timeout", "10", timeout=60)


def _one_line(r: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("nsdash: "), r.stderr
    return r.stderr


def test_replies_of_another_shape_than_systemds_end_in_one_line(detached, busybox_tree, machine_name):
    """ListUnits answered with a(s), GetAll with a list or with an int as Documentation, ListJobs
    with a(s), GetUnit with a number: tracebacks (IndexError, AttributeError, TypeError) before."""
    detached("-bD", str(busybox_tree))
    bus = _plant(client.status(machine_name)["leader"])
    try:
        bus.answer = lambda call: [(_return(call, "a(s)", [[["x.service"]]]), [])]
        for verb in (["list-units"], ["list-jobs"]):
            r = _systemctl(machine_name, *verb)
            assert r.returncode == 1 and "with a reply systemd does not send" in _one_line(r)

        bus.answer = lambda call: [(_return(call, "as", [["x"]]), [])]
        for verb in (["status", "x.service"], ["show", "x.service"]):
            r = _systemctl(machine_name, *verb)
            assert r.returncode == 1 and "answered GetAll with a reply" in _one_line(r)

        bus.answer = lambda call: [(_return(call, "u", [7]), [])]
        r = _systemctl(machine_name, "is-active", "x.service")
        assert r.returncode == 1 and "answered GetUnit with a reply" in _one_line(r)

        props = {"Id": Variant("s", "x.service"), "Description": Variant("u", 5),
                 "Documentation": Variant("u", 3), "TriggeredBy": Variant("s", "y"),
                 "LoadError": Variant("(su)", ["e", 1])}
        bus.answer = lambda call: [(_return(call, "a{sv}", [props]), [])]
        r = _systemctl(machine_name, "status", "x.service")
        assert "Traceback" not in r.stderr, r.stderr
        assert r.returncode == 3 and r.stdout.startswith("○ x.service - x.service\n"), r.stdout
    finally:
        bus.close()


def test_the_health_check_reads_a_bounded_part_of_a_huge_answer(detached, busybox_tree, machine_name):
    """The supervisor's health check (machines/health.py) read all of a reply promised at 16 MiB
    (128 MiB is dbus-fast's limit: 3.6 GB of memory and 36 s past its 5 s timeout)."""
    from nsdash.machines.health import system_state

    detached("-bD", str(busybox_tree))
    leader = client.status(machine_name)["leader"]
    bus = _plant(leader)
    try:
        bus.answer = lambda call: [(_return(call, "v", [Variant("s", "degraded")]), [])]
        assert system_state(leader, 10.0) == "degraded"  # the same path answers a bus that behaves

        def huge(call: Message) -> list:
            head = bytearray(_return(call, "ay", [b""]))
            struct.pack_into("<I", head, 4, 16 << 20)  # the body's length: 16 MiB, sent in 64 KiB pieces
            return [(bytes(head[:-4]) + struct.pack("<I", (16 << 20) - 4), [])] + [(bytes(65536), [])] * 256

        bus.answer = huge
        assert system_state(leader, 10.0) is None
        assert bus.sent < 2 << 20, f"the host read {bus.sent} bytes of the guest's answer"
    finally:
        bus.close()


def _fds(pid: int) -> set[str]:
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            found.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return found


def test_descriptors_signals_and_stray_replies_from_the_guest_are_dropped(detached, busybox_tree, machine_name):
    """A reply with descriptors attached (SCM_RIGHTS) before it, signals and replies to other
    serials: the bus-call answers with the reply that is its own, and the supervisor keeps no
    descriptor the guest sent (the connection does not negotiate Unix fds: the kernel drops them)."""
    detached("-bD", str(busybox_tree))
    leader = client.status(machine_name)["leader"]
    supervisor = st.read_state(st.machine_dir(machine_name)).supervisor
    bus = _plant(leader)
    secret = tempfile.NamedTemporaryFile(prefix="review17-guest-fd-")  # noqa: SIM115
    try:
        def noisy(call: Message) -> list:
            signal = Message(message_type=MessageType.SIGNAL, serial=5, path="/x", interface="x.y",
                             member="Z", signature="s", body=["\x1b]0;title\x07"])
            out = [(bytes(signal._marshall(False)), [secret.fileno()])] * 20
            if call.member == "GetUnit":
                sig, body = "o", ["/org/freedesktop/systemd1/unit/x_2eservice"]
            else:
                sig, body = "v", [Variant("s", "active")]
            out.append((_return(call, sig, body, reply_serial=call.serial + 100), []))  # another call's
            out.append((_return(call, sig, body), [secret.fileno()]))
            return out

        bus.answer = noisy
        before = _fds(supervisor)
        r = _systemctl(machine_name, "is-active", "x.service")  # GetUnit, then Get: both answered as above
        assert "Traceback" not in r.stderr
        assert r.stdout == "active\n", r.stdout + r.stderr
        after = _fds(supervisor)
        assert not any(secret.name in target for target in after), after
        # The command's own control connection may still be open for a moment after it exits
        # (the supervisor closes it when it reads the end): wait for that, bounded.
        deadline = time.monotonic() + 5
        while len(after) > len(before) + 1 and time.monotonic() < deadline:
            time.sleep(0.02)
            after = _fds(supervisor)
        assert not any(secret.name in target for target in after), after
        assert len(after) <= len(before) + 1, (before, after)  # (+1: the kept connection to the guest's bus)
    finally:
        secret.close()
        bus.close()


def test_a_planted_path_never_leads_the_supervisor_to_a_host_socket(detached, busybox_tree, machine_name):
    """Symlinks out of the tree (absolute, `..`, /proc magic links), a FIFO, a directory, a device
    and a loop at the bus's path: each bus-call answers bus-unreachable at once, and a socket that
    listens at the host's own path of each target is never connected to."""
    from nsdash.machines.buscall import CallFailed, SupervisorBus

    detached("-bD", str(busybox_tree))
    leader = client.status(machine_name)["leader"]
    path = f"/proc/{leader}/root/run/dbus/system_bus_socket"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    host = f"/run/{machine_name}-hostbus"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(host)
    listener.listen(4)
    listener.setblocking(False)
    plants = {"absolute": lambda: os.symlink(host, path),
              "dotdot": lambda: os.symlink("../../../../../.." + host, path),
              "magic": lambda: os.symlink(f"/proc/{os.getpid()}/root{host}", path),
              "self": lambda: os.symlink(f"../../proc/self/root{host}", path),
              "fifo": lambda: os.mkfifo(path), "device": lambda: os.symlink("/dev/zero", path),
              "loop": lambda: os.symlink("system_bus_socket", path)}
    bus = SupervisorBus.open(machine_name, 10)
    assert bus is not None
    try:
        for kind, plant in plants.items():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            plant()
            try:
                bus.call("org.freedesktop.systemd1", "/", "org.freedesktop.DBus.Peer", "Ping", "", [], 10)
                raise AssertionError(f"{kind}: a call answered")
            except CallFailed as e:
                assert e.code == "bus-unreachable", (kind, e)
            try:
                listener.accept()
                raise AssertionError(f"{kind}: the host's socket was connected to")
            except BlockingIOError:
                pass
    finally:
        bus.close()
        listener.close()
        os.unlink(host)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def test_a_job_verb_reads_no_message_over_the_limit_from_the_guest(detached, busybox_tree, machine_name, tmp_path):
    """`systemctl -M M start` speaks to the guest's bus itself (dbus-fast's MessageBus, for JobRemoved):
    a StartUnit answered with a 32 MiB message was read whole (dbus-fast takes up to 128 MiB): 288 MB
    of RSS for this a(i), 1.18 GB for review17's.  Through inside/busrelay.py the message ends the
    connection at its header: one line, non-zero, the command's peak RSS far below the message, the
    machine runs on.  `enable` (blocking calls) reads at most 1 MiB for its call."""
    from conftest import NSDASH, REPO

    detached("-bD", str(busybox_tree))
    bus = _plant(client.status(machine_name)["leader"])
    size = 32 << 20

    def answer(call: Message) -> list:
        if call.member not in ("StartUnit", "EnableUnitFiles"):  # Subscribe, AddMatch: as systemd, dbus do
            return [(_return(call, "", []), [])]
        # a(i) of zeros, as the unmarshaller costs most: a list per 8 bytes (4 of them padding)
        head = bytearray(_return(call, "a(i)", [[]]))
        rest = size - 12  # the array's bytes: 8 per element, but the last one's padding
        struct.pack_into("<I", head, 4, rest + 8)  # the body: the array's length, padding, the array
        array = struct.pack("<I", rest) + bytes(4)
        return [(bytes(head[:-8]) + array, [])] + [(bytes(65536), [])] * (rest // 65536) + [(bytes(rest % 65536), [])]

    bus.answer = answer
    peak = tmp_path / "maxrss"
    try:
        r = subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", "-o", str(peak), *NSDASH, "systemctl", "-M", machine_name,
                            "start", "x.service", "--timeout", "10"],
                           capture_output=True, text=True, timeout=60, cwd=REPO)
        assert r.returncode == 1 and _one_line(r).startswith(
            f"nsdash: the bus of machine '{machine_name}' sent a message over 1 MiB"), r.stderr
        kib = int(peak.read_text().split()[-1])
        assert kib < 100 * 1024, f"systemctl start peaked at {kib} KiB (288 MB before, 25 MB here)"
        assert bus.sent < 8 << 20, f"the host read {bus.sent} bytes of the guest's answer"
        assert client.status(machine_name)["state"] in st.UP_STATES

        # `enable` (no --now) calls without the MessageBus: at most 1 MiB read for the call
        sent = bus.sent
        r = _systemctl(machine_name, "enable", "x.service")
        assert r.returncode == 1 and _one_line(r).startswith(
            f"nsdash: the bus of machine '{machine_name}' sent more than 1 MiB for one call"), r.stderr
        assert bus.sent - sent < 8 << 20, f"the host read {bus.sent - sent} bytes of the guest's answer"
    finally:
        bus.close()


def test_a_job_path_of_5000_digits_ends_a_job_verb_in_one_line(detached, busybox_tree, machine_name):
    """StartUnit answered with a job path whose last element is 5,000 digits (an object path may
    be): int() of it raised ValueError past Python's 4,300 digits, a traceback out of `systemctl
    -M M start` (and the units screen's action).  The job's number is its path's when it is a
    uint32, as systemd's are, else 0."""
    detached("-bD", str(busybox_tree))
    bus = _plant(client.status(machine_name)["leader"])
    job = "/org/freedesktop/systemd1/job/" + "9" * 5000

    def answer(call: Message) -> list:
        if call.member == "StartUnit":
            return [(_return(call, "o", [job]), [])]
        return [(_return(call, "", []), [])]  # Subscribe, AddMatch: as systemd, dbus do

    bus.answer = answer
    try:
        r = run_nsdash("systemctl", "-M", machine_name, "start", "x.service", "--no-block", "-o", "json", timeout=60)
        assert "Traceback" not in r.stderr, r.stderr[-1500:]
        assert r.returncode == 0 and '"job": 0' in r.stdout, r.stderr  # no number systemd would give
        assert client.status(machine_name)["state"] in st.UP_STATES
    finally:
        bus.close()
