"""nsdash.system.dbuscheck: every length inside a message within it, before dbus-fast reads it."""

from __future__ import annotations

import struct

import pytest
from _calls import python_calls
from dbus_fast.constants import MessageType
from dbus_fast.message import Message
from dbus_fast.signature import Variant

from nsdash.system.dbuscheck import DEPTH_MAX, Malformed, check, size


def _marshalled(signature: str, body: list) -> bytes:
    msg = Message(message_type=MessageType.METHOD_RETURN, serial=9, reply_serial=3, signature=signature, body=body,
                  destination=":1.7", sender="org.freedesktop.systemd1")
    return bytes(msg._marshall(False))


UNITS = [("x.service", "X", "loaded", "active", "running", "", "/org/x", 0, "", "/")] * 300


@pytest.mark.parametrize(("signature", "body"), [
    ("", []),
    ("s", ["hello"]),
    ("a(ssssssouso)", [UNITS]),
    ("a{sv}", [{"Id": Variant("s", "x"), "N": Variant("t", 7), "L": Variant("as", ["a", "b"]),
                "V": Variant("v", Variant("(su)", ["e", 1])), "E": Variant("a(ss)", [])}]),
    ("ay", [bytes(1 << 20)]),
    ("aay", [[b"", b"ab", b"abc"]]),
    ("a{ua(sa{sv})}", [{1: [("x", {"y": Variant("d", 1.5)})], 2: []}]),
    ("ybnqiuxtdsogv", [1, True, -2, 3, -4, 5, -6, 7, 1.5, "s", "/o", "sig", Variant("y", 1)]),
])
def test_messages_dbus_fast_marshals_pass(signature, body):
    data = _marshalled(signature, body)
    assert size(data[:16]) == len(data)
    check(data)


def _reply(signature: bytes, body: bytes, order: str = "<") -> bytes:
    fields = b"\x05\x01u\x00" + struct.pack(order + "I", 3) + b"\x08\x01g\x00" + bytes([len(signature)]) + signature + b"\0"
    head = (b"l" if order == "<" else b"B") + b"\x02\x00\x01" + struct.pack(order + "III", len(body), 9, len(fields))
    head += fields
    return head + bytes(-len(head) % 8) + body


def test_big_endian_messages_are_read_in_their_order():
    check(_reply(b"su", struct.pack(">I", 2) + b"ab\0\0" + struct.pack(">I", 7), ">"))
    with pytest.raises(Malformed):
        check(_reply(b"su", struct.pack("<I", 2) + b"ab\0\0" + struct.pack("<I", 7), ">"))


@pytest.mark.parametrize(("signature", "body"), [
    (b"ay", struct.pack("<I", 0xFFFFFFF0) + b"abcd"),  # wrapped dbus-fast's read position: SIGSEGV
    (b"s", struct.pack("<I", 0xFFFFFFF0) + b"x\0\0\0"),
    (b"v", b"\x02ay\x00" + struct.pack("<I", 0xFFFFFFF0) + b"abcd"),
    (b"a(i)", struct.pack("<I", 0xFFFFFFF8) + bytes(4) + bytes(8)),
    (b"a{sv}", struct.pack("<I", 64) + bytes(4)),
    (b"g", b"\xff"),
    (b"as", struct.pack("<I", 12) + struct.pack("<I", 1) + b"a\0\0" + struct.pack("<I", 1 << 31)),
])
def test_a_length_past_the_end_is_refused(signature, body):
    with pytest.raises(Malformed, match="length past its end"):
        check(_reply(signature, body))


@pytest.mark.parametrize(("signature", "body"), [
    (b"(", b""), (b"a", bytes(4)), (b"a{s", bytes(8)), (b"z", b"x"), (b"v", b"\x02ss\x00" + bytes(12)),
    (b"\xff", b""), (b"v", b"\x01(\x00"),
])
def test_a_signature_that_is_not_one_is_refused(signature, body):
    with pytest.raises(Malformed):
        check(_reply(signature, body))


def test_an_array_of_empty_structs_ends():
    """`a()`: each element takes no bytes; walking it must not loop forever."""
    with pytest.raises(Malformed):
        check(_reply(b"a()", struct.pack("<I", 8) + bytes(12)))


def test_nesting_is_bounded():
    deep = b"\x01v\x00" * (DEPTH_MAX + 2) + b"\x01y\x00\x07"
    with pytest.raises(Malformed, match="nested deeper"):
        check(_reply(b"v", deep[3:]))
    check(_reply(b"v", b"\x01v\x00" * 10 + b"\x01y\x00\x07"))


def test_lengths_that_disagree_with_the_header_are_refused():
    good = _reply(b"s", struct.pack("<I", 2) + b"ab\0")
    check(good)
    for bad in (good + b"\0", good[:-1], good[:8]):
        with pytest.raises(Malformed):
            check(bad)
    with pytest.raises(Malformed, match="not D-Bus"):
        size(b"x" + good[1:16])
    with pytest.raises(Malformed, match="body is not its signature"):
        check(_reply(b"y", b"\x01\x02"))  # a byte too many inside the body's length


def _properties(count: int) -> bytes:
    """A GetAll-like answer: an a{sv} of COUNT entries, strings, numbers and booleans."""
    kinds = (Variant("s", "inactive"), Variant("t", 1 << 40), Variant("b", True), Variant("u", 7),
             Variant("o", "/org/x"), Variant("as", ["a", "b"]))
    return _marshalled("a{sv}", [{f"P{n}": kinds[n % len(kinds)] for n in range(count)}])


def test_a_properties_answer_is_walked_without_a_call_per_value():
    """GetAll's a{sv} is most of what a guest's bus sends the supervisor: its entries are walked
    in one loop (a string in a call of its own), not through value() for each entry and each
    of its members (five calls an entry: the check was half of the supervisor's bus-call)."""
    _, calls = python_calls(check, _properties(300))
    assert calls < 2 * 300  # 535: a call per string value, seven per "as"; main made 4140


@pytest.mark.parametrize("wraps", [DEPTH_MAX - 4, DEPTH_MAX - 3, DEPTH_MAX - 2, DEPTH_MAX - 1])
def test_properties_near_the_depth_bound_are_judged_as_any_container(wraps):
    """An a{sv} nested in variants: at the depth where its entries' values pass the bound, the one
    loop hands over to the general walk, which refuses it just the same as other containers."""
    inner = Variant("a{sv}", {"k": Variant("s", "v"), "n": Variant("u", 1)})
    for _ in range(wraps):
        inner = Variant("v", inner)
    data = _marshalled("v", [inner])
    # the same nesting made of structs: (a{sv}) in as many variants
    if wraps + 1 + 3 > DEPTH_MAX:  # the variant's value at depth wraps+1, its a{sv}'s values 3 deeper
        with pytest.raises(Malformed, match="nested deeper"):
            check(data)
    else:
        check(data)
