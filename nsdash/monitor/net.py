"""Per-machine network counters (bytes and packets are not in cgroups), via pyroute2.

A machine with its own network namespace is read from the host side of its
veth link when there is one (`ve-NAME`, one netlink dump for every machine),
else from inside its namespace through /proc/LEADER/ns/net (one netlink
socket per machine, kept open: pyroute2 forks a helper to enter the
namespace, so opening is the costly part).  Counters are from the machine's
point of view: what the host side receives, the machine sent.  A machine that
shares the host's network has no counters of its own (None).
"""

from __future__ import annotations

import os

from nsdash.system import cgroupfs
from nsdash.system.frozen import Frozen

TYPE_CHECKING = False  # mypy reads this as True; typing stays unimported at run time (cgtop)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

IFNAMSIZ = 15  # usable characters of a link name


class NetCounters(Frozen):
    """Cumulative counters summed over a machine's links (loopback excluded)."""

    rx_bytes: int
    tx_bytes: int
    rx_packets: int
    tx_packets: int


def veth_name(machine: str) -> str:
    """The host-side link name systemd-nspawn and nsdash give a machine: 've-' + name, cut to 15."""
    return ("ve-" + machine)[:IFNAMSIZ]


def _stats(link: Any) -> tuple[int, int, int, int] | None:
    stats = link.get_attr("IFLA_STATS64") or link.get_attr("IFLA_STATS")
    if not stats:
        return None
    return stats["rx_bytes"], stats["tx_bytes"], stats["rx_packets"], stats["tx_packets"]


def sum_links(links: list[Any], swap: bool = False) -> NetCounters | None:
    """Sum the non-loopback links' counters; SWAP turns host-side figures into the machine's view."""
    total = [0, 0, 0, 0]
    found = False
    for link in links:
        if link.get_attr("IFLA_IFNAME") == "lo":
            continue
        s = _stats(link)
        if s is None:
            continue
        found = True
        for i, v in enumerate(s):
            total[i] += v
    if not found:
        return None
    rx, tx, rxp, txp = total
    return NetCounters(tx, rx, txp, rxp) if swap else NetCounters(rx, tx, rxp, txp)


def _netns_inode(pid: int | str, proc: str = "/proc") -> int | None:
    try:
        return os.stat(f"{proc}/{pid}/ns/net").st_ino
    except OSError:
        return None


class NetSampler:
    """Reads every machine's network counters; keep one and call sample() each refresh."""

    def __init__(self, proc: str = "/proc") -> None:
        self.proc = proc
        self._inside: dict[tuple[str, int], Any] = {}  # (machine, netns inode) -> IPRoute

    def sample(self, leaders: Mapping[str, int]) -> dict[str, NetCounters | None]:
        """Machine name -> counters, for machines given as name -> a PID inside them."""
        from pyroute2 import IPRoute

        from nsdash.machines import identity  # here: cgtop -b imports this module, not always this call

        result: dict[str, NetCounters | None] = {}
        with IPRoute() as host:
            by_name = {link.get_attr("IFLA_IFNAME"): link for link in host.get_links()}
        wanted: set[tuple[str, int]] = set()
        for name, pid in leaders.items():
            ns = _netns_inode(pid, self.proc)
            if ns is None or identity.shares_host_namespace(pid, "net", self.proc) is not False:
                result[name] = None  # gone, or shares the host's network
                continue
            veth = by_name.get(veth_name(name))
            if veth is not None:
                result[name] = sum_links([veth], swap=True)
                continue
            key = (name, ns)
            wanted.add(key)
            result[name] = self._read_inside(key, pid)
        for key in [k for k in self._inside if k not in wanted]:
            self._inside.pop(key).close()
        return result

    def _read_inside(self, key: tuple[str, int], pid: int) -> NetCounters | None:
        from pyroute2 import IPRoute

        ipr = self._inside.get(key)
        try:
            if ipr is None:
                ipr = IPRoute(netns=f"{self.proc}/{pid}/ns/net")
                self._inside[key] = ipr
            return sum_links(list(ipr.get_links()))
        except OSError:
            return None

    def close(self) -> None:
        for ipr in self._inside.values():
            ipr.close()
        self._inside.clear()

    def __enter__(self) -> NetSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def link_counters(leader: int, proc: str = "/proc") -> dict[str, NetCounters]:
    """Each link of a machine's own network namespace -> its counters, from the machine's
    point of view (/proc/LEADER/net/dev: one read, no netlink); loopback left out.  Empty
    for a machine that shares the host's network or is gone.  The names are the guest's
    (any byte but '/', ':' and blanks): escape them before showing them."""
    from nsdash.system.namespaces import shares_host_namespace
    from nsdash.system.netlink import netns_counters

    if shares_host_namespace(leader, "net", proc) is not False:
        return {}
    try:
        links = netns_counters(leader, proc)
    except (OSError, ValueError):
        return {}
    return {name: NetCounters(c.rx_bytes, c.tx_bytes, c.rx_packets, c.tx_packets)
            for name, c in links.items() if name != "lo"}


def leaders_from_cgroups(machine_cgroups: Mapping[str, str], mount: str) -> dict[str, int]:
    """Machine name -> the lowest PID found in its cgroup subtree (its init, usually)."""
    leaders: dict[str, int] = {}
    for name, cgroup in machine_cgroups.items():
        best: int | None = None
        for dirpath in cgroupfs.subtree(mount + cgroup):  # no recursion: a guest nests its cgroups at will
            try:
                with open(os.path.join(dirpath, "cgroup.procs"), "rb") as f:
                    pids = [int(x) for x in f.read().split()]
            except OSError:
                continue
            if pids:
                low = min(pids)
                best = low if best is None else min(best, low)
        if best is not None:
            leaders[name] = best
    return leaders
