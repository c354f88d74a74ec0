"""A guest's planted bus against the relay (inside/busrelay.py) and dbuswire's reads.

Root inside a BusyBox machine (a private copy of the demo tree) puts a listener
at /run/dbus/system_bus_socket that speaks raw bytes, not a scripted D-Bus: it
lies in the authentication (lines it was not asked for, a line without end),
sends its replies a byte at a time, never answers, floods signals, attaches
descriptors, or answers with messages whose lengths, strings, signatures and
header fields lie (some wrapped dbus-fast's 32-bit read position: SIGSEGV).
The host's sides are the real `nsdash systemctl -M M start` (dbus-fast's
MessageBus behind the relay), the supervisor's bus-calls and health check
(dbuswire), and the dashboard's in-process unit actions: each ends in bounded
time and memory with one line, and nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import time
from collections.abc import Callable

from _planted_bus import RawBus, guest_bus_path
from conftest import NSDASH, REPO

from nsdash.machines import client
from nsdash.machines import state as st

OK = b"OK 0123456789abcdef0123456789abcdef\r\n"


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
    return RawBus(guest_bus_path(client.status(name)["leader"]), script)


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


def _pad(data: bytes, to: int) -> bytes:
    return data + bytes(-len(data) % to)


def _field(code: int, sig: bytes, value: bytes) -> bytes:
    """One header field (a struct (yv), 8-aligned): CODE, the variant's signature and its VALUE
    (already aligned as it would be at that offset)."""
    return bytes([code, len(sig)]) + sig + b"\0" + value


def _message(body: bytes, *fields: bytes, kind: int = 2, order: str = "<", body_len: int | None = None) -> bytes:
    """A message by hand: KIND 2 a method return; FIELDS as _field made them (little-endian values
    unless ORDER says '>'); BODY_LEN what the header claims (the true length unless given)."""
    raw = b"".join(_pad(f, 8) for f in fields[:-1]) + (fields[-1] if fields else b"")  # no padding after the last
    head = bytes([ord("l" if order == "<" else "B"), kind, 0, 1])
    head += struct.pack(order + "III", len(body) if body_len is None else body_len, 9, len(raw))
    return _pad(head + raw, 8) + body


def _reply_to_hello(*sig: bytes) -> tuple[bytes, ...]:
    """The fields of a return to dbus-fast's Hello (its serial 1), with signature SIG if given."""
    serial = _field(5, b"u", struct.pack("<I", 1))
    return (serial, _field(8, b"g", bytes([len(sig[0])]) + sig[0] + b"\0")) if sig else (serial,)


