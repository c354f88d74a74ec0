"""dbuscheck against dbus-fast's compiled reader: what it accepts, dbus-fast reads without harm.

A fixed-seed fuzz run (tests/security/_dbus_fuzz.py: sound messages of random
types, mutated) and the holes it found, each kept as a message built by hand:
dbuscheck passed them and dbus-fast, reading them, died of SIGSEGV or looped
for good (issue 15, review20).  A guest's bus sends these to the supervisor
(root, on the host), `nsdash systemctl -M M ...` and the dashboard's unit views.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest

from nsdash.system import dbuscheck
from tests.security import _dbus_fuzz as fuzz

REPO = str(Path(__file__).resolve().parents[2])
SEED = 20261205
COUNT = 60000  # about 3 s on 2 cores; `python -m tests.security._dbus_fuzz COUNT SEED` for more


def _message(fields: bytes, body: bytes, mtype: int = 2) -> bytes:
    """A little-endian message: FIELDS (the a(yv) bytes, from offset 16) and BODY."""
    head = b"l" + bytes([mtype, 0, 1]) + struct.pack("<III", len(body), 7, len(fields)) + fields
    return head + bytes(-len(head) % 8) + body


def _signature_field(sig: bytes) -> bytes:
    return b"\x08\x01g\x00" + bytes([len(sig)]) + sig + b"\x00"


REPLY_SERIAL = b"\x05\x01u\x00" + struct.pack("<I", 3)


def _array_short_of_its_element() -> bytes:
    """'atay': an array of uint64 4 bytes long, then a byte array.  dbus-fast reads whole
    elements while its position is short of the array's end, so it takes 8 bytes and reads the
    byte array's length from the first 4 bytes of its content: 0xFFFFFFF0, unchecked (SIGSEGV)."""
    fields = REPLY_SERIAL + _signature_field(b"atay")
    body = (struct.pack("<I", 4) + bytes(4)  # the array's length, padding to 8
            + bytes(4)  # its 4 bytes
            + struct.pack("<I", 8) + struct.pack("<I", 0xFFFFFFF0) + b"abcd")  # ay: 8 bytes
    return _message(fields, body)


def _unix_fds_field_holding_a_string() -> bytes:
    """Header field 9 (UNIX_FDS) of type 's': dbus-fast skips that field's value unread, as if
    it were its 4-byte count, and reads the string's text as the next field: a PATH whose length
    0xFFFFFFF0 wraps its 32-bit position back, so its loop over the fields never ends."""
    planted = b"\x01\x01o\x00" + struct.pack("<I", 0xFFFFFFF0) + b"zzzzzzzz"
    field9 = b"\x09\x01s\x00" + struct.pack("<I", len(planted)) + planted + b"\x00"
    return _message(REPLY_SERIAL + field9 + bytes(-len(field9) % 8) + _signature_field(b""), b"")


def _unknown_field_of_a_container_type() -> bytes:
    """Header field 12 (no bus sends one) of type 'ay': dbus-fast reads unknown fields by
    their whole type as one letter, a KeyError from its reader table, not a refusal."""
    field = b"\x0c\x02ay\x00" + bytes(3) + struct.pack("<I", 2) + b"ab"
    return _message(REPLY_SERIAL + field + bytes(-len(field) % 8) + _signature_field(b""), b"")


# The fuzzer's first SIGSEGV (seed 3 of 40,000, as found): '(vv)di' whose first variant is an
# 'ab' 2 bytes long, half a boolean.
FOUND_SIGSEGV = bytes.fromhex(
    "6c030101240000006002800048000000050175000000000004017300000000000000000000000000060173000b000000"
    "7373682e73657276696376000000000008016700062876762964690000000000090175004c0000000261620002000000"
    "5b0001750000000041000000000000004b724a63f2422d4153000000")

HOLES = {
    "array-short-of-its-element": (_array_short_of_its_element, ("killed by signal 11", "memory")),
    "unix-fds-field-holding-a-string": (_unix_fds_field_holding_a_string, "hang"),
    "found-sigsegv": (lambda: FOUND_SIGSEGV, "killed by signal 11"),
    "unknown-field-of-a-container-type": (_unknown_field_of_a_container_type, "read elsewhere than checked (KeyError)"),
}


@pytest.mark.parametrize("name", sorted(HOLES))
def test_holes_dbus_fast_cannot_read_are_refused(name: str) -> None:
    """Each was accepted by dbuscheck before review20 (the test fails there)."""
    make, _ = HOLES[name]
    with pytest.raises(dbuscheck.Malformed):
        dbuscheck.check(make())


@pytest.mark.parametrize("name", sorted(HOLES))
def test_the_holes_are_holes_in_dbus_fast(name: str) -> None:
    """Why they must be refused: dbus-fast as installed, reading each, crashes, hangs, asks for
    gigabytes (the wrapped length as a slice: the child's address-space limit stops it) or reads
    elsewhere than dbuscheck did (this proves the harness, too: it sees each kind).  A dbus-fast
    that reads one of them safely fails this test: the check may then be eased (pyproject pins 5)."""
    make, fate = HOLES[name]
    report = fuzz.read_all([make()], REPO)
    assert report.holes and report.holes[0][0].startswith(fate), report.holes


def test_fuzzed_messages_dbuscheck_accepts_dbus_fast_reads_without_harm() -> None:
    report = fuzz.fuzz(SEED, COUNT, REPO)
    assert not report.holes, "\n".join(f"{what}: {msg.hex()}" for what, msg in report.holes[:10])
    # the run reached dbus-fast with many messages, and its refusals too (not all refused early)
    assert report.accepted > COUNT // 5 and report.refused > COUNT // 5, report
    assert set(report.exceptions) <= fuzz.REFUSALS and sum(report.exceptions.values()) > 100, report


def test_messages_as_buses_send_them_pass() -> None:
    """No false refusal: random messages laid out as the specification says (every basic type,
    arrays, dicts, structs, variants, both byte orders, every header field) all pass."""
    rng = random.Random(SEED)
    for _ in range(5000):
        message = fuzz.sound_message(rng, deep=False)
        dbuscheck.check(message)


@pytest.mark.parametrize(("signature", "value", "width"), [
    ("aa{sv}", {}, 8),  # an empty dict (~64 bytes in Python) from 4 to 8 bytes
    ("aas", [], 4),  # an empty list from 4 bytes
    ("aay", b"", 4),  # an empty bytes object from 4 bytes
    ("av", "y", 4),  # a Variant from 4 bytes
    ("a(y)", [7], 8),  # a tuple from 8 bytes
])
def test_a_reply_of_a_million_tiny_values_stays_bounded(signature: str, value: object, width: int) -> None:
    """Huge counts: a reply at the guest's limit (BUS_REPLY_MAX, 1 MiB) of the values that cost
    Python the most per byte; dbus-fast reads it within MEMORY (64 MiB), no exception."""
    from dbus_fast.constants import MessageType
    from dbus_fast.message import Message
    from dbus_fast.signature import Variant

    from nsdash.machines.busguard import BUS_REPLY_MAX

    one = Variant("y", 7) if signature == "av" else value
    count = (BUS_REPLY_MAX - 256) // width
    message = bytes(Message(message_type=MessageType.METHOD_RETURN, serial=9, reply_serial=3,
                            signature=signature, body=[[one] * count])._marshall(False))
    assert BUS_REPLY_MAX - 4096 < len(message) <= BUS_REPLY_MAX
    dbuscheck.check(message)
    report = fuzz.read_all([message], REPO)
    assert not report.holes and not report.exceptions, report
