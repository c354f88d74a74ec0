"""IPv6 for -n: the host's ULA /48, a /64 per lease, and forwarding that keeps the host's RAs (pure)."""

from __future__ import annotations

import ipaddress

import pytest

from nsdash.errors import NsdashError
from nsdash.launcher import network


def test_the_ula_prefix_is_a_48_of_fd00_derived_from_the_machine_id(tmp_path, monkeypatch):
    monkeypatch.delenv("NSDASH_NET_POOL6", raising=False)
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("3d1219c7c4c5404aaa1f6d2a48adfda4\n")
    b.write_text("0123456789abcdef0123456789abcdef\n")
    pa, pb = network.ula_prefix(str(a)), network.ula_prefix(str(a))
    assert pa == pb and pa.prefixlen == 48 and pa.subnet_of(ipaddress.IPv6Network("fd00::/8"))
    assert network.ula_prefix(str(b)) != pa  # hosts differ
    assert network.ula_prefix(str(tmp_path / "none")).prefixlen == 48  # the host name then


def test_nsdash_net_pool6_names_another_48_and_bad_ones_are_refused(monkeypatch):
    monkeypatch.setenv("NSDASH_NET_POOL6", "fd42:1:2::/48")
    assert network.ula_prefix() == ipaddress.IPv6Network("fd42:1:2::/48")
    for bad in ("2001:db8::/48", "fd42::/64", "nonsense"):
        monkeypatch.setenv("NSDASH_NET_POOL6", bad)
        with pytest.raises(NsdashError, match="NSDASH_NET_POOL6"):
            network.ula_prefix()


def test_every_block_of_the_pool_has_its_own_64_with_host_and_guest(monkeypatch):
    monkeypatch.setenv("NSDASH_NET_POOL6", "fd42:1:2::/48")
    blocks = list(network.POOL.subnets(new_prefix=network.BLOCK))
    prefixes = {network.prefix6_of(b) for b in blocks}
    assert len(prefixes) == len(blocks)
    lease = network.Lease("m", ipaddress.IPv4Network("10.229.0.4/30"))
    assert lease.prefix6.prefixlen == 64 and lease.prefix6.subnet_of(ipaddress.IPv6Network("fd42:1:2::/48"))
    assert lease.host6.ip == lease.prefix6.network_address + 1 and lease.guest6.ip == lease.prefix6.network_address + 2


def test_forwarding6_moves_ra_links_to_accept_ra_2_first(tmp_path):
    conf = tmp_path / "conf"
    for link, ra in (("all", "1"), ("default", "1"), ("eth0", "1"), ("eth1", "0"), ("eth2", "2")):
        (conf / link).mkdir(parents=True)
        (conf / link / "accept_ra").write_text(ra + "\n")
        (conf / link / "forwarding").write_text("0\n")
    network.enable_forwarding6(str(conf))
    assert (conf / "all" / "forwarding").read_text().strip() == "1"
    assert [(conf / x / "accept_ra").read_text().strip() for x in ("eth0", "eth1", "eth2", "all")] == \
        ["2", "0", "2", "1"]
    (conf / "eth1" / "accept_ra").write_text("1\n")
    network.enable_forwarding6(str(conf))  # forwarding already on: nothing is touched
    assert (conf / "eth1" / "accept_ra").read_text().strip() == "1"


def test_nft_problem_names_a_missing_binary_and_a_kernel_without_nf_tables(tmp_path, monkeypatch):
    """The one probe behind the no-nftables path: nft off $PATH, or nft present while the
    kernel refuses (a stand-in nft that answers as nft does on a kernel without nf_tables)."""
    monkeypatch.setattr(network, "_nft_state", [])
    monkeypatch.setenv("PATH", str(tmp_path))
    assert network.nft_problem() == "'nft' is not installed (nftables)" and not network.nft_available()
    with pytest.raises(NsdashError, match="need nftables"):
        network.nft_rules()
    fake = tmp_path / "nft"
    fake.write_text("#!/bin/sh\necho 'Error: Could not process rule: Operation not supported' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(network, "_nft_state", [])
    problem = network.nft_problem()
    assert problem is not None and "nf_tables" in problem and "Operation not supported" in problem
