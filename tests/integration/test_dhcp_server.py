"""The DHCP server's socket on a real veth (root): it answers its link, ignores garbage and
stays bounded under a flood.  The "guest" is a network namespace the test makes, whose
client runs in a subprocess while the test drives serve() as the supervisor's loop does."""

from __future__ import annotations

import ipaddress
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from nsdash.launcher import dhcp, dhcp_server
from nsdash.launcher.dhcp_server import RATE, READS, DhcpServer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

SERVER, GUEST = "198.18.99.1", "198.18.99.2/30"

CLIENT = r'''
import json, random, socket, struct, sys, time
mac = bytes.fromhex("02aabbccddee")
def request(kind, xid):
    head = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0, bytes(4), bytes(4), bytes(4),
                       bytes(4), mac, b"", b"")
    return head + b"\x63\x82\x53\x63" + bytes((53, 1, kind, 255))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
s.bind(("0.0.0.0", 68))
s.settimeout(0.5)
rng = random.Random(67)
def replies(wait):
    got, end = [], time.monotonic() + wait
    while time.monotonic() < end:
        try:
            got.append(s.recv(2048))
        except socket.timeout:
            pass
    return got
def send(data):
    s.sendto(data, ("255.255.255.255", 67))
good = request(1, 7)
kinds = [
    lambda: good[:rng.randrange(240)],  # cut before the options
    lambda: b"\x02" + good[1:],  # a reply, not a request
    lambda: good[:2] + bytes((rng.choice([0, 5, 16, 255]),)) + good[3:],  # hardware address length
    lambda: good[:236] + bytes(rng.randrange(256) for _ in range(4)) + good[240:],  # no cookie (almost surely)
    lambda: good[:240] + bytes((53, 1, rng.choice([0, 9, 99, 255]), 255)),  # no such message type
    lambda: good[:240] + bytes((53, 2, 1, 1, 255)),  # a type of two bytes
    lambda: good[:240] + bytes((12, 200)) + b"x" * 20,  # an option running past the end, no type
    lambda: good[:240] + bytes(rng.randrange(256) for _ in range(60)).replace(b"\x35", b"\x00"),  # no type
]
for i in range(200):
    send(kinds[i % len(kinds)]())
garbage = len(replies(1.0))
send(request(1, 42))
first = replies(1.0)
start = time.monotonic()
for i in range(400):
    send(request(1, 1000 + i))
flood = replies(1.5)
print(json.dumps({"garbage": garbage, "first": [r.hex() for r in first], "flood": len(flood),
                  "seconds": time.monotonic() - start}))
'''


@pytest.fixture
def guest_link(machine_name) -> Iterator[tuple[str, str]]:
    ns, link = f"dh-{machine_name}", "vd" + machine_name[-10:]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns], check=True)
        subprocess.run(["ip", "addr", "add", f"{SERVER}/30", "dev", link], check=True)
        subprocess.run(["ip", "link", "set", link, "up"], check=True)
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up"], check=True)
        yield ns, link
    finally:
        subprocess.run(["ip", "link", "del", link], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", ns], check=True)


def test_the_server_answers_its_link_ignores_garbage_and_is_bounded_under_a_flood(guest_link):
    ns, link = guest_link
    offer = dhcp.Offer(server=ipaddress.IPv4Address(SERVER), address=ipaddress.IPv4Interface(GUEST))
    server = DhcpServer(link, offer)
    try:
        client = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", CLIENT],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started = resume = time.monotonic()
        while client.poll() is None:  # the supervisor's loop, reduced to this one socket
            if time.monotonic() < resume:
                time.sleep(0.02)  # a pause the server asked for: the loop does not watch it
            elif select.select([server.fileno()], [], [], 0.1)[0]:
                pause = server.serve()
                resume = time.monotonic() + (pause or 0.0)
        elapsed = time.monotonic() - started
        out, err = client.communicate()
    finally:
        server.close()
    assert client.returncode == 0, err
    seen = json.loads(out)
    assert seen["garbage"] == 0  # not one reply to 200 malformed packets
    assert len(seen["first"]) == 1
    reply = dhcp._options(bytes.fromhex(seen["first"][0]))
    assert reply[dhcp.OPT_MESSAGE_TYPE] == bytes((dhcp.OFFER,))
    assert bytes.fromhex(seen["first"][0])[16:20] == ipaddress.IPv4Address("198.18.99.2").packed
    # 400 requests as fast as a socket sends them: at most the rate's burst plus its refill.
    assert 1 <= seen["flood"] <= RATE + RATE * elapsed + 1, (seen["flood"], elapsed)
    assert seen["flood"] < 400
    assert server.replies == 1 + seen["flood"]
    assert server.received <= READS * (elapsed + 1)


def test_the_server_stops_reading_for_the_rest_of_a_second_once_its_reads_are_spent(
        guest_link, monkeypatch):
    ns, link = guest_link
    monkeypatch.setattr(dhcp_server, "READS", 10)
    offer = dhcp.Offer(server=ipaddress.IPv4Address(SERVER), address=ipaddress.IPv4Interface(GUEST))
    server = DhcpServer(link, offer)
    try:
        sender = CLIENT.split("rng = ")[0] + "for i in range(30):\n    s.sendto(request(1, i), ('255.255.255.255', 67))\n"
        subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", sender], check=True)
        assert select.select([server.fileno()], [], [], 5)[0]
        pause = server.serve()
        assert server.received == 10 and pause is not None and 0 < pause <= 1.0
        assert server.serve() is not None and server.received == 10  # still spent: nothing read
    finally:
        server.close()


def test_a_second_server_on_another_link_binds_beside_the_first(guest_link, machine_name):
    """Each machine's server holds port 67 on its own link only (SO_BINDTODEVICE)."""
    _, link = guest_link
    offer = dhcp.Offer(server=ipaddress.IPv4Address(SERVER), address=ipaddress.IPv4Interface(GUEST))
    first = DhcpServer(link, offer)
    other = "vx" + machine_name[-10:]
    subprocess.run(["ip", "link", "add", other, "type", "veth", "peer", "name", other + "p"], check=True)
    try:
        second = DhcpServer(other, offer)
        second.close()
    finally:
        first.close()
        subprocess.run(["ip", "link", "del", other], capture_output=True, check=False)