LIES = {
    # an array that claims 4 GiB in a body of 8 bytes
    "array-overflow": _message(struct.pack("<I", 0xFFFFFFF0) + b"abcd", *_reply_to_hello(b"ay")),
    # lengths near 2**32, which wrap dbus-fast's 32-bit read position (SIGSEGV): a string in the
    # body, a string in a header field, an array inside a variant
    "string-wrap": _message(struct.pack("<I", 0xFFFFFFF0) + b"x\0\0\0", *_reply_to_hello(b"s")),
    "header-wrap": _message(b"", *_reply_to_hello(), _field(4, b"s", struct.pack("<I", 0xFFFFFFF0) + b"x\0")),
    "variant-wrap": _message(b"\2ay\0" + struct.pack("<I", 0xFFFFFFF0) + b"abcd", *_reply_to_hello(b"v")),
    # a string that claims more than the body, one without its NUL, one not UTF-8, one with NULs
    "string-overflow": _message(struct.pack("<I", 1 << 30) + b"x\0\0\0", *_reply_to_hello(b"s")),
    "string-unended": _message(struct.pack("<I", 3) + b":1.x", *_reply_to_hello(b"s")),
    "string-not-utf8": _message(struct.pack("<I", 4) + b"\xff\xfe\x1b]\0", *_reply_to_hello(b"s")),
    "string-nuls": _message(struct.pack("<I", 3) + b":\0\0\0", *_reply_to_hello(b"s")),
    # the body's length says less than its values, or more (the rest never comes)
    "body-short": _message(struct.pack("<I", 4) + b":1.7\0", *_reply_to_hello(b"s"), body_len=4),
    "body-long": _message(struct.pack("<I", 4) + b":1.7\0", *_reply_to_hello(b"s"), body_len=900),
    # file descriptors promised, none sent (the connection did not negotiate them)
    "unix-fds": _message(struct.pack("<I", 4) + b":1.7\0",
                         *_reply_to_hello(b"s"), _field(9, b"u", struct.pack("<I", 3))),
    # a body signature carried as a string, not a signature
    "signature-as-string": _message(b"", _field(5, b"u", struct.pack("<I", 1)), _field(8, b"s", struct.pack("<I", 2) + b"ay\0")),
    # a plain reply to Hello with no name in it (dbus-fast logged a traceback to stderr)
    "hello-empty": _message(b"", *_reply_to_hello()),
    # a signature that is not one, a field of the wrong type, an unknown message type, no fields at all
    "bad-signature": _message(b"\0" * 8, *_reply_to_hello(b"((((a")),
    "field-type": _message(b"", _field(5, b"s", struct.pack("<I", 1) + b"x\0")),
    "kind-9": _message(b"", *_reply_to_hello(), kind=9),
    "no-fields": _message(b""),
    # found by tests/security/_dbus_fuzz.py (review20): an array of uint64 4 bytes long, after
    # which dbus-fast read the byte array's length from its text (SIGSEGV); a UNIX_FDS field
    # holding a string, whose value dbus-fast skips unread (4 bytes): the string's text is a
    # PATH field of length 0xFFFFFFF0, which wrapped its position back (a loop for good, the GIL held)
    "array-ends-inside-an-element": _message(struct.pack("<I", 4) + bytes(8) + struct.pack("<I", 8)
                                             + struct.pack("<I", 0xFFFFFFF0) + b"abcd", *_reply_to_hello(b"atay")),
    "unix-fds-field-of-a-string": _message(b"", *_reply_to_hello(), _field(
        9, b"s", struct.pack("<I", 16) + b"\x01\x01o\x00" + struct.pack("<I", 0xFFFFFFF0) + b"zzzzzzzz\0")),
    # big-endian lengths in a little-endian message (the byte order flips mid-stream)
    "order-flip": _message(struct.pack("<I", 4) + b":1.7\0", *_reply_to_hello(b"s"))
    + _message(b"", *_reply_to_hello(), order=">", body_len=0xFFFFFFF0)[:16],
}


def _liar(lie: bytes) -> Callable[[socket.socket, RawBus], None]:
    """A bus that logs the host in, then sends LIE and waits."""
    def script(conn: socket.socket, bus: RawBus) -> None:
        _authenticated(conn, bus)
        bus.send(conn, lie)
        bus.stop.wait(60)
    return script


def test_lies_in_a_messages_header_and_body_end_in_one_line(detached, busybox_tree, machine_name, tmp_path):
    """Hello answered with messages whose lengths, strings, signatures, fields and byte order lie:
    each `systemctl start` ends within its deadline with one line, no traceback, the machine up."""
    detached("-bD", str(busybox_tree))
    for kind, lie in LIES.items():
        bus = _plant(machine_name, _liar(lie))
        try:
            r, took, kib = _start(machine_name, tmp_path, timeout=3)
            assert "Traceback" not in r.stderr, (kind, r.stderr)
            assert r.returncode != 0 and r.stderr.count("\n") == 1, (kind, r.stderr)
            assert took < 3 + 5, f"{kind}: took {took:.1f} s"
            assert kib < 100 * 1024, f"{kind}: peaked at {kib} KiB"
            print(kind, r.stderr.strip())
        finally:
            bus.close()
    assert client.status(machine_name)["state"] in st.UP_STATES


