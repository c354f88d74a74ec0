"""nsdash.system.dbuswire: the blocking D-Bus client, checked against dbus-fast and a real bus daemon."""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from typing import Any

import pytest
from dbus_fast import Message, Variant
from dbus_fast._private.unmarshaller import Unmarshaller

from nsdash.system import dbuswire

BODIES = [
    ("", []),
    ("s", ["hello"]),
    ("asas", [[], ["a*.service", "b.socket"]]),
    ("sayssusai", ["web1", bytes(range(16)), "nsdash", "container", 4242, "/var/lib/machines/web1", [3, 7]]),
    ("ubxtd", [7, True, -(2**40), 2**64 - 1, 1.5]),
    ("a{sv}(so)", [{"Id": ("s", "x.service"), "Pids": ("au", [1, 2])}, ("name", "/org/x")]),
]


def _fast(value: object) -> object:
    """dbus-fast's shape of a value: Variants unwrapped, so the two sides compare."""
    if isinstance(value, Variant):
        return _fast(value.value)
    if isinstance(value, dict):
        return {k: _fast(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_fast(v) for v in value)
    return value


def _ours(signature: str, body: list[Any]) -> list[Any]:
    """The body as our reader returns it: variants given as (signature, value) come back bare."""
    def plain(t: str, v: Any) -> Any:
        if t == "v":
            sig, inner = v
            return plain(sig, inner)
        if t.startswith("a{"):
            kt, vt = dbuswire._split(t[2:-1])
            return {plain(kt, k): plain(vt, x) for k, x in v.items()}
        if t == "ay":
            return bytes(v)
        if t.startswith("a"):
            return [plain(t[1:], x) for x in v]
        if t.startswith("("):
            return tuple(plain(s, x) for s, x in zip(dbuswire._split(t[1:-1]), v, strict=True))
        return v
    return [plain(t, v) for t, v in zip(dbuswire._split(signature), body, strict=True)]


@pytest.mark.parametrize(("signature", "body"), BODIES)
def test_dbus_fast_reads_what_we_write(signature: str, body: list[object]) -> None:
    data = dbuswire.message(9, "org.example.Dest", "/org/example", "org.example.Iface", "Do", signature, body)
    msg = Unmarshaller(io.BufferedRWPair(io.BytesIO(data), io.BytesIO())).unmarshall()
    assert msg is not None
    assert (msg.destination, msg.path, msg.interface, msg.member, msg.serial) == (
        "org.example.Dest", "/org/example", "org.example.Iface", "Do", 9)
    assert msg.signature == signature
    assert _fast(msg.body) == _fast(_ours(signature, body))


@pytest.mark.parametrize(("signature", "body"), BODIES)
def test_we_read_what_dbus_fast_writes(signature: str, body: list[object]) -> None:
    def fast_value(t: str, v: Any) -> Any:
        if t == "v":
            sig, inner = v
            return Variant(sig, inner)
        if t.startswith("a{"):
            _, vt = dbuswire._split(t[2:-1])
            return {k: fast_value(vt, x) for k, x in v.items()}
        return v
    fast_body = [fast_value(t, v) for t, v in zip(dbuswire._split(signature), body, strict=True)]
    data = bytes(Message(destination="a.b", path="/a", interface="a.b", member="M", signature=signature,
                         body=fast_body, serial=3)._marshall(False))
    reader = dbuswire._Reader(data, "<")
    reader.pos = 12
    fields = dict(reader.read("a(yv)"))
    assert fields[dbuswire.F_MEMBER] == "M"
    (fields_len,) = struct.unpack_from("<I", data, 12)  # the body starts after the fields, padded to 8
    reader.pos = 16 + fields_len + (-(16 + fields_len) % 8)
    got = [reader.read(t) for t in dbuswire._split(signature)]
    assert got == _ours(signature, body)
    assert reader.pos == len(data)


@pytest.fixture
def private_bus(tmp_path):
    """A real dbus-daemon on a socket of our own (a session-type bus: Hello, errors, names)."""
    if shutil.which("dbus-daemon") is None:
        pytest.fail("dbus-daemon is not installed (make apt)")
    path = tmp_path / "bus"
    config = tmp_path / "bus.conf"
    config.write_text(f"""<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:path={path}</listen>
<auth>EXTERNAL</auth><policy context="default"><allow send_destination="*" eavesdrop="true"/>
<allow eavesdrop="true"/><allow own="*"/></policy></busconfig>""")
    proc = subprocess.Popen(["dbus-daemon", f"--config-file={config}", "--nofork", "--nopidfile"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if path.exists():
                break
            assert proc.poll() is None, "dbus-daemon exited"
            time.sleep(0.01)
        assert path.exists(), "dbus-daemon did not create its socket"
        yield str(path)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def _connect(path: str) -> dbuswire.Connection:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    return dbuswire.Connection(sock, 5.0)


def test_calls_on_a_real_bus(private_bus: str) -> None:
    conn = _connect(private_bus)
    try:
        assert conn.unique_name is not None and conn.unique_name.startswith(":")
        (names,) = conn.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "ListNames")
        assert "org.freedesktop.DBus" in names and conn.unique_name in names
        (owner,) = conn.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                             "GetNameOwner", "s", [conn.unique_name])
        assert owner == conn.unique_name
        (pid,) = conn.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                           "GetConnectionUnixProcessID", "s", [conn.unique_name])
        assert pid == os.getpid()
    finally:
        conn.close()


def test_error_reply_is_a_wire_error(private_bus: str) -> None:
    conn = _connect(private_bus)
    try:
        with pytest.raises(dbuswire.WireError) as info:
            conn.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                      "GetNameOwner", "s", ["org.example.NobodyOwnsThis"])
        assert info.value.name == "org.freedesktop.DBus.Error.NameHasNoOwner"
        assert info.value.text
        # The connection is still usable after an error reply.
        (names,) = conn.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "ListNames")
        assert conn.unique_name in names
    finally:
        conn.close()


def test_variant_arguments_as_systemd_takes_them() -> None:
    """StartTransientUnit's a(sv) with Variant objects (nsdash.system.dbus.variant), read back by dbus-fast."""
    props = [["Description", dbuswire.Variant("s", "x")], ["PIDs", dbuswire.Variant("au", [5, 6])],
             ["ExecStart", dbuswire.Variant("a(sasb)", [("/bin/true", ["/bin/true"], False)])],
             ["StandardInputFileDescriptor", dbuswire.Variant("h", 0)]]
    data = dbuswire.message(1, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                            "org.freedesktop.systemd1.Manager", "StartTransientUnit", "ssa(sv)a(sa(sv))",
                            ["x.scope", "fail", props, []], unix_fds=1)
    msg = Unmarshaller(io.BufferedRWPair(io.BytesIO(data), io.BytesIO())).unmarshall()
    assert msg is not None
    name, mode, got, aux = msg.body
    assert (name, mode, aux) == ("x.scope", "fail", [])
    assert [(k, v.signature, _fast(v.value)) for k, v in got] == [
        ("Description", "s", "x"), ("PIDs", "au", [5, 6]),
        ("ExecStart", "a(sasb)", [("/bin/true", ["/bin/true"], False)]), ("StandardInputFileDescriptor", "h", 0)]


def test_bus_gone_mid_call_is_eof_or_oserror() -> None:
    ours, theirs = socket.socketpair()
    theirs.sendall(b"OK 0123456789abcdef0123456789abcdef\r\n")
    theirs.close()  # the "bus" hangs up before answering Hello
    with pytest.raises((EOFError, OSError)):
        dbuswire.Connection(ours, 2.0)
    ours.close()
