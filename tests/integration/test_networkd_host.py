"""-n on a host where systemd-networkd runs: the ve- side is networkd's, as under nspawn (issue 19).

This host runs no networkd, so the networkd host is the Debian tree booted by nsdash
(test_systemd_host.booted_host) with a network namespace of its own (--private-network:
networkd there must not touch this host's links), networkd started inside it.  Debian's
systemd ships 80-container-ve.network, which gives every ve-* link an address from
networkd's pool and a DHCP server.  nsdash runs inside and spawns the BusyBox tree with
-n (or a zone: 80-container-vz.network); the guest asks for its address with BusyBox's
udhcpc and pings the nested host.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess

from conftest import run_nsdash, wait_for
from test_systemd_host import booted_host

from nsdash.launcher import network

# The guest's payload: DHCP on host0 (udhcpc calls itself back as the script with "bound"
# and the lease in its environment), then one ping to the router networkd named and one to
# the address in /out/peer if there is one.
GUEST = r"""#!/bin/sh
if [ "$1" = bound ]; then
    ip addr add "$ip/$mask" dev "$interface" && echo "bound $ip/$mask router $router" >> /out/result
    exit 0
fi
[ -n "$1" ] && exit 0
ip link set host0 up
udhcpc -i host0 -f -q -n -t 20 -T 1 -s /out/guest.sh >/out/udhcpc 2>&1
router=$(sed -n 's/.* router \([0-9.]*\).*/\1/p' /out/result)
ping -c 1 -W 5 "$router" >/out/ping 2>&1 && echo "reached $router" >> /out/result
if [ -f /out/peer ]; then
    ping -c 1 -W 5 "$(cat /out/peer)" >>/out/ping 2>&1 && echo "reached peer" >> /out/result
