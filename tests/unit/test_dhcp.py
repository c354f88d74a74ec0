"""DHCPv4 packets: parsing what a guest sends (hostile included) and the answers (pure)."""

from __future__ import annotations

import ipaddress
import random
import struct

import pytest

from nsdash.launcher import dhcp

MAC = bytes.fromhex("02aabbccddee")
OFFER = dhcp.Offer(server=ipaddress.IPv4Address("10.229.0.1"), address=ipaddress.IPv4Interface("10.229.0.2/30"),
                   dns=(ipaddress.IPv4Address("192.0.2.53"),))


def request(kind: int, *, ciaddr: str = "0.0.0.0", options: bytes = b"", xid: int = 0x1234ABCD,
            flags: int = 0) -> bytes:
    head = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, flags,
                       ipaddress.IPv4Address(ciaddr).packed, b"\0" * 4, b"\0" * 4, b"\0" * 4, MAC, b"", b"")
    return head + dhcp.MAGIC + bytes((53, 1, kind)) + options + b"\xff"


def opts(reply: bytes) -> dict[int, bytes]:
    return dhcp._options(reply)


def test_discover_gets_an_offer_of_the_machine_s_address_broadcast():
    packet, where = dhcp.respond(request(dhcp.DISCOVER), OFFER)
    assert where == ("255.255.255.255", 68)
    assert packet[0] == dhcp.BOOTREPLY and struct.unpack_from("!I", packet, 4)[0] == 0x1234ABCD
    assert packet[16:20] == ipaddress.IPv4Address("10.229.0.2").packed  # yiaddr
    assert packet[28:34] == MAC and len(packet) >= dhcp.MIN_REPLY
    o = opts(packet)
    assert o[53] == bytes((dhcp.OFFER,)) and o[54] == OFFER.server.packed
    assert o[1] == ipaddress.IPv4Address("255.255.255.252").packed and o[3] == OFFER.server.packed
    assert o[6] == ipaddress.IPv4Address("192.0.2.53").packed
    assert struct.unpack("!I", o[51])[0] == dhcp.LEASE_SECONDS


def test_request_for_the_address_is_acked_and_another_is_naked():
    want = bytes((50, 4)) + ipaddress.IPv4Address("10.229.0.2").packed + bytes((54, 4)) + OFFER.server.packed
    packet, _ = dhcp.respond(request(dhcp.REQUEST, options=want), OFFER)
    assert opts(packet)[53] == bytes((dhcp.ACK,))
    other = bytes((50, 4)) + ipaddress.IPv4Address("10.1.2.3").packed
    packet, where = dhcp.respond(request(dhcp.REQUEST, options=other), OFFER)
    assert opts(packet)[53] == bytes((dhcp.NAK,)) and packet[16:20] == b"\0" * 4
    assert where == ("255.255.255.255", 68) and 51 not in opts(packet)


def test_a_renewal_is_acked_by_unicast_to_the_client():
    packet, where = dhcp.respond(request(dhcp.REQUEST, ciaddr="10.229.0.2"), OFFER)
    assert opts(packet)[53] == bytes((dhcp.ACK,)) and where == ("10.229.0.2", 68)


def test_a_request_for_another_server_and_release_decline_get_no_reply():
    other_server = bytes((54, 4)) + ipaddress.IPv4Address("10.9.9.9").packed
    assert dhcp.respond(request(dhcp.REQUEST, options=other_server), OFFER) is None
    assert dhcp.respond(request(dhcp.RELEASE, ciaddr="10.229.0.2"), OFFER) is None
    assert dhcp.respond(request(dhcp.DECLINE), OFFER) is None


def test_inform_is_acked_without_a_lease():
    packet, where = dhcp.respond(request(dhcp.INFORM, ciaddr="10.229.0.2"), OFFER)
    o = opts(packet)
    assert o[53] == bytes((dhcp.ACK,)) and 51 not in o and packet[16:20] == b"\0" * 4 and 3 in o
    assert where == ("10.229.0.2", 68)


@pytest.mark.parametrize("data", [
    b"", b"\x01" * 239, request(dhcp.DISCOVER)[:240],  # cut before any option
    request(dhcp.DISCOVER).replace(dhcp.MAGIC, b"XXXX"),  # no cookie
    b"\x02" + request(dhcp.DISCOVER)[1:],  # a reply, not a request
    request(dhcp.DISCOVER)[:2] + b"\x10" + request(dhcp.DISCOVER)[3:],  # hlen 16
    request(99), request(0),  # unknown message types
    request(dhcp.DISCOVER)[:240] + b"\x35\xff\x01",  # option 53 running past the end
    request(dhcp.DISCOVER)[:240] + b"\x35",  # a lone code
])
def test_malformed_packets_are_ignored(data):
    assert dhcp.parse(data) is None
    assert dhcp.respond(data, OFFER) is None


def test_bad_option_values_are_ignored_not_trusted():
    bad = bytes((50, 3)) + b"\x0a\xe5\x00" + bytes((54, 16)) + b"\x00" * 16
    parsed = dhcp.parse(request(dhcp.REQUEST, options=bad))
    assert parsed is not None and parsed.requested is None and parsed.server_id is None
    # No requested address and no ciaddr: not the machine's address, so a NAK.
    assert dhcp.answer(parsed, OFFER) == dhcp.NAK


def test_random_garbage_never_raises():
    rng = random.Random(19)
    base = request(dhcp.DISCOVER)
    for _ in range(3000):
        data = bytearray(base[:240] + bytes(rng.randrange(256) for _ in range(rng.randrange(80))))
        for _ in range(rng.randrange(4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        reply = dhcp.respond(bytes(data), OFFER)
        assert reply is None or len(reply[0]) <= dhcp.MAX_PACKET


def test_host_resolvers_leave_out_a_local_stub(tmp_path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("# x\nnameserver 127.0.0.53\nnameserver 192.0.2.1\nnameserver ::1\nnameserver bogus\n"
                    "search example\nnameserver 198.51.100.7\n")
    assert dhcp.host_resolvers(str(conf)) == (ipaddress.IPv4Address("192.0.2.1"),
                                              ipaddress.IPv4Address("198.51.100.7"))
    assert dhcp.host_resolvers(str(tmp_path / "none")) == ()
