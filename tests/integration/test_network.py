"""-n works on its own: addresses from nsdash's pool, masquerade and --port (root).

Traffic stays inside namespaces the tests make: "outside" is a network
namespace joined to the host by a veth pair with 198.18.x addresses (a
benchmarking range no host here routes); it has no route back to nsdash's
pool, so an answer from it proves the masquerade.  Every test checks that no
nft rule keyed by its machine, no lease and no ve- link remain.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import NSDASH, REPO, run_nsdash, teardown_machine, wait_for

from nsdash.launcher import network
from nsdash.machines import client
from nsdash.machines import state as st
from nsdash.system import netlink

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

OUT_HOST, OUT_PEER = "198.18.77.1", "198.18.77.2"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def _left_behind(machine: str) -> list[str]:
    """What nsdash's networking still holds for MACHINE."""
    found = [f"rule {r['chain']} {r['handle']}" for r in network.nft_rules() if r.get("comment") == network.tag(machine)]
    found += [f"lease {lease.block}" for lease in network.leases() if lease.machine == machine]
    if netlink.link_exists(netlink.veth_host_name(machine)):
        found.append("link " + netlink.veth_host_name(machine))
    return found


@pytest.fixture
def outside(machine_name) -> Iterator[str]:
    """A network namespace standing for the outside world; yields its name."""
    ns = f"out-{machine_name}"
    link = "vo" + machine_name[-10:]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns], check=True)
        subprocess.run(["ip", "addr", "add", f"{OUT_HOST}/30", "dev", link], check=True)
        subprocess.run(["ip", "link", "set", link, "up"], check=True)
        for cmd in (["ip", "addr", "add", f"{OUT_PEER}/30", "dev", "eth0"], ["ip", "link", "set", "eth0", "up"],
                    ["ip", "link", "set", "lo", "up"]):
            subprocess.run(["ip", "netns", "exec", ns, *cmd], check=True)
        yield ns
    finally:
        subprocess.run(["ip", "link", "del", link], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", ns], check=True)


class _Server:
    """python -m http.server in namespace NS (None: the host), serving DIR; its log names clients."""

    def __init__(self, ns: str | None, address: str, port: int, directory: Path) -> None:
        prefix = ["ip", "netns", "exec", ns] if ns else []
        self.proc = subprocess.Popen([*prefix, sys.executable, "-m", "http.server", "-b", address, str(port),
                                      "-d", str(directory)], stderr=subprocess.PIPE, text=True)
        wait_for(lambda: self._listening(ns, port), 20, what="the test's HTTP server")

    @staticmethod
    def _listening(ns: str | None, port: int) -> bool:
        prefix = ["ip", "netns", "exec", ns] if ns else []
        out = subprocess.run([*prefix, "ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True).stdout
        return bool(out.strip())

    def stop(self) -> str:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=10)
        return err


def test_veth_machine_reaches_the_host_and_the_outside_through_the_masquerade(
        busybox_cache, machine_name, outside, tmp_path):
    (tmp_path / "host.txt").write_text("from-the-host\n")
    (tmp_path / "out.txt").write_text("from-the-outside\n")
    port = _free_port()
    host_server = _Server(None, "0.0.0.0", port, tmp_path)
    out_server = _Server(outside, OUT_PEER, port, tmp_path)
    try:
        # BusyBox's static wget crashes in glibc's resolver; nc with an address needs none.
        get = 'printf "GET /%s HTTP/1.0\\r\\n\\r\\n" | nc -w 10 %s %d'
        script = ("ip -4 -o addr show host0; gw=$(ip route | awk '/^default/ {print $3}'); "
                  + get % ("host.txt", "$gw", port) + "; " + get % ("out.txt", OUT_PEER, port))
        r = run_nsdash("spawn", "-q", "-n", "-x", "-M", machine_name, "-D", str(busybox_cache),
                       "/bin/sh", "-c", script)
    finally:
        host_log = host_server.stop()
        out_log = out_server.stop()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "inet 10.229." in r.stdout and "/30" in r.stdout  # host0 was configured before the payload
    assert "from-the-host" in r.stdout and "from-the-outside" in r.stdout
    assert "GET /host.txt" in host_log
    # The outside saw the host's address on its link, never the machine's pool address.
    assert f"{OUT_HOST} - - " in out_log and "10.229." not in out_log, out_log
    assert _left_behind(machine_name) == []


def _start_web_machine(machine_name: str, tree: Path, *extra: str) -> subprocess.CompletedProcess:
    script = "mkdir -p /tmp/w && echo served-by-$(hostname) > /tmp/w/index.html && exec httpd -f -p 80 -h /tmp/w"
    return run_nsdash("spawn", "--detach", "-n", "-x", "-M", machine_name, *extra, "-D", str(tree),
                      "/bin/sh", "-c", script)


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return str(reply.read().decode())


def _fetch_or_none(url: str) -> str | None:
    """_fetch, or None while nothing answers yet (for wait_for)."""
    try:
        return _fetch(url)
    except OSError:
        return None


def _outside_fetch(ns: str, url: str) -> subprocess.CompletedProcess:
    code = f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=10).read().decode())"
    return subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30)