fi
echo done >> /out/result
exec sleep 600
"""


def _networkd_host(inside) -> None:
    """Start networkd in the booted host and check nsdash sees it run."""
    inside("systemctl start systemd-networkd; "
           "for i in $(seq 100); do [ -e /run/systemd/netif/state ] && break; sleep 0.1; done")
    assert inside("python3 -c 'from nsdash.launcher import network; print(network.networkd_active())'") \
        .strip() == "True"


def _guest(inside, name: str, *options: str, peer: str = "") -> str:
    """Spawn the BusyBox tree as NAME running GUEST; its /out/result once it is done."""
    out = f"/tmp/{name}"
    inside(f"mkdir -p {out}; cat > {out}/guest.sh <<'EOF'\n{GUEST}EOF\nchmod +x {out}/guest.sh"
           + (f"; echo {peer} > {out}/peer" if peer else ""))
    inside(f"python3 -m nsdash spawn --detach -q {' '.join(options)} -xD /opt/busybox -M {name} "
           f"--bind={out}:/out /bin/sh /out/guest.sh")
    inside(f"for i in $(seq 300); do grep -q done {out}/result 2>/dev/null && break; sleep 0.1; done")
    return inside(f"cat {out}/result; cat {out}/udhcpc {out}/ping")


LEASES = "python3 -c 'from nsdash.launcher import network; print(network.leases())'"


def test_the_hosts_networkd_takes_the_ve_link_and_serves_the_guest(debian_cache, busybox_cache, machine_name):
    with booted_host(debian_cache, machine_name, "--private-network",
                     f"--bind-ro={busybox_cache}:/opt/busybox") as inside:
        assert inside("ls /usr/lib/systemd/network/").split().count("80-container-ve.network") == 1
        _networkd_host(inside)
        result = _guest(inside, "guest", "-n")

        # networkd addressed the ve- link from its own pool, not nsdash's, and served the guest
        link_status = inside("networkctl --no-pager status ve-guest")
        assert "Network File: /usr/lib/systemd/network/80-container-ve.network" in link_status, link_status
        # (networkd 252 may give the link more than one /28 of its pool: systemd issue #26113)
        addresses = [ipaddress.IPv4Interface(line.split()[3])
                     for line in inside("ip -4 -o addr show dev ve-guest").splitlines()]
        assert addresses and not any(a.network.overlaps(network.POOL) for a in addresses), addresses
        router = next((a for a in addresses if f"router {a.ip}\n" in result), None)
        assert router is not None, (result, addresses, link_status)
        bound = ipaddress.IPv4Interface(result.split("bound ")[1].split()[0])
        assert bound.network == router.network and bound.ip != router.ip, result
        assert f"reached {router.ip}" in result, result

        # nsdash configured nothing: no lease, no nft table of its own (nft run from outside in
        # the nested host's network namespace: the Debian tree has no nft)
        assert inside(LEASES).strip() == "[]"
        leader = json.loads(run_nsdash("status", "-o", "json", machine_name).stdout)["leader"]
        tables = subprocess.run(["nsenter", "-t", str(leader), "-n", "nft", "list", "tables"],
                                capture_output=True, text=True, check=True).stdout
        assert "nsdash" not in tables, tables
        status = json.loads(inside("python3 -m nsdash status -o json guest"))
        assert status["network"].startswith("systemd-networkd"), status["network"]
        assert "systemd-networkd" in inside("python3 -m nsdash status guest")

        # --port: refused in one line (nsdash forwards only on links it addresses), nothing left
        r = inside("python3 -m nsdash spawn -q -n --port=8080:80 -xD /opt/busybox -M ported /bin/true", check=False)
        assert r.returncode != 0 and r.stderr.count("\n") == 1 and "--port" in r.stderr, r.stderr
        assert inside("test -e /sys/class/net/ve-ported || test -e /run/nsdash/machines/ported",
                      check=False).returncode == 1

        inside("python3 -m nsdash terminate guest; "
               "for i in $(seq 100); do [ -e /run/nsdash/machines/guest ] || break; sleep 0.1; done")
        assert inside("test -e /sys/class/net/ve-guest", check=False).returncode == 1
        assert inside(LEASES).strip() == "[]"


def test_a_zone_on_a_networkd_host_is_networkds_bridge_gone_with_its_last_machine(
        debian_cache, busybox_cache, machine_name):
    """--network-zone: nsdash makes vz-ZONE (as nspawn does) and puts vb- in it; networkd
    (80-container-vz.network) addresses the bridge and serves DHCP; two machines of the zone
    get their addresses from it and reach each other; the bridge goes with the last of them,
    also when that one's supervisor is SIGKILLed (the orphan's clean-up)."""
    with booted_host(debian_cache, machine_name, "--private-network",
                     f"--bind-ro={busybox_cache}:/opt/busybox") as inside:
        _networkd_host(inside)
        first = _guest(inside, "one", "--network-zone=lab")
        address = first.split("bound ")[1].split("/")[0]
        second = _guest(inside, "two", "--network-zone=lab", peer=address)
        bridge = [ipaddress.IPv4Interface(line.split()[3])
                  for line in inside("ip -4 -o addr show dev vz-lab").splitlines()]
        assert bridge and not any(a.network.overlaps(network.POOL) for a in bridge), bridge
        # Both leases are networkd's, in one network.  (Not checked: a ping to the router.
        # networkd 252 readdresses vz- from its pool when the bridge's carrier comes back as
        # host0 comes up, and its DHCP server keeps naming the first address: the same
        # under nspawn, systemd issue #26113.)
        leases = [ipaddress.IPv4Interface(result.split("bound ")[1].split()[0]) for result in (first, second)]
        assert leases[0].network == leases[1].network and leases[0] != leases[1], (first, second)
        assert not leases[0].network.overlaps(network.POOL), leases
        assert "reached peer" in second, second
        assert set(inside("ls /sys/class/net/vz-lab/brif").split()) == {"vb-one", "vb-two"}
        assert inside(LEASES).strip() == "[]"
        assert "zone lab" in json.loads(inside("python3 -m nsdash status -o json two"))["network"]

        inside("python3 -m nsdash terminate one; "
               "for i in $(seq 100); do [ -e /run/nsdash/machines/one ] || break; sleep 0.1; done")
        assert inside("ls /sys/class/net/vz-lab/brif").split() == ["vb-two"]  # kept for its other machine
        # the last machine's supervisor SIGKILLed: the orphan's clean-up removes vb- and the bridge
        supervisor = json.loads(inside("python3 -m nsdash status -o json two"))["supervisor"]
        inside(f"kill -KILL {supervisor}; for i in $(seq 100); do [ -e /proc/{supervisor} ] || break; sleep 0.1; done")
        r = inside("python3 -m nsdash status two", check=False)  # the next command naming it cleans up
        assert "orphaned" in r.stderr and "removed zone bridge vz-lab" in r.stderr, r.stderr
        assert inside("test -e /sys/class/net/vz-lab || test -e /sys/class/net/vb-two", check=False).returncode == 1


def test_a_networkd_guest_on_a_networkd_host_is_served_by_the_hosts_networkd(debian_cache, machine_name):
    """Networkd on both sides, nspawn's own case: the booted Debian guest (-xbD /, networkd
    enabled in the tree) asks by DHCP on host0 (80-container-host0.network) and the host's
    networkd answers on ve-; nsdash serves no DHCP of its own and takes no lease."""
    with booted_host(debian_cache, machine_name, "--private-network") as inside:
        inside("systemctl enable -q systemd-networkd")
        _networkd_host(inside)
        inside("python3 -m nsdash spawn --detach -q -n -xbD / -M deb")

        def offered() -> str:
            out = inside("networkctl --no-pager status ve-deb", check=False).stdout
            word = out.split("Offered DHCP leases:")[1].split()[0] if "Offered DHCP leases:" in out else ""
            return word if word.count(".") == 3 else ""  # "none" until the guest has asked

        address = wait_for(offered, timeout=40, step=0.5, what="networkd's DHCP lease to the guest")
        show = "python3 -m nsdash shell deb /bin/sh -c 'ip -4 -o addr show dev host0'"
        wait_for(lambda: f" {address}/" in inside(show), timeout=20, step=0.5, what=f"{address} on host0")
        assert ipaddress.IPv4Address(address) not in network.POOL
        assert inside(LEASES).strip() == "[]"
        status = json.loads(inside("python3 -m nsdash status -o json deb"))
        assert status["network"].startswith("systemd-networkd"), status["network"]
        # no DHCP server of nsdash's on the nested host: only networkd holds port 67
        holders = inside("ss -H -ulnp 'sport = :67'", check=False).stdout
        assert "python" not in holders, holders
