"""What makes -n usable on its own: an address pool, masquerade and port forwards.

systemd-nspawn only makes the veth pair; systemd-networkd on both sides then
serves DHCP and masquerades.  Most hosts and guests here run no networkd, so
nsdash does that part itself, unless networkd runs on the host (then the ve-
side is left to it, as nspawn does):

- a /30 per machine from a private pool (POOL), skipping blocks that overlap
  any route of the host; the host side gets .1, host0 gets .2 and a default
  route via .1.  A lease is a file under the state directory naming its
  machine, taken under an exclusive lock so concurrent spawns never share one;
- nftables rules in the tables nsdash owns (`ip nsdash`, `ip6 nsdash`): a masquerade for the
  machine's block and DNAT rules for --port, each carrying the comment
  `nsdash:MACHINE` so removal (also the orphan clean-up after a supervisor
  SIGKILL) finds them by machine; the table goes with its last rule;
- IPv6: a ULA /64 per lease, derived from the block (ula_prefix, prefix6_of),
  so the v4 lease stays the one record; ::1 on the host side, ::2 on host0;
- where a booted guest enables systemd-networkd, host0 is left to it and the
  supervisor answers its DHCP (launcher/dhcp.py, dhcp_server.py).

nftables is driven through the `nft` command (Debian's nftables package) with
a text script on stdin: the venv cannot import Debian's python3-nftables
binding, pyroute2's nftables support is partial (no NAT statements), and one
`nft -f -` applies a whole change atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nsdash.errors import NsdashError
from nsdash.system import paths
from nsdash.system.kernfiles import read_value

POOL = ipaddress.IPv4Network("10.229.0.0/16")  # $NSDASH_NET_POOL names another (a host already using 10.229)
BLOCK = 30
TABLE = "nsdash"  # family ip
LOCK = "/run/lock/nsdash-network.lock"
PROTOCOLS = ("tcp", "udp")


# --- ports (pure) --------------------------------------------------------------

@dataclass(frozen=True)
class PortForward:
    protocol: str
    host_port: int
    container_port: int

    def __str__(self) -> str:
        return f"{self.protocol}:{self.host_port}:{self.container_port}"


def _port_number(text: str, whole: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"invalid port '{text}' in '{whole}' (1-65535)")
    return int(text)


def parse_port(value: str) -> PortForward:
    """--port's [PROTOCOL:]HOSTPORT[:CONTAINERPORT] (nspawn's expose_port_parse)."""
    protocol, rest = "tcp", value
    head, sep, tail = value.partition(":")
    if sep and head in PROTOCOLS:
        protocol, rest = head, tail
    elif sep and not head.isdigit():
        raise ValueError(f"unknown protocol '{head}' in '{value}' (tcp or udp)")
    host, colon, container = rest.partition(":")
    host_port = _port_number(host, value)
    return PortForward(protocol, host_port, _port_number(container, value) if colon else host_port)


# --- networkd ------------------------------------------------------------------

def networkd_active(run: str = "/run/systemd/netif", proc: str = "/proc") -> bool:
    """Whether systemd-networkd runs on the host (its state file exists and the daemon lives)."""
    if not os.path.exists(f"{run}/state"):
        return False
    for pid in os.listdir(proc):
        if pid.isdigit() and read_value(f"{proc}/{pid}/comm") == "systemd-network":
            return True
    return False


def guest_networkd(tree: str) -> bool:
    """Whether TREE enables systemd-networkd (the guest then asks for host0's address by DHCP,
    as under nspawn); read confined, as the tree is the guest's."""
    from nsdash.system import confined

    for wants, unit in (("multi-user.target.wants", "systemd-networkd.service"),
                        ("sockets.target.wants", "systemd-networkd.socket")):
        with contextlib.suppress(OSError):
            if unit in confined.list_dir(tree, f"etc/systemd/system/{wants}"):
                return True
    return False


# --- the pool ------------------------------------------------------------------

