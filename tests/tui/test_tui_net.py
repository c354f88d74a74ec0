"""The machine list's Address column and the machine view's per-link rates: over a real
machine with -n and real traffic (root), and the line's rendering of hostile link names
(no root)."""

from __future__ import annotations

import contextlib
import socket
import threading

import pytest
from textual.widgets import Static
from tuikit import wait_for

from nsdash.errors import NsdashError
from nsdash.launcher import network
from nsdash.launcher.spec import ContainerSpec
from nsdash.machines import client
from nsdash.monitor.net import link_counters
from nsdash.tui.app import NsdashApp
from nsdash.tui.messages import LinkRate, MachineInfo
from nsdash.tui.screens.machine import MachineScreen, links_line
from nsdash.tui.widgets.machine_list import MachineList

SIZE = (160, 48)


def test_the_links_line_escapes_the_guest_s_names_and_shows_unknown_rates():
    info = MachineInfo(name="m", state="running", links=(LinkRate("host0", 2048.0, None),
                                                         LinkRate("ev\x1b[2Jil", 0.0, 10.0)))
    assert links_line(info) == "Network  host0 ↓ 2.0K/s ↑ -  ·  ev\\x1b[2Jil ↓ 0B/s ↑ 10B/s"
    assert links_line(MachineInfo(name="m", state="running")) == ""
    assert links_line(None) == ""


def test_link_counters_read_the_machine_s_namespace_and_leave_out_loopback(tmp_path):
    net = tmp_path / "42" / "net"
    net.mkdir(parents=True)
    (tmp_path / "42" / "ns").mkdir()
    (tmp_path / "42" / "ns" / "net").write_text("")  # not our namespace's inode: the machine's own
    (net / "dev").write_text(
        "Inter-|   Receive                                                |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls"
        " carrier compressed\n"
        "    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0"
        "       0          0\n"
        " host0:    5000      10    0    0    0     0          0         0      700       7    0    0    0     0"
        "       0          0\n")
    found = link_counters(42, str(tmp_path))
    assert list(found) == ["host0"]
    assert (found["host0"].rx_bytes, found["host0"].tx_bytes) == (5000, 700)
    assert link_counters(43, str(tmp_path)) == {}  # gone


class _Flood:
    """UDP datagrams from the host to the machine's address until stopped: host0 receives."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while not self.stop.wait(0.002):
                with contextlib.suppress(OSError):
                    s.sendto(b"x" * 1200, (self.address, 9))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


@pytest.mark.integration
async def test_the_machine_view_shows_host0_s_rates_under_traffic(busybox_tree, machine_name):
    client.spawn(ContainerSpec(directory=busybox_tree, machine=machine_name, boot=True, network_veth=True),
                 detach=True, notice=None)
    flood = None
    try:
        lease = network.lease_of(machine_name)
        assert lease is not None
        flood = _Flood(str(lease.guest.ip))
        app = NsdashApp(interval=0.5)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: any(m.name == machine_name for m in app.snapshot.machines),
                           what="the machine in a snapshot")
            # The Address column shows host0's address from nsdash's pool (the first one: IPv4).
            table = app.screen.query_one(MachineList)
            await wait_for(pilot, lambda: machine_name in table.rows, what="the machine's row")
            assert str(table.get_cell(machine_name, "address")) == str(lease.guest.ip)
            app.open_machine(machine_name)
            # pushed is not yet composed: wait for the view's own widgets
            await wait_for(pilot, lambda: isinstance(app.screen, MachineScreen) and app.screen.query("#machine-net"),
                           what="the machine view")

            def host0_rate() -> float:
                info = next((m for m in app.snapshot.machines if m.name == machine_name), None)
                link = next((x for x in info.links if x.name == "host0"), None) if info else None
                return link.rx or 0.0 if link else 0.0

            await wait_for(pilot, lambda: host0_rate() > 10_000, what="a receive rate on host0")
            net = app.screen.query_one("#machine-net", Static)
            await wait_for(pilot, lambda: net.display and "host0 ↓ " in str(net.render()), what="the line")
            shown = str(net.render())
            assert "host0 ↓ -" not in shown and "host0 ↓ 0B/s" not in shown, shown
    finally:
        if flood is not None:
            flood.close()
        with contextlib.suppress(NsdashError, OSError):
            client.terminate(machine_name, wait=True)
