"""launcher/network.py's pure parts: --port values, the host's routes, the pool."""

from __future__ import annotations

import ipaddress

import pytest

from nsdash.errors import NsdashError
from nsdash.launcher import network


@pytest.mark.parametrize(("value", "want"), [
    ("80", "tcp:80:80"), ("8080:80", "tcp:8080:80"), ("udp:53", "udp:53:53"), ("tcp:1:65535", "tcp:1:65535"),
])
def test_port_values(value, want):
    assert str(network.parse_port(value)) == want


@pytest.mark.parametrize(("value", "words"), [
    ("sctp:80", "unknown protocol 'sctp'"), ("0", "invalid port '0'"), ("80:", "invalid port ''"),
    ("65536", "invalid port '65536'"), ("tcp:", "invalid port ''"), ("x", "invalid port 'x'"),
])
def test_bad_port_values(value, words):
    with pytest.raises(ValueError, match=words):
        network.parse_port(value)


ROUTES = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
ve-a\t0000E50A\t00000000\t0001\t0\t0\t0\tFCFFFFFF\t0\t0\t0
"""


def test_host_routes_leave_the_default_out(tmp_path):
    path = tmp_path / "route"
    path.write_text(ROUTES)
    assert network.host_routes(str(path)) == [ipaddress.IPv4Network("192.0.2.0/24"),
                                              ipaddress.IPv4Network("10.229.0.0/30")]


@pytest.fixture
def pool_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NSDASH_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(network, "LOCK", str(tmp_path / "lock"))
    route = tmp_path / "route"
    route.write_text(ROUTES)
    real = network.host_routes
    monkeypatch.setattr(network, "host_routes", lambda: real(str(route)))
    return tmp_path


def test_the_pool_skips_routed_and_leased_blocks_and_gives_them_back(pool_dir):
    with network.locked():
        a = network.allocate("a")
        b = network.allocate("b")
    assert str(a.block) == "10.229.0.4/30"  # 10.229.0.0/30 is routed on the host
    assert (str(a.host), str(a.guest)) == ("10.229.0.5/30", "10.229.0.6/30")
    assert str(b.block) == "10.229.0.8/30"
    assert network.lease_of("a") == a
    with network.locked():
        assert network.release("a") == ["10.229.0.4/30"]
        assert network.allocate("c").block == a.block  # a freed block is reused
    assert network.lease_of("a") is None


def test_an_exhausted_pool_is_one_error(pool_dir):
    tiny = ipaddress.IPv4Network("10.229.0.0/29")  # two blocks, the first routed
    with network.locked():
        network.allocate("a", tiny)
        with pytest.raises(NsdashError, match="exhausted"):
            network.allocate("b", tiny)


def test_networkd_counts_as_running_only_with_its_state_file_and_its_process(tmp_path):
    """The host's networkd takes the ve- side (as under nspawn) only while it runs: a state file
    left in /run by a networkd that has gone (/run is on disk here) does not count."""
    run, proc = tmp_path / "netif", tmp_path / "proc"
    (proc / "1").mkdir(parents=True)
    (proc / "1" / "comm").write_text("init\n")
    (proc / "self").mkdir()
    assert not network.networkd_active(str(run), str(proc))
    run.mkdir()
    (run / "state").write_text("OPER_STATE=routable\n")
    assert not network.networkd_active(str(run), str(proc))  # a stale state file
    (proc / "77").mkdir()
    (proc / "77" / "comm").write_text("systemd-network\n")  # comm is cut at 15 characters
    assert network.networkd_active(str(run), str(proc))
    (run / "state").unlink()
    assert not network.networkd_active(str(run), str(proc))


def test_a_guest_enables_networkd_by_a_wants_link_read_inside_its_tree(tmp_path):
    wants = tmp_path / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True)
    assert not network.guest_networkd(str(tmp_path))
    (wants / "systemd-networkd.service").symlink_to("/lib/systemd/system/systemd-networkd.service")
    assert network.guest_networkd(str(tmp_path))


def test_only_empty_zone_bridges_that_nsdash_does_not_lease_go_with_networkd(pool_dir):
    """Where networkd runs, a zone's bridge holds no lease of nsdash's: it goes once no link is
    in it (nspawn's remove_bridge); a bridge with a port, a leased zone's and others stay."""
    net = pool_dir / "net"
    for name, ports in (("vz-empty", []), ("vz-used", ["vb-a"]), ("vz-leased", []), ("br0", [])):
        (net / name / "brif").mkdir(parents=True)
        for port in ports:
            (net / name / "brif" / port).touch()
    (net / "vz-notabridge").mkdir()  # no brif: not a bridge
    with network.locked():
        network.allocate(network.zone_owner("leased"), prefix=network.ZONE_BLOCK)
        assert network._drop_empty_networkd_zones(str(net)) == ["vz-empty"]