@dataclass(frozen=True)
class Lease:
    machine: str
    block: ipaddress.IPv4Network

    @property
    def host(self) -> ipaddress.IPv4Interface:
        """The host side's address (for a zone: its bridge's)."""
        return ipaddress.IPv4Interface(f"{self.block.network_address + 1}/{self.block.prefixlen}")

    @property
    def guest(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(f"{self.block.network_address + 2}/{self.block.prefixlen}")

    @property
    def prefix6(self) -> ipaddress.IPv6Network:
        return prefix6_of(self.block)

    @property
    def host6(self) -> ipaddress.IPv6Interface:
        return ipaddress.IPv6Interface(f"{self.prefix6.network_address + 1}/64")

    @property
    def guest6(self) -> ipaddress.IPv6Interface:
        return ipaddress.IPv6Interface(f"{self.prefix6.network_address + 2}/64")


def network_dir() -> Path:
    return paths.state_root() / "network"


def _leases_dir() -> Path:
    return network_dir() / "leases"


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Exclusive hold on the pool and nsdash's nft table (across processes).  One lock for the
    whole host, not per state directory: the table, the routes and the kernel are shared, and
    a block leased under another state directory shows as a host route once it is configured,
    which allocate() checks under this lock."""
    os.makedirs(os.path.dirname(LOCK), exist_ok=True)
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def host_routes(path: str = "/proc/net/route") -> list[ipaddress.IPv4Network]:
    """The host's IPv4 routes (the default route left out): blocks that must not be used."""
    found = []
    with open(path) as f:
        for line in f.read().splitlines()[1:]:
            fields = line.split()
            if len(fields) < 8:
                continue
            dest = ipaddress.IPv4Address(socket.ntohl(int(fields[1], 16)))
            mask = ipaddress.IPv4Address(socket.ntohl(int(fields[7], 16)))
            if int(mask):
                found.append(ipaddress.IPv4Network(f"{dest}/{mask}", strict=False))
    return found


def leases() -> list[Lease]:
    result = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(_leases_dir()):
            with contextlib.suppress(OSError, ValueError):
                block = ipaddress.IPv4Network(entry.name.replace("_", "/"))
                result.append(Lease(Path(entry.path).read_text().strip(), block))
    return result


def lease_of(machine: str) -> Lease | None:
    return next((lease for lease in leases() if lease.machine == machine), None)


def _write_lease(owner: str, block: ipaddress.IPv4Network) -> Lease:
    _leases_dir().mkdir(parents=True, exist_ok=True, mode=0o700)
    (_leases_dir() / str(block).replace("/", "_")).write_text(owner + "\n")
    return Lease(owner, block)


def configured_pool() -> ipaddress.IPv4Network:
    """The pool: $NSDASH_NET_POOL (a private IPv4 network) or POOL."""
    text = os.environ.get("NSDASH_NET_POOL")
    if not text:
        return POOL
    try:
        network = ipaddress.IPv4Network(text)
    except ValueError:
        network = None
    if network is None or not network.is_private or network.prefixlen > BLOCK:
        raise NsdashError(f"NSDASH_NET_POOL={text} is not a private IPv4 network of /{BLOCK} or larger",
                          "e.g. NSDASH_NET_POOL=10.229.0.0/16")
    return network


def allocate(machine: str, pool: ipaddress.IPv4Network | None = None, prefix: int = BLOCK) -> Lease:
    """Take a free block for MACHINE (or a zone's "zone:NAME"); call under locked()."""
    pool = pool or configured_pool()
    taken = [lease.block for lease in leases()]
    avoid = host_routes() + taken
    for block in pool.subnets(new_prefix=prefix):
        if not any(block.overlaps(used) for used in avoid):
            return _write_lease(machine, block)
    raise NsdashError(f"the address pool {pool} is exhausted (every /{prefix} is leased or routed)",
                      "stop a machine with -n, or remove stale leases under " + str(_leases_dir()))


# --- IPv6: a ULA /64 per lease, derived, so the v4 lease is the only record ---------

def ula_prefix(machine_id: str = "/etc/machine-id") -> ipaddress.IPv6Network:
    """This host's /48 of fd00::/8 (RFC 4193's "locally assigned"): 40 bits of a hash of the
    host's machine ID (its host name without one), so hosts differ and a host keeps its
    prefix; $NSDASH_NET_POOL6 names another /48 of fd00::/8."""
    text = os.environ.get("NSDASH_NET_POOL6")
    if text:
        try:
            network = ipaddress.IPv6Network(text)
        except ValueError:
            network = None
        if network is None or network.prefixlen != 48 or not network.subnet_of(ipaddress.IPv6Network("fd00::/8")):
            raise NsdashError(f"NSDASH_NET_POOL6={text} is not a /48 of fd00::/8", "e.g. NSDASH_NET_POOL6=fd42:1:2::/48")
        return network
    try:
        with open(machine_id, "rb") as f:
            seed = f.read(64).strip()
    except OSError:
        seed = b""
    seed = seed or socket.gethostname().encode()
    digest = hashlib.sha256(b"nsdash ULA " + seed).digest()
    return ipaddress.IPv6Network((b"\xfd" + digest[:5] + bytes(10), 48))


def prefix6_of(block: ipaddress.IPv4Network) -> ipaddress.IPv6Network:
    """The /64 that goes with a v4 block: its subnet ID is the block's address over 4 (unique
    for every /30 of a pool of /14 or smaller, as 10.229.0.0/16 is)."""
    subnet = (int(block.network_address) >> 2) & 0xFFFF
    return ipaddress.IPv6Network((int(ula_prefix().network_address) | subnet << 64, 64))


def member6(zone: Lease, member: Lease) -> ipaddress.IPv6Interface:
    """A zone member's v6 address: at the same offset in the zone's /64 as its v4 one in the /28."""
    offset = int(member.block.network_address) - int(zone.block.network_address)
    return ipaddress.IPv6Interface(f"{zone.prefix6.network_address + offset}/64")


# --- zones ---------------------------------------------------------------------

ZONE_BLOCK = 28  # the bridge's .1 and 13 machines
ZONE_PREFIX = "vz-"


def zone_owner(zone: str) -> str:
    return "zone:" + zone


def zone_member(machine: str, zone: Lease) -> Lease:
    """One address of ZONE's block for MACHINE, as a /32 lease (call under locked())."""
    taken = {lease.block.network_address for lease in leases() if lease.block.prefixlen == 32}
    for address in list(zone.block.hosts())[1:]:
        if address not in taken:
            return _write_lease(machine, ipaddress.IPv4Network(f"{address}/32"))
    raise NsdashError(f"zone {zone.machine[5:]} is full ({zone.block} has no free address)",
                      "use another --network-zone")


def idle_zones() -> list[Lease]:
    """Zones none of whose addresses is leased to a machine any more."""
    all_leases = leases()
    return [zone for zone in all_leases if zone.machine.startswith("zone:")
            and not any(m.block.prefixlen == 32 and m.block.subnet_of(zone.block) for m in all_leases)]


def release(machine: str) -> list[str]:
    """Give MACHINE's blocks back (call under locked()); returns them."""
    done = []
    for lease in leases():
        if lease.machine == machine:
            with contextlib.suppress(FileNotFoundError):
                (_leases_dir() / str(lease.block).replace("/", "_")).unlink()
            done.append(str(lease.block))
    return done


# --- nftables ------------------------------------------------------------------

_nft_state: list[str | None] = []  # nft_problem()'s answer, once per process


def nft_problem() -> str | None:
    """Why nsdash cannot use nftables here (None: it can): no `nft` on $PATH, or a kernel
    without nf_tables (nft's own probe fails).  Asked once per process."""
    if not _nft_state:
        found = shutil.which("nft")
        if found is None:
            _nft_state.append("'nft' is not installed (nftables)")
        else:
            done = subprocess.run([found, "list", "tables"], capture_output=True, text=True, check=False)
            why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            _nft_state.append(f"nft cannot use the kernel's nf_tables ({why})" if done.returncode else None)
    return _nft_state[0]


def nft_available() -> bool:
    return nft_problem() is None


def _nft_binary() -> str:
    found = shutil.which("nft")
    if found is None or nft_problem() is not None:
        raise NsdashError(f"nsdash's forwarding rules need nftables, and {nft_problem()}",
                          "apt-get install nftables (and a kernel with nf_tables)")
    return found


def nft(script: str) -> None:
    """Apply SCRIPT atomically."""
    done = subprocess.run([_nft_binary(), "-f", "-"], input=script, capture_output=True, text=True, check=False)
    if done.returncode:
        raise NsdashError(f"nft refused nsdash's rules: {done.stderr.strip().splitlines()[-1:] or done.returncode}")


FAMILIES = ("ip", "ip6")  # a table named TABLE in each: v4 masquerade and --port; v6 masquerade


def nft_rules() -> list[dict[str, Any]]:
    """The rules of nsdash's tables, both families ([] when there are none); each names its
    "family", "chain", "handle" and "comment"."""
    found = []
    for family in FAMILIES:
        done = subprocess.run([_nft_binary(), "-j", "-a", "list", "table", family, TABLE],
                              capture_output=True, text=True, check=False)
        if done.returncode:
            continue
        items = json.loads(done.stdout).get("nftables", [])
        found += [item["rule"] for item in items if "rule" in item]
    return found


def tag(machine: str) -> str:
    return f"nsdash:{machine}"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "").replace('"', "") + '"'