def test_port_forward_answers_and_goes_with_the_machine(busybox_cache, machine_name, outside):
    port = _free_port()
    try:
        r = _start_web_machine(machine_name, busybox_cache, "-p", f"tcp:{port}:80")
        assert r.returncode == 0, r.stderr
        s = client.status(machine_name)
        assert "masquerade" in s["network"] and f"port tcp:{port}:80" in s["network"]
        lease = network.lease_of(machine_name)
        assert lease is not None
        # From the outside, to the host's address on its link: prerouting DNAT.
        got = wait_for(lambda: _outside_fetch(outside, f"http://{OUT_HOST}:{port}/").stdout, 30, what="the forward")
        assert f"served-by-{machine_name}" in got
        # From the host itself, to a local address: the output chain's DNAT.
        assert f"served-by-{machine_name}" in _fetch(f"http://{lease.host.ip}:{port}/")
        # And over IPv6, to the host side's ULA address: the ip6 table's DNAT to host0's.
        assert f"served-by-{machine_name}" in _fetch(f"http://[{lease.host6.ip}]:{port}/")
        # status and -o json show the path taken and the machine's address.
        r = run_nsdash("status", machine_name)
        assert "Network: nsdash:" in r.stdout and str(lease.guest.ip) in r.stdout, r.stdout
        assert f"{lease.guest6} on host0" in r.stdout  # the v6 side: in Network: and, compressed, in Address:
        assert r.stdout.count(str(lease.guest6.ip)) >= 2, r.stdout
        r = run_nsdash("list", "-o", "json")
        assert str(lease.guest.ip) in r.stdout and str(lease.guest6.ip) in r.stdout, r.stdout
        r = run_nsdash("list")
        assert str(lease.guest.ip) in r.stdout, r.stdout
        r = run_nsdash("terminate", machine_name)  # httpd is PID 1: poweroff is for an init
        assert r.returncode == 0, r.stderr
        wait_for(lambda: not st.machine_dir(machine_name).exists(), 30, what="the machine to stop")
        assert _left_behind(machine_name) == []
        assert _outside_fetch(outside, f"http://{OUT_HOST}:{port}/").returncode != 0
    finally:
        teardown_machine(machine_name)
    assert _left_behind(machine_name) == []


def test_port_rules_are_cleaned_after_a_supervisor_sigkill(busybox_cache, machine_name):
    port = _free_port()
    try:
        r = _start_web_machine(machine_name, busybox_cache, f"--port={port}")
        assert r.returncode == 0, r.stderr
        s = client.status(machine_name)
        assert _left_behind(machine_name)  # rules, lease and link are there while it runs
        families = {r["family"] for r in network.nft_rules() if r.get("comment") == network.tag(machine_name)}
        assert families == {"ip", "ip6"}  # the v4 masquerade and forward, the v6 masquerade
        os.kill(s["supervisor"], signal.SIGKILL)
        wait_for(lambda: not st.supervisor_alive(st.machine_dir(machine_name)), what="the supervisor to die")
        assert any(r["comment"] == network.tag(machine_name) for r in network.nft_rules())
        r = run_nsdash("status", machine_name)  # the next command naming it cleans the orphan
        assert "orphaned" in r.stderr
        wait_for(lambda: not st.machine_dir(machine_name).exists(), 30, what="the orphan's clean-up")
        assert _left_behind(machine_name) == []
    finally:
        teardown_machine(machine_name)


def test_a_port_in_use_is_one_line_and_leaves_nothing(busybox_cache, machine_name):
    with socket.socket() as held:
        held.bind(("0.0.0.0", 0))
        held.listen()
        port = held.getsockname()[1]
        r = run_nsdash("spawn", "-q", "-n", "-x", "-M", machine_name, "-p", str(port), "-D", str(busybox_cache),
                       "/bin/true")
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"host port {port}/tcp is in use" in r.stderr
    assert _left_behind(machine_name) == []


def test_a_port_forwarded_to_another_machine_is_refused(busybox_cache, machine_name):
    port = _free_port()
    other = machine_name + "-b"
    try:
        assert _start_web_machine(machine_name, busybox_cache, "-p", str(port)).returncode == 0
        r = run_nsdash("spawn", "-q", "-n", "-x", "-M", other, "-p", f"{port}:81", "-D", str(busybox_cache),
                       "/bin/true")
        assert r.returncode != 0 and r.stderr.count("\n") == 1, r.stderr
        assert f"already forwarded to machine '{machine_name}'" in r.stderr
        assert _left_behind(other) == []
    finally:
        teardown_machine(machine_name)
    assert _left_behind(machine_name) == []