def test_lies_that_crashed_dbus_fast_end_in_one_line_through_the_supervisor_too(detached, busybox_tree,
                                                                               machine_name):
    """The same lies to the supervisor's bus-calls (`systemctl -M M list-units`, blocking, over
    dbuswire) and its health check: one line each, and the supervisor is still the same process."""
    from nsdash.machines.health import system_state

    detached("-bD", str(busybox_tree))
    supervisor = st.read_state(st.machine_dir(machine_name)).supervisor
    leader = client.status(machine_name)["leader"]
    for kind, lie in LIES.items():
        bus = _plant(machine_name, _liar(lie))
        try:
            r = subprocess.run([*NSDASH, "systemctl", "-M", machine_name, "list-units", "--timeout", "3"],
                               capture_output=True, text=True, timeout=60, cwd=REPO)
            assert "Traceback" not in r.stderr, (kind, r.stderr)
            assert r.returncode != 0 and r.stderr.count("\n") == 1, (kind, r.returncode, r.stderr)
            assert st.read_state(st.machine_dir(machine_name)).supervisor == supervisor, kind
            assert os.path.exists(f"/proc/{supervisor}"), f"{kind}: the supervisor died"
            assert system_state(leader, 3.0) is None, kind
        finally:
            bus.close()


def test_the_dashboards_unit_actions_leave_no_thread_or_descriptor(detached, busybox_tree, machine_name, tmp_path):
    """The dashboard runs a unit action in its own process (inside/view.MachineUnits.act: a thread
    with an event loop, the relay, dbus-fast's MessageBus).  Against each hostile bus above, five
    times, with the cyclic collector off (the dashboard runs full collections only now and then):
    each ends in an NsdashError within its deadline, and no thread, descriptor or task is left."""
    import gc
    import threading as th

    from nsdash.errors import NsdashError
    from nsdash.inside.view import MachineUnits

    def unasked(conn: socket.socket, bus: RawBus) -> None:
        _read_line(conn)
        bus.send(conn, OK + b"l\x04\x00\x01\r\n")
        bus.stop.wait(30)

    def lie(conn: socket.socket, bus: RawBus) -> None:
        _authenticated(conn, bus)
        bus.send(conn, LIES["array-overflow"])
        bus.stop.wait(30)

    def silent(conn: socket.socket, bus: RawBus) -> None:
        _authenticated(conn, bus)
        bus.stop.wait(30)

    secret = tmp_path / "review18-guest-fd"
    secret.write_text("a host file the guest holds open")

    def descriptors(conn: socket.socket, bus: RawBus) -> None:
        _authenticated(conn, bus)
        with open(secret, "rb") as f:
            for _ in range(50):  # signals with a descriptor attached to each, then silence
                socket.send_fds(conn, [_signal(64)], [f.fileno()])
        bus.stop.wait(30)

    detached("-bD", str(busybox_tree))
    units = MachineUnits(machine_name, timeout=2)
    fds, threads = len(os.listdir("/proc/self/fd")), th.active_count()
    gc.disable()
    try:
        for script in (unasked, lie, silent, descriptors):
            bus = _plant(machine_name, script)
            try:
                for _ in range(5):
                    began = time.monotonic()
                    try:
                        units.act("start", "x.service", job_timeout=5)
                        raise AssertionError(f"{script.__name__}: the action succeeded")
                    except NsdashError:
                        pass
                    assert time.monotonic() - began < 2 + 3, script.__name__
            finally:
                bus.close()
        assert th.active_count() == threads, th.enumerate()
        left = len(os.listdir("/proc/self/fd"))
        assert left <= fds, f"{left - fds} descriptors left after 20 actions: {os.listdir('/proc/self/fd')}"
        assert not any(str(secret) in target for target in _targets()), "a descriptor the guest sent is kept"
    finally:
        gc.enable()


def _targets() -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            found.append(os.readlink(f"/proc/self/fd/{fd}"))
    return found
