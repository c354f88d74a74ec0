"""A guest's planted bus against the relay (inside/busrelay.py) that `systemctl -M M start` goes through.

Root inside a BusyBox machine (a private copy of the demo tree) puts a listener
at /run/dbus/system_bus_socket that speaks raw bytes, not a scripted D-Bus: it
lies in the authentication (lines it was not asked for, a line without end),
sends its replies a byte at a time, never answers, or floods signals.  The
host's side is the real `nsdash systemctl -M M start` (dbus-fast's MessageBus
behind the relay): each ends in bounded time and memory with one line, and the
relay lets no more than BUS_REPLY_MAX of one message's bytes through.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable

from conftest import NSDASH, REPO

from nsdash.machines import client
from nsdash.machines import state as st

OK = b"OK 0123456789abcdef0123456789abcdef\r\n"


class RawBus:
    """A listener at PATH (inside the machine) that hands each connection to SCRIPT(conn, bus)."""

    def __init__(self, path: str, script: Callable[[socket.socket, RawBus], None]) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.script = script
        self.sent = 0  # bytes the host's side took from us
        self.stop = threading.Event()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(8)
        self.conns: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError, EOFError):  # the host hung up: what the attack wants
            self.script(conn, self)

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def close(self) -> None:
        self.stop.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        for t in [self.thread, *self.threads]:
            t.join(10)


def _read_line(conn: socket.socket) -> bytes:
    """One line from the host, a byte at a time (nothing after it is taken)."""
    line = b""
    while not line.endswith(b"\r\n"):
        byte = conn.recv(1)
        if not byte:
            raise EOFError
        line += byte
    return line


def _until_begin(conn: socket.socket) -> None:
    while _read_line(conn) != b"BEGIN\r\n":
        pass


def _head(body: int, kind: int = 4, serial: int = 1, fields: int = 0) -> bytes:
    """A D-Bus fixed header (little-endian): KIND 4 a signal, 2 a method return."""
    return bytes([ord("l"), kind, 0, 1]) + struct.pack("<III", body, serial, fields)


def _plant(name: str, script: Callable[[socket.socket, RawBus], None]) -> RawBus:
    path = f"/proc/{client.status(name)['leader']}/root/run/dbus/system_bus_socket"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return RawBus(path, script)


def _start(name: str, tmp_path, timeout: float = 5) -> tuple[subprocess.CompletedProcess, float, int]:
    """`nsdash systemctl -M NAME start x.service`: its result, wall time and peak RSS in KiB."""
    peak = tmp_path / "maxrss"
    began = time.monotonic()
    r = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(peak), *NSDASH, "systemctl", "-M", name,
                        "start", "x.service", "--timeout", str(timeout)],
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    return r, time.monotonic() - began, int(peak.read_text().split()[-1])


def _one_line(r: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and r.stderr.startswith("nsdash: "), r.stderr
    return r.stderr


def test_lines_the_host_did_not_ask_for_cannot_carry_a_message_past_the_relay(detached, busybox_tree,
                                                                             machine_name, tmp_path):
    """The relay passed every whole line the guest sent before the host's BEGIN.  dbus-fast reads
    its authentication in 1 KiB pieces: an OK line of exactly 1 KiB, then a message's first bytes
    ending in CRLF, sent at once, went through as "lines" and dbus-fast took them, after its BEGIN,
    as the start of a 100 MiB message; the relay, scanning messages from BEGIN on, then passed
    small fake messages that dbus-fast read as that message's body: 100 MiB read, 220+ MiB RSS."""
    total = 1600  # fake 64 KiB messages: 100 MiB for dbus-fast's one message

    def script(conn: socket.socket, bus: RawBus) -> None:
        _read_line(conn)  # "\0AUTH EXTERNAL 30"
        ok = b"OK " + b"0" * (1024 - 5) + b"\r\n"
        bus.send(conn, ok + _head(total * 65536 + 4) + b"ab\r\n")
        _until_begin(conn)
        fake = _head(65536 - 16) + bytes(65536 - 16)
        for _ in range(total):
            if bus.stop.is_set():
                return
            bus.send(conn, fake)

    detached("-bD", str(busybox_tree))
    bus = _plant(machine_name, script)
    try:
        r, _, kib = _start(machine_name, tmp_path, timeout=10)
        line = _one_line(r)
        assert line.startswith(f"nsdash: the bus of machine '{machine_name}' sent authentication lines "
                               "it was not asked for"), line
        assert bus.sent < 8 << 20, f"the host read {bus.sent} bytes of the guest's one message ({kib} KiB peak; {line.strip()})"
        assert kib < 100 * 1024, f"systemctl start peaked at {kib} KiB"
        assert client.status(machine_name)["state"] in st.UP_STATES
    finally:
        bus.close()