@pytest.mark.parametrize(("args", "words"), [
    (["-n", "-p", "sctp:80"], "unknown protocol 'sctp'"),
    (["-n", "-p", "70000"], "invalid port '70000'"),
    (["-p", "8080"], "--port needs --network-veth"),
])
def test_bad_port_values_are_one_line(busybox_cache, machine_name, args, words):
    r = run_nsdash("spawn", "-q", "-x", "-M", machine_name, *args, "-D", str(busybox_cache), "/bin/true")
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and words in r.stderr, r.stderr
    assert _left_behind(machine_name) == []


def test_concurrent_spawns_get_distinct_blocks(busybox_cache, machine_name, tmp_path):
    """Three machines started at once, each waiting until all three run: three blocks."""
    names = [f"{machine_name}-{i}" for i in range(3)]
    script = ("ip -4 -o addr show host0; touch /sync/$(hostname); n=0; "
              "while [ $(ls /sync | wc -l) -lt 3 ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n+1)); done; "
              "[ $(ls /sync | wc -l) -ge 3 ]")
    procs = [subprocess.Popen([sys.executable, "-m", "nsdash", "spawn", "-q", "-n", "-x", "-M", n,
                               f"--bind={tmp_path}:/sync", "-D", str(busybox_cache), "/bin/sh", "-c", script],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
             for n in names]
    outs = [p.communicate(timeout=90) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs  # all three ran at the same time
    addresses = [out.split("inet ")[1].split()[0] for out, _ in outs]
    assert len(set(addresses)) == 3, addresses
    for n in names:
        assert _left_behind(n) == []


def _zone_left_behind(zone: str) -> list[str]:
    found = [f"rule {r['handle']}" for r in network.nft_rules() if r.get("comment") == network.tag("zone:" + zone)]
    found += [f"lease {lease.block}" for lease in network.leases() if lease.machine == "zone:" + zone]
    if netlink.link_exists(network.ZONE_PREFIX + zone):
        found.append("bridge " + network.ZONE_PREFIX + zone)
    return found


def test_two_machines_in_a_zone_reach_each_other_and_the_bridge_goes_with_the_last(
        busybox_cache, debian_cache, machine_name):
    """A BusyBox machine serves in the zone; a BusyBox and a Debian machine in the same zone
    reach it over IPv4 and IPv6."""
    zone = machine_name.replace("-", "")[:11] + "z"
    first, second, third = machine_name, machine_name + "-b", machine_name + "-c"
    try:
        r = _start_web_machine(first, busybox_cache, f"--network-zone={zone}")
        assert r.returncode == 0, r.stderr
        assert client.status(first)["netif"] == [netlink.veth_host_name(first, "vb-")]
        assert Path(f"/sys/class/net/{network.ZONE_PREFIX}{zone}/brif/{netlink.veth_host_name(first, 'vb-')}").exists()
        address = network.lease_of(first).block.network_address
        zone_lease = next(z for z in network.leases() if z.machine == network.zone_owner(zone))
        address6 = network.member6(zone_lease, network.lease_of(first)).ip
        assert f"zone {zone}" in client.status(first)["network"] and str(address6) in client.status(first)["network"]
        get = 'printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 10 %s 80; '
        r = run_nsdash("spawn", "-q", "-x", f"--network-zone={zone}", "-M", second, "-D", str(busybox_cache),
                       "/bin/sh", "-c", get % address + get % address6)
        assert r.returncode == 0 and r.stdout.count(f"served-by-{first}") == 2, r.stdout + r.stderr  # v4 and v6
        # Debian's bash, no tools from the tree: /dev/tcp to the first machine's v4 and v6 addresses.
        get = 'exec 3<>/dev/tcp/%s/80 && printf "GET / HTTP/1.0\\r\\n\\r\\n" >&3 && cat <&3; exec 3<&-; '
        r = run_nsdash("spawn", "-q", "-x", f"--network-zone={zone}", "-M", third, "-D", str(debian_cache),
                       "/bin/bash", "-c", get % address + get % address6)
        assert r.returncode == 0 and r.stdout.count(f"served-by-{first}") == 2, r.stdout + r.stderr
        assert _left_behind(third) == []
        assert {"ip", "ip6"} <= {r["family"] for r in network.nft_rules()
                                 if r.get("comment") == network.tag(network.zone_owner(zone))}
        assert _left_behind(second) == []
        assert _zone_left_behind(zone)  # the first machine still uses it
        assert run_nsdash("terminate", first).returncode == 0
        wait_for(lambda: not st.machine_dir(first).exists(), 30, what="the machine to stop")
        assert _zone_left_behind(zone) == []
    finally:
        teardown_machine(first)
    assert _left_behind(first) == [] and _zone_left_behind(zone) == []


def test_a_full_zone_is_one_line_and_leaves_nothing(busybox_cache, machine_name):
    """Every address of a zone's block leased (one machine, the rest held by the test): the
    next member is refused in one line, and the zone stays for the machine still in it."""
    zone = machine_name.replace("-", "")[:11] + "f"
    second = machine_name + "-b"
    fillers: list[str] = []
    try:
        r = run_nsdash("spawn", "--detach", "-x", f"--network-zone={zone}", "-M", machine_name,
                       "-D", str(busybox_cache), "/bin/sleep", "300")
        assert r.returncode == 0, r.stderr
        with network.locked():
            block = next(z for z in network.leases() if z.machine == network.zone_owner(zone))
            for i in range(len(list(block.block.hosts())) - 2):  # the bridge's .1 and the machine's
                fillers.append(f"{machine_name}-fill{i}")
                network.zone_member(fillers[-1], block)
        r = run_nsdash("spawn", "-q", "-x", f"--network-zone={zone}", "-M", second, "-D", str(busybox_cache),
                       "/bin/true")
        assert r.returncode != 0 and r.stderr.count("\n") == 1 and f"zone {zone} is full" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
        assert _left_behind(second) == [] and not netlink.link_exists(netlink.veth_host_name(second, "vb-"))
        assert _zone_left_behind(zone)  # the first machine still uses it
    finally:
        with network.locked():
            for name in fillers:
                network.release(name)
        teardown_machine(machine_name)
    assert _left_behind(machine_name) == [] and _zone_left_behind(zone) == []


@pytest.fixture
def nspawn_file(machine_name) -> Iterator[Path]:
    """MACHINE's settings file in a trusted directory (/run/systemd/nspawn), removed after."""
    directory = Path("/run/systemd/nspawn")
    made = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{machine_name}.nspawn"
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
        if made:
            with contextlib.suppress(OSError):  # another test's file is still there: it stays
                directory.rmdir()


def test_a_settings_file_s_zone_and_port_forward_to_the_zone_member(busybox_cache, machine_name, nspawn_file):
    """.nspawn [Network] Zone= and Port= do what the options do, with no networking option
    given: the host's port reaches the machine's address in the zone, and both go with it."""
    zone = machine_name.replace("-", "")[:11] + "p"
    port = _free_port()
    nspawn_file.write_text(f"[Network]\nZone={zone}\nPort=tcp:{port}:80\n")
    script = "mkdir -p /tmp/w && echo served-by-$(hostname) > /tmp/w/index.html && exec httpd -f -p 80 -h /tmp/w"
    try:
        r = run_nsdash("spawn", "--detach", "-x", "-M", machine_name, "-D", str(busybox_cache),
                       "/bin/sh", "-c", script)
        assert r.returncode == 0, r.stderr
        s = client.status(machine_name)
        assert f"zone {zone}" in s["network"] and f"port tcp:{port}:80" in s["network"], s["network"]
        bridge = next(z for z in network.leases() if z.machine == network.zone_owner(zone))
        # From the host to its own address on the zone's bridge: the output chain's DNAT to
        # the member's address in the zone's block (not a /30 of its own).
        got = wait_for(lambda: _fetch_or_none(f"http://{bridge.host.ip}:{port}/"), 30, what="the forward")
        assert f"served-by-{machine_name}" in got
        assert f"served-by-{machine_name}" in _fetch(f"http://[{bridge.host6.ip}]:{port}/")
        assert run_nsdash("terminate", machine_name).returncode == 0
        wait_for(lambda: not st.machine_dir(machine_name).exists(), 30, what="the machine to stop")
        assert _left_behind(machine_name) == [] and _zone_left_behind(zone) == []
    finally:
        teardown_machine(machine_name)
    assert _left_behind(machine_name) == [] and _zone_left_behind(zone) == []


def test_an_unknown_bridge_is_one_line_and_leaves_nothing(busybox_cache, machine_name):
    r = run_nsdash("spawn", "-q", "-x", "--network-bridge=nosuchbr0", "-M", machine_name, "-D", str(busybox_cache),
                   "/bin/true")
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "no bridge named nosuchbr0" in r.stderr, r.stderr
    assert not netlink.link_exists(netlink.veth_host_name(machine_name, "vb-"))
    assert _left_behind(machine_name) == []


def test_a_machine_on_an_existing_bridge_is_attached_and_detached(busybox_cache, machine_name):
    bridge = "vb-" + machine_name.replace("-", "")[:8] + "br"  # vb- and the tag: the leak check sees it
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    try:
        # --port on a bridge: the bridge's network addresses the machine, so nsdash has no
        # address to forward to (nspawn learns it from the guest): refused, nothing made.
        r = run_nsdash("spawn", "-q", "-x", f"--network-bridge={bridge}", "-p", str(_free_port()),
                       "-M", machine_name, "-D", str(busybox_cache), "/bin/true")
        assert r.returncode != 0 and r.stderr.count("\n") == 1, r.stderr
        assert "--port cannot be combined with --network-bridge" in r.stderr
        assert os.listdir(f"/sys/class/net/{bridge}/brif") == [] and _left_behind(machine_name) == []
        r = run_nsdash("spawn", "--detach", "-x", f"--network-bridge={bridge}", "-M", machine_name,
                       "-D", str(busybox_cache), "/bin/sleep", "300")
        assert r.returncode == 0, r.stderr
        vb = netlink.veth_host_name(machine_name, "vb-")
        assert os.listdir(f"/sys/class/net/{bridge}/brif") == [vb]
        assert "bridge " + bridge in client.status(machine_name)["network"]
        assert network.lease_of(machine_name) is None  # the bridge's network addresses host0, not nsdash
        assert run_nsdash("terminate", machine_name).returncode == 0
        wait_for(lambda: not st.machine_dir(machine_name).exists(), 30, what="the machine to stop")
        assert os.listdir(f"/sys/class/net/{bridge}/brif") == []
        assert _left_behind(machine_name) == [] and not netlink.link_exists(vb)
    finally:
        teardown_machine(machine_name)
        subprocess.run(["ip", "link", "del", bridge], check=True)


@pytest.mark.parametrize(("args", "words"), [
    (["--network-zone=a", "--network-bridge=b"], "may not be combined"),
    (["--network-zone=waytoolongzone"], "1-12 characters"),
    (["--network-bridge=a/b"], "not a network interface name"),
])
def test_bad_zone_and_bridge_values_are_one_line(busybox_cache, machine_name, args, words):
    r = run_nsdash("spawn", "-q", "-x", "-M", machine_name, *args, "-D", str(busybox_cache), "/bin/true")
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and words in r.stderr, r.stderr


@pytest.fixture
def host_pair(machine_name) -> Iterator[tuple[str, str]]:
    """A veth pair on the host standing for a physical NIC (this kernel has no dummy links);
    named ve-TAG... so the leak check sees them."""
    a, b = "ve-" + machine_name.replace("-", "")[:8] + "a", "ve-" + machine_name.replace("-", "")[:8] + "b"
    subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b], check=True)
    try:
        yield a, b
    finally:
        subprocess.run(["ip", "link", "del", a], capture_output=True, check=False)


