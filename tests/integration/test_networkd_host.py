"""-n on a host where systemd-networkd runs: the ve- side is networkd's, as under nspawn (issue 19).

This host runs no networkd, so the networkd host is the Debian tree booted by nsdash
(test_systemd_host.booted_host) with a network namespace of its own (--private-network:
networkd there must not touch this host's links), networkd started inside it.  Debian's
systemd ships 80-container-ve.network, which gives every ve-* link an address from
networkd's pool and a DHCP server.  nsdash runs inside and spawns the BusyBox tree with
-n; the guest asks for its address with BusyBox's udhcpc and pings the nested host.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess

from conftest import run_nsdash
from test_systemd_host import booted_host

from nsdash.launcher import network

# The guest's payload: DHCP on host0 (udhcpc calls itself back as the script with "bound"
# and the lease in its environment), then one ping to the router networkd named.
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
echo done >> /out/result
exec sleep 600
"""


def test_the_hosts_networkd_takes_the_ve_link_and_serves_the_guest(debian_cache, busybox_cache, machine_name):
    with booted_host(debian_cache, machine_name, "--private-network",
                     f"--bind-ro={busybox_cache}:/opt/busybox") as inside:
        assert inside("ls /usr/lib/systemd/network/").split().count("80-container-ve.network") == 1
        inside("systemctl start systemd-networkd; "
               "for i in $(seq 100); do [ -e /run/systemd/netif/state ] && break; sleep 0.1; done")
        assert inside("python3 -c 'from nsdash.launcher import network; print(network.networkd_active())'") \
            .strip() == "True"

        inside(f"mkdir -p /tmp/out; cat > /tmp/out/guest.sh <<'EOF'\n{GUEST}EOF\nchmod +x /tmp/out/guest.sh")
        inside("python3 -m nsdash spawn --detach -q -n -xD /opt/busybox -M guest "
               "--bind=/tmp/out:/out /bin/sh /out/guest.sh")
        inside("for i in $(seq 300); do grep -q done /tmp/out/result 2>/dev/null && break; sleep 0.1; done")
        result = inside("cat /tmp/out/result; cat /tmp/out/udhcpc /tmp/out/ping")

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

        # nsdash configured nothing: no lease, no nft table of its own, nothing on host0 but DHCP's
        leases = "python3 -c 'from nsdash.launcher import network; print(network.leases())'"
        assert inside(leases).strip() == "[]"
        leader = json.loads(run_nsdash("status", "-o", "json", machine_name).stdout)["leader"]
        tables = subprocess.run(["nsenter", "-t", str(leader), "-n", "nft", "list", "tables"],
                                capture_output=True, text=True, check=True).stdout
        assert "nsdash" not in tables, tables
        status = json.loads(inside("python3 -m nsdash status -o json guest"))
        assert status["network"].startswith("systemd-networkd"), status["network"]
        assert "systemd-networkd" in inside("python3 -m nsdash status guest")
