"""Network links for containers: small, policy-free helpers.

veth pairs, moves, renames and deletions go through pyroute2 (imported only
when one of them runs: it costs ~0.1 s, which a spawn without -n must not
pay).  Two things need no netlink at all and stay cheap: bringing a
namespace's loopback up (one ioctl on a socket made inside it) and reading
link counters (/proc/PID/net/dev shows the counters of PID's namespace).

A network namespace is named by a PID living in it.  Netlink sockets are
opened inside it by switching only the calling thread into the namespace for
the socket's creation, then back: a socket keeps the namespace it was made
in, and no helper process is forked (pyroute2's NetNS forks one).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from nsdash.system.syscalls import CLONE_NEWNET, setns

TYPE_CHECKING = False  # typing costs ~3 ms to import; mypy reads this as True
if TYPE_CHECKING:
    from typing import Any

    from pyroute2 import IPRoute

IFNAMSIZ = 16
HOST_PEER_PREFIX = "ve-"
CONTAINER_IFNAME = "host0"

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

# systemd's SHORTEN_IFNAME_HASH_KEY (src/nspawn/nspawn-network.c)
_SHORTEN_IFNAME_HASH_KEY = bytes.fromhex("e190a404a8ef4b518cccc33a9f11fca2")
_URLSAFE_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


# --- names (pure) ------------------------------------------------------------

def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & 0xFFFFFFFFFFFFFFFF


def siphash24(data: bytes, key: bytes) -> int:
    """SipHash-2-4 with a 16-byte key, as systemd's siphash24()."""
    k0, k1 = struct.unpack("<QQ", key)
    v0, v1 = k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D
    v2, v3 = k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573
    mask = 0xFFFFFFFFFFFFFFFF

    def rounds(n: int) -> None:
        nonlocal v0, v1, v2, v3
        for _ in range(n):
            v0 = (v0 + v1) & mask
            v1 = _rotl(v1, 13) ^ v0
            v0 = _rotl(v0, 32)
            v2 = (v2 + v3) & mask
            v3 = _rotl(v3, 16) ^ v2
            v0 = (v0 + v3) & mask
            v3 = _rotl(v3, 21) ^ v0
            v2 = (v2 + v1) & mask
            v1 = _rotl(v1, 17) ^ v2
            v2 = _rotl(v2, 32)

    tail_len = len(data) % 8
    for (m,) in struct.iter_unpack("<Q", data[: len(data) - tail_len]):
        v3 ^= m
        rounds(2)
        v0 ^= m
    last = (len(data) & 0xFF) << 56 | int.from_bytes(data[len(data) - tail_len:], "little")
    v3 ^= last
    rounds(2)
    v0 ^= last
    v2 ^= 0xFF
    rounds(4)
    return v0 ^ v1 ^ v2 ^ v3


def shorten_ifname(name: str) -> str:
    """systemd-nspawn's rule for names over 15 bytes (naming scheme v247+):
    keep the first 11 bytes and append 4 URL-safe base64 characters of the
    low 24 bits of siphash24(name) under nspawn's fixed key."""
    raw = name.encode()
    if len(raw) < IFNAMSIZ:
        return name
    h = siphash24(raw, _SHORTEN_IFNAME_HASH_KEY)
    suffix = "".join(_URLSAFE_B64[(h >> shift) & 63] for shift in (18, 12, 6, 0))
    return raw[: IFNAMSIZ - 5].decode(errors="ignore") + suffix


def veth_host_name(machine: str, prefix: str = HOST_PEER_PREFIX) -> str:
    """The host side of -n/--network-veth: ve-MACHINE (vb- with a bridge or zone), shortened as nspawn does."""
    return shorten_ifname(prefix + machine)


def veth_altname(machine: str, prefix: str = HOST_PEER_PREFIX) -> str | None:
    """The full ve-MACHINE, set as an alternative name when the main one was shortened."""
    full = prefix + machine
    return full if shorten_ifname(full) != full else None


# --- counters (no netlink) ---------------------------------------------------

@dataclass(frozen=True)
class LinkCounters:
    rx_bytes: int
    rx_packets: int
    tx_bytes: int
    tx_packets: int


def parse_net_dev(text: str) -> dict[str, LinkCounters]:
    """/proc/net/dev's table: name -> counters."""
    result: dict[str, LinkCounters] = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        fields = rest.split()
        if not sep or len(fields) < 10:
            continue
        result[name.strip()] = LinkCounters(int(fields[0]), int(fields[1]), int(fields[8]), int(fields[9]))
    return result


def netns_counters(pid: int, proc: str = "/proc") -> dict[str, LinkCounters]:
    """Counters of every link in the network namespace PID lives in."""
    with open(f"{proc}/{pid}/net/dev", errors="surrogateescape") as f:  # a guest names its links with any bytes
        return parse_net_dev(f.read())


def host_link_counters(name: str, sys_class_net: str = "/sys/class/net") -> LinkCounters | None:
    """Counters of one link of the host (this process's namespace), None if it is gone."""
    base = f"{sys_class_net}/{name}/statistics"
    values = []
    try:
        for field in ("rx_bytes", "rx_packets", "tx_bytes", "tx_packets"):
            with open(f"{base}/{field}") as f:
                values.append(int(f.read()))
    except FileNotFoundError:
        return None
    return LinkCounters(*values)


# --- namespaces --------------------------------------------------------------

@contextlib.contextmanager
def _thread_in_netns(pid: int | None, fd: int | None = None) -> Iterator[None]:
    """Run the body with this thread in PID's network namespace, or the one FD refers to
    (an open /proc/PID/ns/net, which keeps a namespace alive after its processes died);
    neither: stay."""
    if pid is None and fd is None:
        yield
        return
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = fd if fd is not None else os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(target, CLONE_NEWNET)
        finally:
            if fd is None:
                os.close(target)
        try:
            yield
        finally:
            setns(own, CLONE_NEWNET)
    finally:
        os.close(own)