def test_a_moved_interface_and_a_macvlan_are_inside_and_the_interface_comes_back(
        busybox_cache, machine_name, host_pair):
    moved, parent = host_pair
    r = run_nsdash("spawn", "-q", "-x", "-M", machine_name, f"--network-interface={moved}",
                   f"--network-macvlan={parent}", "-D", str(busybox_cache), "/bin/sh", "-c", "ip -o link")
    assert r.returncode == 0, r.stderr
    inside = [line.split(": ")[1].split("@")[0] for line in r.stdout.splitlines()]
    assert sorted(inside) == sorted(["lo", moved, netlink.shorten_ifname("mv-" + parent)])
    assert netlink.link_exists(moved) and netlink.link_exists(parent)  # given back; the macvlan died inside
    assert not netlink.link_exists(netlink.shorten_ifname("mv-" + parent))


def test_a_moved_interface_comes_back_when_the_start_fails(busybox_cache, machine_name, host_pair):
    """The move happens first; a port in use (checked later) fails the start: the link comes back."""
    moved, _ = host_pair
    with socket.socket() as held:
        held.bind(("0.0.0.0", 0))
        held.listen()
        port = held.getsockname()[1]
        r = run_nsdash("spawn", "-q", "-x", "-n", "-M", machine_name, f"--network-interface={moved}",
                       "-p", str(port), "-D", str(busybox_cache), "/bin/true")
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "is in use" in r.stderr, r.stderr
    assert netlink.link_exists(moved)
    assert _left_behind(machine_name) == []