def forwarded_ports() -> dict[tuple[str, int], str]:
    """(protocol, host port) -> the machine whose DNAT rule holds it."""
    held: dict[tuple[str, int], str] = {}
    for rule in nft_rules():
        comment = str(rule.get("comment", ""))
        if rule.get("chain") != "prerouting" or not comment.startswith("nsdash:"):
            continue
        for expr in rule.get("expr", []):
            match = expr.get("match") if isinstance(expr, dict) else None
            if match and isinstance(match.get("left"), dict) and "payload" in match["left"]:
                payload = match["left"]["payload"]
                if payload.get("field") == "dport":
                    held[(payload.get("protocol"), int(match["right"]))] = comment[7:]
    return held


def _listening(port: PortForward) -> bool:
    """Whether a host socket is bound to PORT's host port (IPv4 or IPv6)."""
    for table in (f"/proc/net/{port.protocol}", f"/proc/net/{port.protocol}6"):
        with contextlib.suppress(FileNotFoundError), open(table) as f:
            for line in f.read().splitlines()[1:]:
                fields = line.split()
                state_ok = port.protocol == "udp" or fields[3] == "0A"  # 0A: LISTEN
                if state_ok and int(fields[1].rsplit(":", 1)[1], 16) == port.host_port:
                    return True
    return False


