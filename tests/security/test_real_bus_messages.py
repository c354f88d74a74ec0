"""No false refusal: every message a real guest's bus sends passes dbuscheck (review20).

dbuscheck refuses what dbus-fast would read elsewhere than checked (arrays that
end inside an element, header fields of another type than their code's); a
refusal of what a real bus sends would break real guests.  So bookworm's,
trixie's and sid's dbus-daemon and systemd are asked what nsdash asks (Hello,
ListUnits, ListUnitFiles, GetAll on the manager and on units, Introspect, the
jobs of a start and a stop) while signals are subscribed (a daemon-reload's
Reloading, UnitNew/UnitRemoved, JobNew/JobRemoved, PropertiesChanged), and
every message that comes back, captured raw from the socket, is checked: all
pass, and dbus-fast reads each.
"""

from __future__ import annotations

import io
import os
import select
import socket
import time

import pytest
from conftest import cached_tree, run_nsdash, wait_for

from nsdash.inside.target import resolve
from nsdash.system import dbuscheck, dbuswire  # noqa: F401 - dbuswire loads dbus-fast's parts

SYSTEMD = "org.freedesktop.systemd1"
MANAGER = "/org/freedesktop/systemd1"
PROPS = "org.freedesktop.DBus.Properties"


class _Capture:
    """A raw connection to a guest's bus: calls sent by dbus-fast's marshaller, every byte kept."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.sock.sendall(b"\0AUTH EXTERNAL " + str(os.geteuid()).encode().hex().encode() + b"\r\n")
        line = b""
        while not line.endswith(b"\r\n"):
            line += self.sock.recv(1)
        assert line.startswith(b"OK "), line
        self.sock.sendall(b"BEGIN\r\n")
        self.data = bytearray()
        self.serial = 0
        self.messages: list[bytes] = []
        self.answered: set[int] = set()

    def call(self, destination: str, path: str, interface: str, member: str, signature: str = "",
             body: list[object] | None = None) -> None:
        from dbus_fast.message import Message

        self.serial += 1
        self.sock.sendall(bytes(Message(destination=destination, path=path, interface=interface, member=member,
                                        signature=signature, body=body or [], serial=self.serial)._marshall(False)))

    def drain(self, quiet: float = 0.5, most: float = 30.0) -> None:
        """Read until every call so far was answered and then nothing came for QUIET seconds (the
        signals they caused), at most MOST seconds; split what came into messages."""
        from dbus_fast._private.unmarshaller import Unmarshaller

        deadline = time.monotonic() + most
        while time.monotonic() < deadline:
            waiting = set(range(1, self.serial + 1)) - self.answered
            if not select.select([self.sock], [], [], 1.0 if waiting else quiet)[0]:
                if waiting:
                    continue
                break
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                break
            self.data += chunk
            while len(self.data) >= dbuscheck.HEADER and len(self.data) >= (n := dbuscheck.size(bytes(self.data[:16]))):
                message = bytes(self.data[:n])
                del self.data[:n]
                self.messages.append(message)
                read = Unmarshaller(io.BytesIO(message), None, False).unmarshall()  # dbus-fast reads each
                assert read is not None
                if read.reply_serial:
                    self.answered.add(read.reply_serial)
        assert not set(range(1, self.serial + 1)) - self.answered, "calls left unanswered"


@pytest.mark.parametrize("tree", ["debian", "trixie", "sid"])
def test_every_message_a_real_guests_bus_sends_passes(tree: str, machine_name: str) -> None:
    r = run_nsdash("spawn", "--detach", "-x", "-bD", str(cached_tree(tree)), "-M", machine_name, timeout=120)
    assert r.returncode == 0, r.stderr
    try:
        target = wait_for(lambda: _booted(machine_name), timeout=120, what=f"{tree} to boot")
        bus = _Capture(f"/proc/{target.leader}/root/run/dbus/system_bus_socket")
        try:
            bus.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "Hello")
            bus.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "AddMatch", "s",
                     ["type='signal'"])
            bus.call(SYSTEMD, MANAGER, f"{SYSTEMD}.Manager", "Subscribe")
            bus.call(SYSTEMD, MANAGER, f"{SYSTEMD}.Manager", "ListUnits")
            bus.call(SYSTEMD, MANAGER, f"{SYSTEMD}.Manager", "ListUnitFiles")
            bus.call(SYSTEMD, MANAGER, PROPS, "GetAll", "s", [""])
            bus.call(SYSTEMD, MANAGER, "org.freedesktop.DBus.Introspectable", "Introspect")
            for unit in ("dbus_2eservice", "systemd_2djournald_2eservice", "dbus_2esocket", "_2d_2emount",
                         "multi_2duser_2etarget"):
                bus.call(SYSTEMD, f"{MANAGER}/unit/{unit}", PROPS, "GetAll", "s", [""])
            bus.call(SYSTEMD, MANAGER, f"{SYSTEMD}.Manager", "GetUnit", "s", ["no-such.service"])  # an error
            bus.drain()
            bus.call(SYSTEMD, MANAGER, f"{SYSTEMD}.Manager", "Reload")  # Reloading, UnitNew/UnitRemoved
            bus.drain(quiet=1.0)
            # a job: JobNew, JobRemoved, the unit's PropertiesChanged
            bus.call(SYSTEMD, MANAGER, f"{SYSTEMD}.Manager", "StartUnit", "ss", ["systemd-tmpfiles-clean.service", "replace"])
            bus.drain(quiet=1.0)
        finally:
            bus.sock.close()
    finally:
        run_nsdash("terminate", machine_name, timeout=60)
    kinds = {m[1] for m in bus.messages}
    print(tree, len(bus.messages), "messages", sum(len(m) for m in bus.messages), "bytes, types", sorted(kinds),
          sum(m[1] == 4 for m in bus.messages), "signals")
    assert len(bus.messages) > 50 and kinds >= {2, 3, 4}, (len(bus.messages), kinds)  # returns, an error, signals
    assert sum(len(m) for m in bus.messages) > 100_000  # ListUnits, ListUnitFiles, the GetAlls: real sizes
    refused = []
    for message in bus.messages:
        try:
            dbuscheck.check(message)
        except dbuscheck.Malformed as e:
            refused.append(f"{e}: {message[:200].hex()}")
    assert not refused, "\n".join(refused[:5])


def _booted(name: str):
    """The machine's Target once its bus answers and systemd says running or degraded, else None."""
    try:
        target = resolve(name)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(f"/proc/{target.leader}/root/run/dbus/system_bus_socket")
        conn = dbuswire.Connection(sock, 2.0)
        try:
            (state,) = conn.call(SYSTEMD, MANAGER, PROPS, "Get", "ss", [f"{SYSTEMD}.Manager", "SystemState"])
        finally:
            conn.close()
    except Exception:  # noqa: BLE001 - not up yet
        return None
    return target if state in ("running", "degraded") else None