def test_an_ipvlan_the_kernel_cannot_make_is_one_line(busybox_cache, machine_name, host_pair):
    """ipvlan where the kernel has it is the macvlan path with another kind; this host's kernel
    lacks it, so what is checked here is the refusal (a kernel with ipvlan passes the first branch)."""
    _, parent = host_pair
    r = run_nsdash("spawn", "-q", "-x", "-M", machine_name, f"--network-ipvlan={parent}", "-D", str(busybox_cache),
                   "/bin/sh", "-c", "ip -o link")
    if r.returncode == 0:
        assert netlink.shorten_ifname("iv-" + parent) in r.stdout
    else:
        assert r.stderr.count("\n") == 1 and "cannot create the ipvlan link" in r.stderr, r.stderr
    assert netlink.link_exists(parent)


def test_an_extra_veth_is_made_and_goes_with_the_machine(busybox_cache, machine_name):
    host = "ve-" + machine_name.replace("-", "")[:8] + "x"
    r = run_nsdash("spawn", "-q", "-x", "-M", machine_name, f"--network-veth-extra={host}:inside0",
                   "-D", str(busybox_cache), "/bin/sh", "-c", "ip -o link show inside0")
    assert r.returncode == 0 and "inside0@" in r.stdout, r.stdout + r.stderr
    assert not netlink.link_exists(host)
    r = run_nsdash("spawn", "-q", "-x", "-M", machine_name, "--network-veth-extra=a:b/c", "-D", str(busybox_cache),
                   "/bin/true")
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "not a network interface name" in r.stderr


