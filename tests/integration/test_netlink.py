"""Netlink helpers against real network namespaces (root).

Each test makes a throwaway namespace named after the session-tagged machine
name (`ip netns add`), with a sleeper inside to name it by PID, and removes
both at the end; the leak check proves no ve-* link outlives a test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nsdash.system import netlink

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def _ns_pid(ns: str) -> int:
    return int(subprocess.check_output(["ip", "netns", "pids", ns], text=True).split()[0])


@pytest.fixture
def netns(machine_name) -> Iterator[int]:
    """A fresh network namespace; yields the PID of a sleeper living in it."""
    subprocess.run(["ip", "netns", "add", machine_name], check=True)
    sleeper = subprocess.Popen(["ip", "netns", "exec", machine_name, "sleep", "300"])
    try:
        for _ in range(200):
            try:
                pid = _ns_pid(machine_name)
                break
            except (IndexError, subprocess.CalledProcessError):
                os.sched_yield()
        else:
            raise AssertionError("the sleeper never entered the namespace")
        yield pid
    finally:
        sleeper.kill()
        sleeper.wait()
        subprocess.run(["ip", "netns", "del", machine_name], check=True)


def _links_in(pid: int) -> dict[str, str]:
    """name -> operstate/flags line from `ip -o link` run inside PID's namespace."""
    out = subprocess.check_output(["nsenter", "-t", str(pid), "-n", "ip", "-o", "link"], text=True)
    return {line.split(": ")[1].split("@")[0]: line for line in out.splitlines()}


def test_fresh_namespace_has_only_loopback_down(netns):
    links = _links_in(netns)
    assert list(links) == ["lo"]
    assert "UP" not in links["lo"].split("<")[1].split(">")[0].split(",")


def test_loopback_up_in_a_namespace(netns):
    home = os.readlink("/proc/thread-self/ns/net")
    netlink.loopback_up(netns)
    flags = _links_in(netns)["lo"].split("<")[1].split(">")[0].split(",")
    assert "UP" in flags
    netlink.loopback_up(netns)  # idempotent
    # the host's own namespace was not touched: this thread is back home
    assert os.readlink("/proc/thread-self/ns/net") == home


def test_veth_pair_with_peer_created_in_the_namespace(netns, machine_name):
    host = netlink.veth_host_name(machine_name)
    index = netlink.create_veth(host, "host0", peer_pid=netns)
    try:
        assert index == int(Path(f"/sys/class/net/{host}/ifindex").read_text())
        assert "host0" in _links_in(netns)
        assert not Path("/sys/class/net/host0").exists() or "host0" not in host
        netlink.set_link_up(host)
        netlink.set_link_up("host0", netns)
        assert "UP" in _links_in(netns)["host0"].split("<")[1].split(">")[0].split(",")
    finally:
        assert netlink.delete_link(host) is True
    assert not netlink.link_exists(host)
    assert "host0" not in _links_in(netns)  # a veth takes its peer with it
    assert netlink.delete_link(host) is False


def test_create_then_move_then_rename(netns, machine_name):
    host = netlink.veth_host_name(machine_name)
    peer = f"vp{machine_name}"[:15]
    netlink.create_veth(host, peer)
    try:
        assert netlink.link_exists(peer)
        netlink.move_link(peer, netns)
        assert not netlink.link_exists(peer)
        assert netlink.link_exists(peer, netns)
        netlink.rename_link(peer, "host0", netns)
        assert set(_links_in(netns)) == {"lo", "host0"}
    finally:
        netlink.delete_link(host)


def test_long_machine_name_is_shortened_like_nspawn_with_altname(netns, machine_name):
    long_name = f"{machine_name}-with-a-long-suffix"
    host = netlink.veth_host_name(long_name)
    assert len(host) == 15 and host.startswith("ve-")
    netlink.create_veth(host, "host0", peer_pid=netns, altname=netlink.veth_altname(long_name))
    try:
        out = subprocess.check_output(["ip", "-o", "link", "show", "dev", host], text=True)
        assert f"altname ve-{long_name}" in out
    finally:
        netlink.delete_link(host)


def test_counters_move_when_traffic_flows(netns, machine_name):
    host = netlink.veth_host_name(machine_name)
    netlink.create_veth(host, "host0", peer_pid=netns)
    try:
        netlink.set_link_up(host)
        netlink.set_link_up("host0", netns)
        subprocess.run(["ip", "addr", "add", "169.254.77.1/30", "dev", host], check=True)
        subprocess.run(["nsenter", "-t", str(netns), "-n", "ip", "addr", "add", "169.254.77.2/30",
                        "dev", "host0"], check=True)
        before_host = netlink.host_link_counters(host)
        before_ns = netlink.netns_counters(netns)["host0"]
        _send_udp("169.254.77.2", count=5)
        after_host = netlink.host_link_counters(host)
        after_ns = netlink.netns_counters(netns)["host0"]
        assert before_host is not None and after_host is not None
        assert after_host.tx_bytes > before_host.tx_bytes and after_host.tx_packets >= before_host.tx_packets + 5
        # what the host side sent, the container side received
        assert after_ns.rx_bytes - before_ns.rx_bytes >= after_host.tx_bytes - before_host.tx_bytes - 200
        assert after_ns.tx_packets > before_ns.tx_packets  # at least the ARP reply
    finally:
        netlink.delete_link(host)
    assert netlink.host_link_counters(host) is None


def _send_udp(address: str, count: int) -> None:
    """Datagrams to a closed port (the namespace answers with ARP and ICMP errors)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(count):
            s.sendto(b"x" * 100, (address, 9))
            time.sleep(0.02)


def test_missing_links_raise_clear_errors(netns):
    with pytest.raises(FileNotFoundError, match="no network link named nope0"):
        netlink.set_link_up("nope0", netns)
    assert netlink.delete_link("nope0", netns) is False
