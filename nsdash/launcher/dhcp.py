"""DHCPv4 for one machine's link: packets parsed and built, and the answer to each (pure).

systemd-nspawn leaves host0 to the guest's systemd-networkd, which asks for an
address by DHCP (80-container-host0.network), and to the host's networkd, which
answers on ve-* (80-container-ve.network).  nsdash has no such daemon, so when a
booted guest enables networkd, the machine's supervisor answers on the ve- link
(launcher/dhcp_server.py) with the very address it would otherwise have set on
host0: the machine's lease from the pool (launcher/network.py).

The guest writes every request, so parsing trusts nothing: a packet shorter
than BOOTP's fixed part, not a request, with another hardware type or without
the magic cookie is ignored; options are read inside the packet's bounds only,
one pass, and an option that runs past the end ends the reading.  The server
answers only about its one address (RFC 2131's states reduced to what a single
point-to-point client needs) and never remembers anything a client says.
"""

from __future__ import annotations

import ipaddress
import struct

from nsdash.system.frozen import Frozen

SERVER_PORT, CLIENT_PORT = 67, 68
MAGIC = b"\x63\x82\x53\x63"
FIXED = 236  # op .. file, before the magic cookie
BOOTREQUEST, BOOTREPLY = 1, 2
HTYPE_ETHER = 1
FLAG_BROADCAST = 0x8000
MIN_REPLY = 300  # BOOTP's minimum message size: some clients drop shorter ones
MAX_PACKET = 1500  # what a reply may grow to, and what the server reads of a request

# Message types (option 53)
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = 1, 2, 3, 4, 5, 6, 7, 8

# Options used here (RFC 2132)
OPT_PAD, OPT_SUBNET_MASK, OPT_ROUTER, OPT_DNS = 0, 1, 3, 6
OPT_REQUESTED_IP, OPT_LEASE_TIME, OPT_MESSAGE_TYPE, OPT_SERVER_ID = 50, 51, 53, 54
OPT_RENEWAL, OPT_REBINDING, OPT_END = 58, 59, 255

LEASE_SECONDS = 3600  # renewed while the machine runs; the address is the machine's anyway


class Request(Frozen):
    """What the server needs of a client's message."""

    kind: int  # option 53
    xid: int
    flags: int
    ciaddr: ipaddress.IPv4Address
    giaddr: ipaddress.IPv4Address
    chaddr: bytes  # the 16-byte field as sent (hlen names how much is the address)
    htype: int
    hlen: int
    requested: ipaddress.IPv4Address | None = None  # option 50
    server_id: ipaddress.IPv4Address | None = None  # option 54


class Offer(Frozen):
    """What the server hands out on its link: one address, its router and resolvers."""

    server: ipaddress.IPv4Address  # the host side's address: server identifier and router
    address: ipaddress.IPv4Interface  # the guest's address with its prefix
    dns: tuple[ipaddress.IPv4Address, ...] = ()
    lease_seconds: int = LEASE_SECONDS


def _options(data: bytes) -> dict[int, bytes]:
    """The options after the magic cookie (first occurrence of each; bounded by DATA)."""
    found: dict[int, bytes] = {}
    i = FIXED + len(MAGIC)
    while i < len(data):
        code = data[i]
        if code == OPT_END:
            break
        if code == OPT_PAD:
            i += 1
            continue
        if i + 1 >= len(data):
            break
        size = data[i + 1]
        value = data[i + 2:i + 2 + size]
        if len(value) != size:
            break  # runs past the end: the rest is garbage
        found.setdefault(code, value)
        i += 2 + size
    return found


def _address(value: bytes | None) -> ipaddress.IPv4Address | None:
    return ipaddress.IPv4Address(value) if value is not None and len(value) == 4 else None