def test_a_debian_machine_with_n_reaches_the_host_and_the_outside(debian_cache, machine_name, outside, tmp_path):
    """bash's /dev/tcp, no tools from the tree: the host's address on the outside link (local
    to the host, reached via host0's default route) and the outside's own server (masqueraded)."""
    (tmp_path / "host.txt").write_text("from-the-host\n")
    (tmp_path / "out.txt").write_text("from-the-outside\n")
    port = _free_port()
    host_server = _Server(None, OUT_HOST, port, tmp_path)
    out_server = _Server(outside, OUT_PEER, port, tmp_path)
    get = 'exec 3<>/dev/tcp/%s/%d && printf "GET /%s HTTP/1.0\\r\\n\\r\\n" >&3 && cat <&3; exec 3<&-'
    try:
        r = run_nsdash("spawn", "-q", "-n", "-x", "-M", machine_name, "-D", str(debian_cache), "/bin/bash", "-c",
                       get % (OUT_HOST, port, "host.txt") + "; " + get % (OUT_PEER, port, "out.txt"))
    finally:
        host_log = host_server.stop()
        out_log = out_server.stop()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "from-the-host" in r.stdout and "from-the-outside" in r.stdout
    assert "10.229." in host_log  # the host saw the machine's own address
    assert f"{OUT_HOST} - - " in out_log and "10.229." not in out_log, out_log  # the outside saw the masquerade
    assert _left_behind(machine_name) == []


def test_an_exhausted_pool_is_one_line_and_leaves_nothing(busybox_cache, machine_name, monkeypatch):
    """A pool of one /30 ($NSDASH_NET_POOL) held by a running machine: the next -n is refused.
    The pool's last free block, not its first: test sessions running at the same time (other
    state directories, whose leases show only once routed) allocate from the low end."""
    free = next(b for b in reversed(list(network.POOL.subnets(new_prefix=30)))
                if not any(b.overlaps(x) for x in network.host_routes() + [le.block for le in network.leases()]))
    monkeypatch.setenv("NSDASH_NET_POOL", str(free))
    second = machine_name + "-b"
    try:
        assert _start_web_machine(machine_name, busybox_cache).returncode == 0
        assert network.lease_of(machine_name).block == free
        r = run_nsdash("spawn", "-q", "-n", "-x", "-M", second, "-D", str(busybox_cache), "/bin/true")
        assert r.returncode != 0 and r.stderr.count("\n") == 1 and "is exhausted" in r.stderr, r.stderr
        assert _left_behind(second) == []
    finally:
        teardown_machine(machine_name)
    assert _left_behind(machine_name) == []
    monkeypatch.setenv("NSDASH_NET_POOL", "8.8.8.0/24")  # not private: refused, one line
    r = run_nsdash("spawn", "-q", "-n", "-x", "-M", second, "-D", str(busybox_cache), "/bin/true")
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "NSDASH_NET_POOL" in r.stderr, r.stderr
    assert _left_behind(second) == []


def test_a_booted_machine_s_rules_go_with_poweroff(busybox_tree, machine_name):
    port = _free_port()
    try:
        r = run_nsdash("spawn", "--detach", "-n", "-b", "-M", machine_name, "-p", str(port), "-D", str(busybox_tree))
        assert r.returncode == 0, r.stderr
        assert network.tag(machine_name) in {r.get("comment") for r in network.nft_rules()}
        r = run_nsdash("poweroff", machine_name)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: not st.machine_dir(machine_name).exists(), 30, what="the machine to stop")
        assert _left_behind(machine_name) == []
    finally:
        teardown_machine(machine_name)