def test_an_authentication_line_without_end_or_with_nuls_ends_the_connection(detached, busybox_tree,
                                                                             machine_name, tmp_path):
    """A bus that answers AUTH with endless bytes and no CRLF (NULs, then letters): the relay refuses
    it after LINE_MAX, the verb says so in one line at once, and reads no more than that."""
    def script(conn: socket.socket, bus: RawBus) -> None:
        _read_line(conn)
        while not bus.stop.is_set():
            bus.send(conn, b"\0" * 1024 + b"OK" * 512)

    detached("-bD", str(busybox_tree))
    bus = _plant(machine_name, script)
    try:
        r, took, _ = _start(machine_name, tmp_path, timeout=5)
        assert "authentication line over 4096 bytes" in _one_line(r), r.stderr
        assert took < 5, f"took {took:.1f} s"
        assert bus.sent < 4 << 20, bus.sent
    finally:
        bus.close()


def _authenticated(conn: socket.socket, bus: RawBus) -> None:
    _read_line(conn)
    bus.send(conn, OK)
    _until_begin(conn)


def test_a_reply_a_byte_a_second_or_none_ends_at_the_deadline(detached, busybox_tree, machine_name, tmp_path):
    """Slowloris: after authenticating, the bus sends a message header a byte every 0.2 s, forever;
    or never anything.  The verb ends at its --timeout (here 3 s) with one line; it does not wait
    for the message to finish."""
    def slow(conn: socket.socket, bus: RawBus) -> None:
        _authenticated(conn, bus)
        data = _head(1 << 19) + bytes(1 << 19)
        for i in range(len(data)):
            if bus.stop.wait(0.2):
                return
            bus.send(conn, data[i:i + 1])

    def silent(conn: socket.socket, bus: RawBus) -> None:
        _authenticated(conn, bus)
        bus.stop.wait(120)

    def no_ok(conn: socket.socket, bus: RawBus) -> None:
        _read_line(conn)
        for _ in range(600):
            if bus.stop.wait(0.2):
                return
            bus.send(conn, b"O")

    detached("-bD", str(busybox_tree))
    for script in (slow, silent, no_ok):
        bus = _plant(machine_name, script)
        try:
            r, took, _ = _start(machine_name, tmp_path, timeout=3)
            assert "did not answer within 3s" in _one_line(r), (script.__name__, r.stderr)
            assert took < 3 + 5, f"{script.__name__}: took {took:.1f} s"
        finally:
            bus.close()


def test_a_flood_of_signals_costs_bounded_memory(detached, busybox_tree, machine_name, tmp_path):
    """A bus that never answers Hello and sends signals of 64 KiB as fast as the host reads them:
    the verb ends at its deadline with one line; dbus-fast drops each signal, memory stays flat."""
    def flood(conn: socket.socket, bus: RawBus) -> None:
        _authenticated(conn, bus)
        signal = _signal(65536 - 128)
        while not bus.stop.is_set():
            bus.send(conn, signal)

    detached("-bD", str(busybox_tree))
    bus = _plant(machine_name, flood)
    try:
        r, took, kib = _start(machine_name, tmp_path, timeout=3)
        assert "did not answer within 3s" in _one_line(r), r.stderr
        assert took < 3 + 5, f"took {took:.1f} s"
        assert kib < 100 * 1024, f"peaked at {kib} KiB"
        assert bus.sent > 1 << 20  # the flood did reach the host
    finally:
        bus.close()


def _signal(size: int) -> bytes:
    """A signal /x x.y.Z whose body is SIZE zero bytes (signature ay)."""
    from dbus_fast.constants import MessageType
    from dbus_fast.message import Message

    msg = Message(message_type=MessageType.SIGNAL, serial=7, path="/x", interface="x.y", member="Z",
                  signature="ay", body=[bytes(size)])
    return bytes(msg._marshall(False))