def parse(data: bytes) -> Request | None:
    """A client's request, or None for anything that is not a well-formed one."""
    if len(data) < FIXED + len(MAGIC) or data[FIXED:FIXED + 4] != MAGIC:
        return None
    op, htype, hlen, _hops, xid, _secs, flags = struct.unpack_from("!BBBBIHH", data, 0)
    if op != BOOTREQUEST or htype != HTYPE_ETHER or hlen != 6:
        return None
    ciaddr, _yiaddr, _siaddr, giaddr = struct.unpack_from("!4s4s4s4s", data, 12)
    options = _options(data)
    kind = options.get(OPT_MESSAGE_TYPE, b"")
    if len(kind) != 1 or not DISCOVER <= kind[0] <= INFORM:
        return None
    return Request(kind=kind[0], xid=xid, flags=flags, ciaddr=ipaddress.IPv4Address(ciaddr),
                   giaddr=ipaddress.IPv4Address(giaddr), chaddr=bytes(data[28:44]), htype=htype, hlen=hlen,
                   requested=_address(options.get(OPT_REQUESTED_IP)),
                   server_id=_address(options.get(OPT_SERVER_ID)))


def _option(code: int, value: bytes) -> bytes:
    return bytes((code, len(value))) + value


def build(request: Request, kind: int, offer: Offer) -> bytes:
    """The reply of type KIND (OFFER, ACK or NAK) to REQUEST."""
    lease = kind in (OFFER, ACK) and request.kind != INFORM
    yiaddr = offer.address.ip if lease else ipaddress.IPv4Address(0)
    ciaddr = request.ciaddr if request.kind == INFORM else ipaddress.IPv4Address(0)
    head = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", BOOTREPLY, request.htype, request.hlen, 0, request.xid, 0,
                       request.flags, ciaddr.packed, yiaddr.packed, b"\0" * 4, request.giaddr.packed,
                       request.chaddr, b"", b"")
    options = _option(OPT_MESSAGE_TYPE, bytes((kind,))) + _option(OPT_SERVER_ID, offer.server.packed)
    if kind != NAK:
        if lease:
            seconds = offer.lease_seconds
            options += (_option(OPT_LEASE_TIME, struct.pack("!I", seconds))
                        + _option(OPT_RENEWAL, struct.pack("!I", seconds // 2))
                        + _option(OPT_REBINDING, struct.pack("!I", seconds * 7 // 8)))
        options += (_option(OPT_SUBNET_MASK, offer.address.network.netmask.packed)
                    + _option(OPT_ROUTER, offer.server.packed))
        if offer.dns:
            options += _option(OPT_DNS, b"".join(a.packed for a in offer.dns[:8]))
    packet = head + MAGIC + options + bytes((OPT_END,))
    return packet.ljust(MIN_REPLY, b"\0")


def answer(request: Request, offer: Offer) -> int | None:
    """Which reply REQUEST gets (OFFER, ACK, NAK), or None for none (RFC 2131 4.3, one address)."""
    if request.kind == DISCOVER:
        return OFFER
    if request.kind == INFORM:
        return ACK
    if request.kind != REQUEST:
        return None  # DECLINE, RELEASE: the address stays the machine's; nothing to say
    if request.server_id is not None and request.server_id != offer.server:
        return None  # SELECTING another server's offer
    wanted = request.requested or request.ciaddr
    return ACK if wanted == offer.address.ip else NAK


def destination(request: Request, kind: int) -> tuple[str, int]:
    """Where a reply goes (RFC 2131 4.1): unicast to a client that has its address (renewing,
    INFORM), else broadcast on the link (the client has no address to be reached at yet)."""
    if int(request.ciaddr) and kind != NAK:
        return str(request.ciaddr), CLIENT_PORT
    return "255.255.255.255", CLIENT_PORT


def respond(data: bytes, offer: Offer) -> tuple[bytes, tuple[str, int]] | None:
    """The reply to the datagram DATA and where to send it, or None."""
    request = parse(data)
    if request is None:
        return None
    kind = answer(request, offer)
    if kind is None:
        return None
    return build(request, kind, offer), destination(request, kind)


def host_resolvers(path: str = "/etc/resolv.conf") -> tuple[ipaddress.IPv4Address, ...]:
    """The host's IPv4 name servers a machine can reach through the masquerade: loopback ones
    (a local stub such as systemd-resolved's 127.0.0.53) are the host's own, so left out."""
    found: list[ipaddress.IPv4Address] = []
    try:
        with open(path) as f:
            lines = f.read(65536).splitlines()
    except OSError:
        return ()
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                address = ipaddress.IPv4Address(fields[1])
            except ValueError:
                continue
            if not address.is_loopback and not address.is_unspecified:
                found.append(address)
    return tuple(found[:3])