@pytest.fixture
def networkd_tree(debian_cache, tmp_path, machine_name) -> Path:
    """A private copy of the Debian tree with systemd-networkd enabled, as a user does for
    nspawn (`systemctl enable systemd-networkd` in the guest)."""
    dest = tmp_path / machine_name
    subprocess.run(["cp", "-a", "--reflink=auto", str(debian_cache), str(dest)], check=True)
    (dest / "etc/systemd/system/multi-user.target.wants/systemd-networkd.service").symlink_to(
        "/lib/systemd/system/systemd-networkd.service")
    return dest


def test_a_networkd_guest_gets_its_address_by_dhcp_from_the_supervisor(networkd_tree, machine_name, tmp_path):
    """host0 is left to the guest's networkd (80-container-host0.network asks by DHCP); the
    supervisor answers on ve- with the machine's lease, and the guest reaches the host."""
    (tmp_path / "host.txt").write_text("from-the-host\n")
    port = _free_port()
    server = _Server(None, "0.0.0.0", port, tmp_path)
    try:
        r = run_nsdash("spawn", "--detach", "-n", "-b", "-M", machine_name, "-D", str(networkd_tree))
        assert r.returncode == 0, r.stderr
        lease = network.lease_of(machine_name)
        assert lease is not None
        s = client.status(machine_name)
        assert "by DHCP" in s["network"] and str(lease.guest) in s["network"], s["network"]

        def configured() -> str:
            out = run_nsdash("shell", machine_name, "/bin/sh", "-c", "networkctl --no-pager status host0; "
                             "ip -4 -o addr show host0; ip route").stdout
            return out if "dynamic" in out else ""

        out = wait_for(configured, 60, step=1, what="networkd's DHCP lease on host0")
        assert f"inet {lease.guest}" in out and f"default via {lease.host.ip} dev host0 proto dhcp" in out, out
        get = f'exec 3<>/dev/tcp/{lease.host.ip}/{port} && printf "GET /host.txt HTTP/1.0\\r\\n\\r\\n" >&3 && cat <&3'
        r = run_nsdash("shell", machine_name, "/bin/bash", "-c", get)
        assert "from-the-host" in r.stdout, r.stdout + r.stderr
        r = run_nsdash("status", machine_name)
        assert "offered to the guest's networkd by DHCP" in r.stdout, r.stdout
        assert run_nsdash("poweroff", machine_name).returncode == 0
        wait_for(lambda: not st.machine_dir(machine_name).exists(), 60, what="the machine to stop")
    finally:
        log = server.stop()
        teardown_machine(machine_name)
    assert f"{lease.guest.ip} - - " in log and "GET /host.txt" in log, log
    assert _left_behind(machine_name) == []


def test_without_networkd_in_the_guest_host0_is_configured_from_outside(debian_tree, machine_name):
    """The same Debian, booted without networkd enabled: nsdash sets host0 itself, no DHCP."""
    try:
        r = run_nsdash("spawn", "--detach", "-n", "-b", "-x", "-M", machine_name, "-D", str(debian_tree))
        assert r.returncode == 0, r.stderr
        s = client.status(machine_name)
        assert "networkd" not in s["network"] and "on host0 (also answered by DHCP)" in s["network"], s["network"]
        out = run_nsdash("shell", machine_name, "/bin/sh", "-c", "ip -4 -o addr show host0").stdout
        assert "inet 10." in out and "dynamic" not in out, out
    finally:
        teardown_machine(machine_name)
    assert _left_behind(machine_name) == []


def _without_nft() -> dict[str, str]:
    """The environment with nft off $PATH (everything else real): where nsdash looks for it."""
    path = ":".join(d for d in os.environ["PATH"].split(":") if d and not os.path.exists(os.path.join(d, "nft")))
    return {**os.environ, "PATH": path}


def test_without_nft_n_configures_addresses_and_says_there_is_no_masquerade(
        busybox_cache, machine_name, outside, tmp_path):
    (tmp_path / "host.txt").write_text("from-the-host\n")
    port = _free_port()
    host_server = _Server(None, "0.0.0.0", port, tmp_path)
    out_server = _Server(outside, OUT_PEER, port, tmp_path)
    get = 'printf "GET /%s HTTP/1.0\\r\\n\\r\\n" | nc -w 3 %s %d'
    script = ("ip -4 -o addr show host0; gw=$(ip route | awk '/^default/ {print $3}'); "
              + get % ("host.txt", "$gw", port) + "; " + get % ("host.txt", OUT_PEER, port) + "; echo done")
    try:
        r = run_nsdash("spawn", "-q", "-n", "-x", "-M", machine_name, "-D", str(busybox_cache),
                       "/bin/sh", "-c", script, env=_without_nft())
    finally:
        host_server.stop()
        out_log = out_server.stop()
    assert r.returncode == 0, r.stdout + r.stderr
    warnings = [line for line in r.stderr.splitlines() if "masquerade" in line]
    assert len(warnings) == 1 and "reaches the host only" in warnings[0] and "'nft' is not installed" in warnings[0]
    assert "inet 10.229." in r.stdout and r.stdout.count("from-the-host") == 1 and "done" in r.stdout, r.stdout
    assert "GET /host.txt" not in out_log  # no masquerade: the outside could not answer the pool address
    assert _left_behind(machine_name) == []