@contextlib.contextmanager
def ipr(pid: int | None = None, fd: int | None = None) -> Iterator[IPRoute]:
    """A pyroute2 IPRoute whose socket lives in PID's (or FD's) network namespace."""
    from pyroute2 import IPRoute

    with _thread_in_netns(pid, fd):
        handle = IPRoute()
    try:
        yield handle
    finally:
        handle.close()


def loopback_up(pid: int | None = None) -> None:
    """Bring 'lo' up in PID's network namespace (what --private-network needs)."""
    import socket

    with _thread_in_netns(pid):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    with sock:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, req))[1]
        if not flags & IFF_UP:
            fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def _index(handle: Any, name: str) -> int:
    found = handle.link_lookup(ifname=name)
    if not found:
        raise FileNotFoundError(f"no network link named {name}")
    return int(found[0])


def create_veth(host_name: str, peer_name: str = CONTAINER_IFNAME, peer_pid: int | None = None,
                altname: str | None = None) -> int:
    """Create the pair HOST_NAME <-> PEER_NAME; with PEER_PID the peer is created
    directly in that process's network namespace (as nspawn does).  Returns the
    host side's ifindex."""
    peer: dict[str, Any] = {"ifname": peer_name}
    if peer_pid is not None:
        peer["net_ns_pid"] = peer_pid
    with ipr() as h:
        h.link("add", ifname=host_name, kind="veth", peer=peer)
        index = _index(h, host_name)
        if altname:
            with contextlib.suppress(Exception):  # older kernels lack altnames; the name still works
                h.link("property_add", index=index, altname=altname)
        return index


def move_link(name: str, pid: int, from_pid: int | None = None) -> None:
    """Move link NAME (in FROM_PID's namespace, default ours) into PID's namespace."""
    with ipr(from_pid) as h:
        h.link("set", index=_index(h, name), net_ns_pid=pid)


def rename_link(name: str, new_name: str, pid: int | None = None) -> None:
    """Rename a link (it must be down)."""
    with ipr(pid) as h:
        h.link("set", index=_index(h, name), ifname=new_name)


def set_master(name: str, master: str) -> None:
    """Enslave link NAME to bridge MASTER (ip link set NAME master MASTER)."""
    with ipr() as h:
        h.link("set", index=_index(h, name), master=_index(h, master))


def join_bridge(name: str, master: str) -> None:
    """Enslave link NAME to bridge MASTER and set it up in one message (nspawn's join_bridge):
    a daemon watching the bridge (networkd) sees one change, not two."""
    with ipr() as h:
        h.link("set", index=_index(h, name), master=_index(h, master), state="up")


def set_link_up(name: str, pid: int | None = None) -> None:
    with ipr(pid) as h:
        h.link("set", index=_index(h, name), state="up")


def link_exists(name: str, pid: int | None = None) -> bool:
    if pid is None:
        return os.path.exists(f"/sys/class/net/{name}")
    return name in netns_counters(pid)


def delete_link(name: str, pid: int | None = None) -> bool:
    """Delete link NAME (a veth takes its peer with it); False if it was already gone."""
    from pyroute2.netlink.exceptions import NetlinkError

    with ipr(pid) as h:
        found = h.link_lookup(ifname=name)
        if not found:
            return False
        try:
            h.link("del", index=found[0])
        except NetlinkError as e:
            if e.code == 19:  # ENODEV: gone meanwhile (its peer's namespace died)
                return False
            raise
        return True


IFA_F_NODAD = 0x02


def add_address(name: str, address: str, pid: int | None = None) -> None:
    """Give link NAME the address ADDRESS ("10.0.0.1/30", "fd00::1/64"; an IPv6 one without
    duplicate address detection, so it is usable at once: nsdash chose it for this link)."""
    import socket

    ip, _, prefix = address.partition("/")
    v6 = ":" in ip
    with ipr(pid) as h:
        h.addr("add", index=_index(h, name), address=ip, prefixlen=int(prefix),
               family=socket.AF_INET6 if v6 else socket.AF_INET, **({"flags": IFA_F_NODAD} if v6 else {}))


def add_default_route(gateway: str, pid: int | None = None) -> None:
    """A default route via GATEWAY (which a link's address must already reach), IPv4 or IPv6."""
    import socket

    v6 = ":" in gateway
    with ipr(pid) as h:
        h.route("add", dst="::/0" if v6 else "0.0.0.0/0", gateway=gateway,
                family=socket.AF_INET6 if v6 else socket.AF_INET)


def create_bridge(name: str) -> None:
    with ipr() as h:
        h.link("add", ifname=name, kind="bridge")


def is_bridge(name: str) -> bool:
    return os.path.isdir(f"/sys/class/net/{name}/bridge")


def create_vlan_link(kind: str, parent: str, name: str, pid: int) -> None:
    """A macvlan (bridge mode) or ipvlan (L2) link NAME on host link PARENT, made directly in
    PID's network namespace (as nspawn's --network-macvlan/--network-ipvlan)."""
    mode: dict[str, Any] = {"macvlan_mode": "bridge"} if kind == "macvlan" else {"ipvlan_mode": 0}
    with ipr() as h:
        h.link("add", ifname=name, kind=kind, link=_index(h, parent), net_ns_pid=pid, **mode)


def give_back(name: str, netns_fd: int) -> None:
    """Move link NAME out of the namespace NETNS_FD refers to, back into ours."""
    with ipr(fd=netns_fd) as h:
        h.link("set", index=_index(h, name), net_ns_pid=os.getpid())