def check_ports(machine: str, ports: list[PortForward]) -> None:
    """Refuse a host port held by a listening socket or by another machine's forward (under locked())."""
    if not ports:
        return
    held = forwarded_ports()
    for port in ports:
        owner = held.get((port.protocol, port.host_port))
        if owner is not None:
            raise NsdashError(f"--port {port}: host port {port.host_port}/{port.protocol} is already "
                              f"forwarded to machine '{owner}'", "pick another host port")
        if _listening(port):
            raise NsdashError(f"--port {port}: host port {port.host_port}/{port.protocol} is in use on the host",
                              "pick another host port")


def _chains(family: str) -> list[str]:
    return [f"add table {family} {TABLE}",
            f"add chain {family} {TABLE} postrouting {{ type nat hook postrouting priority srcnat; }}",
            f"add chain {family} {TABLE} prerouting {{ type nat hook prerouting priority dstnat; }}",
            f"add chain {family} {TABLE} output {{ type nat hook output priority -100; }}"]


def add_rules(owner: str, masquerade: tuple[ipaddress.IPv4Network, str] | None,
              ports: list[PortForward], guest: ipaddress.IPv4Address | None = None,
              masquerade6: tuple[ipaddress.IPv6Network, str] | None = None,
              guest6: ipaddress.IPv6Address | None = None) -> None:
    """Masquerade a (block, link) pair's block leaving by any other link (and MASQUERADE6's
    v6 prefix, in the ip6 table), and forward PORTS to GUEST (and to GUEST6 over IPv6);
    every rule commented with OWNER's tag (call under locked())."""
    comment = _quote(tag(owner))
    lines = _chains("ip")
    if masquerade is not None:
        block, ifname = masquerade
        lines.append(f"add rule ip {TABLE} postrouting ip saddr {block} oifname != {_quote(ifname)} masquerade "
                     f"comment {comment}")
    forwards = [("ip", "127.0.0.0/8", f"{guest}")] + ([("ip6", "::1", f"[{guest6}]")] if guest6 else [])
    if masquerade6 is not None or guest6 is not None:
        lines += _chains("ip6")
    for port in ports:
        for family, loopback, address in forwards:
            # The output chain: connections from the host itself, except over loopback (a
            # DNAT from lo would need route_localnet).
            to = f"dnat to {address}:{port.container_port}"
            lines.append(f"add rule {family} {TABLE} prerouting fib daddr type local {port.protocol} "
                         f"dport {port.host_port} {to} comment {comment}")
            lines.append(f"add rule {family} {TABLE} output fib daddr type local {family} daddr != {loopback} "
                         f"{port.protocol} dport {port.host_port} {to} comment {comment}")
    if masquerade6 is not None:
        prefix, ifname = masquerade6
        lines.append(f"add rule ip6 {TABLE} postrouting ip6 saddr {prefix} oifname != {_quote(ifname)} masquerade "
                     f"comment {comment}")
    nft("\n".join(lines) + "\n")


def remove_rules(machine: str) -> int:
    """Delete MACHINE's rules, and a table with its last rule (under locked()); how many went."""
    rules = nft_rules()
    script = []
    for family in FAMILIES:
        theirs = [r for r in rules if r.get("family") == family]
        mine = [r for r in theirs if r.get("comment") == tag(machine)]
        if len(mine) == len(theirs) and (theirs or _table_exists(family)):
            script.append(f"delete table {family} {TABLE}")
        else:
            script += [f"delete rule {family} {TABLE} {r['chain']} handle {r['handle']}" for r in mine]
    if script:
        nft("\n".join(script) + "\n")
    return sum(1 for r in rules if r.get("comment") == tag(machine))