def test_without_nft_a_port_is_refused_in_one_line_and_leaves_nothing(busybox_cache, machine_name):
    r = run_nsdash("spawn", "-q", "-n", "-x", "-M", machine_name, "-p", str(_free_port()),
                   "-D", str(busybox_cache), "/bin/true", env=_without_nft())
    assert r.returncode != 0 and r.stderr.count("\n") == 1, r.stderr
    assert "--port needs nftables" in r.stderr and "'nft' is not installed" in r.stderr, r.stderr
    assert _left_behind(machine_name) == [] and not st.machine_dir(machine_name).exists()


OUT6_HOST, OUT6_PEER = "2001:db8:77::1", "2001:db8:77::2"  # a documentation prefix no host here routes


def test_ipv6_machine_reaches_the_host_and_the_outside_through_the_v6_masquerade(
        busybox_cache, machine_name, outside, tmp_path):
    """host0 gets the .2 of a ULA /64 of this host's /48 (derived from its machine ID), ve- the
    .1; outbound v6 is masqueraded by nsdash's ip6 table, which goes with the machine."""
    link = "vo" + machine_name[-10:]
    subprocess.run(["ip", "-6", "addr", "add", f"{OUT6_HOST}/64", "dev", link, "nodad"], check=True)
    subprocess.run(["ip", "netns", "exec", outside, "ip", "-6", "addr", "add", f"{OUT6_PEER}/64", "dev", "eth0",
                    "nodad"], check=True)
    (tmp_path / "host.txt").write_text("from-the-host\n")
    (tmp_path / "out.txt").write_text("from-the-outside\n")
    port = _free_port()
    host_server = _Server(None, "::", port, tmp_path)
    out_server = _Server(outside, OUT6_PEER, port, tmp_path)
    get = 'printf "GET /%s HTTP/1.0\\r\\n\\r\\n" | nc -w 10 %s %d'
    script = ("ip -6 -o addr show host0 scope global; gw=$(ip -6 route | awk '/^default/ {print $3}'); "
              + get % ("host.txt", "$gw", port) + "; " + get % ("out.txt", OUT6_PEER, port))

    def families() -> list[str]:
        return [rule["family"] for rule in network.nft_rules() if rule.get("comment") == network.tag(machine_name)]

    r = subprocess.Popen([*NSDASH, "spawn", "-q", "-n", "-x", "-M", machine_name, "-D", str(busybox_cache),
                          "/bin/sh", "-c", "sleep 1; " + script], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = wait_for(lambda: "ip6" in families() and families(), 20, what="the machine's ip6 rule")
        lease = network.lease_of(machine_name)
        out, err = r.communicate(timeout=60)
    finally:
        if r.poll() is None:
            r.kill()
            r.communicate()
        host_log = host_server.stop()
        out_log = out_server.stop()
    assert r.returncode == 0, out + err
    prefix = lease.prefix6
    assert prefix.subnet_of(network.ula_prefix()) and network.ula_prefix().subnet_of(
        ipaddress.IPv6Network("fd00::/8"))
    assert f"inet6 {lease.guest6}" in out, out
    assert "from-the-host" in out and "from-the-outside" in out, out
    assert str(lease.guest6.ip) in host_log  # the host saw the machine's own v6 address
    assert OUT6_HOST in out_log and str(prefix.network_address)[:-1] not in out_log, out_log  # masqueraded
    assert "ip6" in seen and "ip" in seen
    assert _left_behind(machine_name) == []
    assert not any(rule.get("family") == "ip6" and rule.get("comment") == network.tag(machine_name)
                   for rule in network.nft_rules())


def test_a_dhcp_client_in_a_statically_configured_guest_gets_the_same_address(busybox_cache, machine_name):
    """Guests that ask by DHCP on their own (ifupdown, udhcpc) are answered too, with host0's address."""
    r = run_nsdash("spawn", "-q", "-n", "-x", "-M", machine_name, "-D", str(busybox_cache), "/bin/sh", "-c",
                   "ip -4 -o addr show host0; udhcpc -i host0 -n -q -f -t 5 -T 1 -s /bin/true 2>&1")
    assert r.returncode == 0, r.stdout + r.stderr
    static = r.stdout.split("inet ", 1)[1].split("/", 1)[0]
    assert f"lease of {static} obtained from " in r.stdout, r.stdout
    assert _left_behind(machine_name) == []
