"""bus-call on a real supervisor whose guest's bus stalls or floods: the engine never waits on it.

A BusyBox machine has no bus of its own; the test plants one where a guest's
bus lives (/run/dbus/system_bus_socket inside the machine's root), a fake that
never answers or answers without end (tests/unit/test_busproxy.py's FakeBus).
Meanwhile the same supervisor answers status, serves the console and powers
the machine off; the bus-call's client gets exactly one error line.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket

from conftest import run_nsdash

from nsdash.machines import client
from nsdash.machines import protocol as proto
from nsdash.machines import state as st
from tests.unit.test_busproxy import FakeBus


def _connect(name: str) -> tuple[socket.socket, object]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(str(st.machine_dir(name) / st.CONTROL))
    f = s.makefile("rb")
    s.sendall(b'{"op":"hello","version":1}\n')
    assert json.loads(f.readline())["bus_call"] is True
    return s, f


def _bus_call(s: socket.socket, timeout: float) -> None:
    s.sendall(proto.encode_request("bus-call", 9, destination="org.freedesktop.systemd1",
                                   path="/org/freedesktop/systemd1", interface="org.freedesktop.DBus.Properties",
                                   member="Get", signature="ss", body=["org.freedesktop.systemd1.Manager",
                                                                       "SystemState"], timeout=timeout))


def _nothing_yet(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        s.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    finally:
        s.settimeout(30)
    return False


def _plant(leader: int, behaviour: str) -> FakeBus:
    path = f"/proc/{leader}/root/run/dbus/system_bus_socket"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return FakeBus(path, behaviour)


def test_a_stalled_or_flooding_guest_bus_never_holds_up_the_supervisor(detached, busybox_tree, machine_name):
    detached("-bD", str(busybox_tree))
    leader = client.status(machine_name)["leader"]
    bus = _plant(leader, "silent")
    try:
        a, fa = _connect(machine_name)
        _bus_call(a, timeout=10)
        a.sendall(b'{"op":"status","id":10}\n')  # waits behind the bus-call: answers stay in order
        # the engine answers others while the call waits on the guest: status, and the console
        b, fb = _connect(machine_name)
        b.sendall(b'{"op":"status","id":1}\n')
        assert json.loads(fb.readline())["status"]["name"] == machine_name
        b.sendall(b'{"op":"attach","id":2,"replay":4096}\n')
        assert json.loads(fb.readline())["ok"]
        kind, _ = proto.FrameReader().feed(b.recv(65536))[0]
        assert kind == proto.FRAME_OUTPUT  # the console's history, served meanwhile
        b.close()
        assert _nothing_yet(a)
        reply = json.loads(fa.readline())  # then, at the call's deadline, one error line
        assert (reply["ok"], reply["error"], reply["id"]) == (False, "bus-timeout", 9)
        assert json.loads(fa.readline())["id"] == 10
        assert _nothing_yet(a)
        bus.close()

        bus = _plant(leader, "huge")
        _bus_call(a, timeout=30)
        reply = json.loads(fa.readline())
        assert (reply["ok"], reply["error"]) == (False, "oversized")
        assert client.status(machine_name)["state"] == "running"
        bus.close()

        bus = _plant(leader, "silent")
        _bus_call(a, timeout=120)
        r = run_nsdash("poweroff", machine_name, timeout=60)
        assert r.returncode == 0, r.stderr
        assert fa.read() == b""  # the supervisor exited at the poweroff, the call still unanswered
        a.close()
    finally:
        bus.close()