def _table_exists(family: str) -> bool:
    done = subprocess.run([_nft_binary(), "list", "table", family, TABLE], capture_output=True, check=False)
    return done.returncode == 0


def enable_forwarding() -> None:
    """Routing between the machine and the outside needs IPv4 forwarding on (as networkd's IPMasquerade= does)."""
    _set_sysctl("/proc/sys/net/ipv4/ip_forward", "1")


def enable_forwarding6(conf: str = "/proc/sys/net/ipv6/conf") -> None:
    """IPv6 forwarding on, for the v6 masquerade.  It is host-wide, and a link that learns its
    routes from router advertisements (accept_ra=1) stops doing so once the host forwards:
    such links are first moved to accept_ra=2 (accept them anyway), so the host keeps its
    own IPv6 routes."""
    if read_value(f"{conf}/all/forwarding") == "1":
        return
    for link in sorted(os.listdir(conf)):
        if link not in ("all", "default") and read_value(f"{conf}/{link}/accept_ra") == "1":
            with contextlib.suppress(OSError):
                _set_sysctl(f"{conf}/{link}/accept_ra", "2")
    _set_sysctl(f"{conf}/all/forwarding", "1")


def _set_sysctl(path: str, value: str) -> None:
    if read_value(path) != value:
        with open(path, "w") as f:
            f.write(value + "\n")


def ipv6_available() -> bool:
    """Whether this host has IPv6 (a kernel booted with ipv6.disable=1 has no conf tree)."""
    return os.path.isdir("/proc/sys/net/ipv6/conf/all")


def forget(machine: str) -> list[str]:
    """Everything nsdash's networking holds for MACHINE goes: its leases and rules, and a
    zone's bridge with its last machine."""
    from nsdash.system import netlink

    done = []
    nft_here = nft_available()
    with locked():
        for block in release(machine):
            done.append(f"released {block}")
        if nft_here:
            count = remove_rules(machine)
            if count:
                done.append(f"removed {count} nft rule(s)")
        for zone in idle_zones():
            name = zone.machine[5:]
            bridge = ZONE_PREFIX + name
            if netlink.link_exists(bridge) and netlink.delete_link(bridge):
                done.append(f"removed zone bridge {bridge}")
            if nft_here:
                remove_rules(zone.machine)
            release(zone.machine)
        if networkd_active():
            done += [f"removed zone bridge {b}" for b in _drop_empty_networkd_zones() if netlink.delete_link(b)]
    return done


def join_networkd_zone(zone: str, link: str) -> None:
    """Put LINK in ZONE's bridge vz-ZONE, made (without an address) if missing, as nspawn does
    where networkd runs: networkd's 80-container-vz.network addresses the bridge and serves
    DHCP on it, so nsdash takes no lease (call under locked())."""
    from nsdash.system import netlink

    bridge = ZONE_PREFIX + zone
    if not netlink.is_bridge(bridge):
        netlink.create_bridge(bridge)
    netlink.join_bridge(link, bridge)


def _drop_empty_networkd_zones(sys_net: str = "/sys/class/net") -> list[str]:
    """Zone bridges that hold no link and no lease of nsdash's: a networkd zone's bridge
    goes with its last machine, as nspawn's remove_bridge() does (call under locked())."""
    leased = {ZONE_PREFIX + lease.machine[5:] for lease in leases() if lease.machine.startswith("zone:")}
    empty = []
    with contextlib.suppress(FileNotFoundError):
        for name in sorted(os.listdir(sys_net)):
            if name.startswith(ZONE_PREFIX) and name not in leased:
                with contextlib.suppress(FileNotFoundError):
                    if not os.listdir(f"{sys_net}/{name}/brif"):
                        empty.append(name)
    return empty


def join_zone(zone: str) -> Lease:
    """ZONE's block, with its bridge vz-ZONE made, addressed and masqueraded on first use
    (call under locked())."""
    from nsdash.system import netlink

    owner = zone_owner(zone)
    bridge = ZONE_PREFIX + zone
    lease = next((z for z in leases() if z.machine == owner), None)
    if lease is None:
        lease = allocate(owner, prefix=ZONE_BLOCK)
    if not netlink.link_exists(bridge):
        netlink.create_bridge(bridge)
        netlink.add_address(bridge, str(lease.host))
        v6 = ipv6_available()
        if v6:
            netlink.add_address(bridge, str(lease.host6))
        netlink.set_link_up(bridge)
        if nft_available():
            enable_forwarding()
            if v6:
                enable_forwarding6()
            add_rules(owner, (lease.block, bridge), [], masquerade6=(lease.prefix6, bridge) if v6 else None)
    return lease
