"""nsdash.system.dbuswire: blocking D-Bus calls on dbus-fast's marshalling, against a real bus daemon."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nsdash.system import dbuswire

REPO = Path(__file__).resolve().parents[2]

def test_no_asyncio_and_the_real_package_still_loads() -> None:
    """The blocking path loads dbus-fast's message modules without asyncio; a later
    `import dbus_fast` (the dashboard, job verbs) gets the whole package over the same modules."""
    code = ("import sys; from nsdash.system import dbuswire; assert 'asyncio' not in sys.modules; "
            "import dbus_fast; from dbus_fast.aio import MessageBus; "
            "assert dbus_fast.Variant is dbuswire.Variant and dbus_fast.Message is sys.modules['dbus_fast.message'].Message")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


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
        # The socket file appears at bind(), before listen(): wait until a connect is taken.
        for _ in range(500):
            assert proc.poll() is None, "dbus-daemon exited"
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                time.sleep(0.01)
            finally:
                probe.close()
        else:
            pytest.fail("dbus-daemon did not listen on its socket within 5 s")
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


def test_file_descriptors_travel_with_a_call(private_bus: str) -> None:
    """unix_fds=True negotiates descriptor passing; a call carrying one is answered (the
    bus checks the header's descriptor count against what arrived with the message)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(private_bus)
    conn = dbuswire.Connection(sock, 5.0, unix_fds=True)
    r, w = os.pipe()
    try:
        with pytest.raises(dbuswire.WireError) as info:  # nobody owns the name: the bus itself answers
            conn.call("org.example.Nobody", "/x", "org.example.X", "Take", "h", [0], unix_fds=[r])
        assert info.value.name == "org.freedesktop.DBus.Error.ServiceUnknown"
        (names,) = conn.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "ListNames")
        assert conn.unique_name in names
    finally:
        conn.close()
        os.close(r)
        os.close(w)


def test_bus_gone_mid_call_is_eof_or_oserror() -> None:
    ours, theirs = socket.socketpair()
    theirs.sendall(b"OK 0123456789abcdef0123456789abcdef\r\n")
    theirs.close()  # the "bus" hangs up before answering Hello
    with pytest.raises((EOFError, OSError)):
        dbuswire.Connection(ours, 2.0)
    ours.close()


def test_a_bus_that_stalls_mid_reply_times_out() -> None:
    """Authenticated, then half a reply header and nothing more: TimeoutError at the deadline
    (dbus-fast's compiled reader turned a socket timeout's errno None into a TypeError)."""
    ours, theirs = socket.socketpair()
    theirs.sendall(b"OK 0123456789abcdef0123456789abcdef\r\n" + b"l\x02\x00\x01")
    try:
        with pytest.raises(TimeoutError):
            dbuswire.Connection(ours, 0.3)
    finally:
        ours.close()
        theirs.close()


def test_a_message_dbus_fast_refuses_is_an_oserror() -> None:
    """A reply dbuscheck passes but dbus-fast cannot read (a string that is not UTF-8: the
    fuzzer's commonest, tests/security/test_dbus_fuzz.py) is an OSError like a reset, not a
    UnicodeDecodeError that every caller's OSError path misses (a traceback: review20)."""
    body = b"\x02\x00\x00\x00\xff\xfe\x00"
    fields = (b"\x05\x01u\x00\x01\x00\x00\x00"  # REPLY_SERIAL 1: the answer to Hello
              b"\x08\x01g\x00\x01s\x00\x00")  # SIGNATURE 's', then a byte padding the body to 8
    reply = b"l\x02\x00\x01" + len(body).to_bytes(4, "little") + b"\x09\x00\x00\x00" + (len(fields) - 1).to_bytes(4, "little")
    ours, theirs = socket.socketpair()
    theirs.sendall(b"OK 0123456789abcdef0123456789abcdef\r\n" + reply + fields + body)
    try:
        with pytest.raises(OSError, match="could not read.*UnicodeDecodeError"):
            dbuswire.Connection(ours, 2.0)
    finally:
        ours.close()
        theirs.close()
