"""Fixed, deterministic data for rendering tests: two machines, a small tree, a journal.

Used only where the test is about how things look (snapshot tests); every
behaviour test runs over real machines.
"""

from __future__ import annotations

from collections.abc import Sequence

from nsdash.monitor.counters import Counters
from nsdash.monitor.display import Row
from nsdash.monitor.tree import CgroupNode
from nsdash.tui.messages import ImageRow, JournalLine, MachineInfo, Snapshot

T0 = 1_764_400_000.0  # a fixed "now" (epoch seconds)

MACHINES = (
    MachineInfo("demo-busybox", "running", "busybox 1", "-", T0 - 754, "/machine.slice/machine-demo\\x2dbusybox.scope",
                4242, 1, True, "/var/cache/nsdash/trees/busybox"),
    MachineInfo("demo-debian", "running", "debian 12", "10.0.0.2", T0 - 3 * 3600 - 120,
                "/machine.slice/machine-demo\\x2ddebian.scope", 4300, 2, True, "/var/cache/nsdash/trees/debian"),
)

_BB = "/machine.slice/machine-demo\\x2dbusybox.scope"
_DEB = "/machine.slice/machine-demo\\x2ddebian.scope"

TREE = CgroupNode("/", (
    CgroupNode("/init.scope", (), (1,)),
    CgroupNode("/machine.slice", (
        CgroupNode(_BB, (CgroupNode(_BB + "/payload", (), (4242, 4250, 4251)),), ()),
        CgroupNode(_DEB, (
            CgroupNode(_DEB + "/init.scope", (), (4300,)),
            CgroupNode(_DEB + "/system.slice", (
                CgroupNode(_DEB + "/system.slice/systemd-journald.service", (), (4310,)),
                CgroupNode(_DEB + "/system.slice/dbus.service", (), (4320,)),
            ), ()),
        ), ()),
    ), ()),
    CgroupNode("/system.slice", (CgroupNode("/system.slice/secret.service", (), None, unreadable=True),), ()),
), ())

COMMANDS = {1: "/sbin/docker-init -- sleep infinity", 4242: "init", 4250: "/sbin/getty -L 0 console vt100",
            4251: "/bin/sh /usr/local/bin/demo-ticker", 4300: "/sbin/init", 4310: "/lib/systemd/systemd-journald",
            4320: "/usr/bin/dbus-daemon --system --address=systemd: --nofork"}


def _row(path: str, tasks: int | None, cpu: float | None, mem: int | None, rd: float | None, wr: float | None) -> Row:
    return Row(path, tasks, cpu, None, mem, rd, wr, Counters(tasks=tasks, memory=mem))


ROWS = (
    _row("/", 120, 31.5, 2_100_000_000, 40960.0, 8192.0),
    _row("/machine.slice", 9, 12.2, 180_000_000, 0.0, 4096.0),
    _row(_DEB, 6, 8.7, 150_000_000, 0.0, 4096.0),
    _row(_BB, 3, 3.5, 30_000_000, 0.0, 0.0),
    _row(_DEB + "/system.slice", 4, 2.1, 90_000_000, 0.0, 2048.0),
    _row("/init.scope", 1, 0.0, 4_000_000, None, None),
    _row("/system.slice", 30, 17.0, 900_000_000, 1024.0, 0.0),
)

MACHINE_OF = {_BB: "demo-busybox", _BB + "/payload": "demo-busybox", _DEB: "demo-debian",
              _DEB + "/init.scope": "demo-debian", _DEB + "/system.slice": "demo-debian",
              _DEB + "/system.slice/systemd-journald.service": "demo-debian",
              _DEB + "/system.slice/dbus.service": "demo-debian"}


def snapshot(step: int = 0) -> Snapshot:
    return Snapshot(float(step), MACHINES, TREE, ROWS, COMMANDS, MACHINE_OF)


def cpu_history(name: str) -> Sequence[float]:
    base = 8.0 if name == "demo-debian" else 3.0
    return [base + (i * 7 % 11) for i in range(60)]


JOURNAL = tuple(
    JournalLine(int((T0 - 60 + i * 5) * 1e6), "demo-debian", p, ident, None, msg)
    for i, (p, ident, msg) in enumerate([
        (6, "systemd", "Started systemd-journald.service - Journal Service."),
        (5, "systemd", "Reached target multi-user.target - Multi-User System."),
        (4, "dbus-daemon", "Unknown username \"systemd-timesync\" in message bus configuration file"),
        (3, "demo", "failed to reach the update server: connection refused"),
        (6, "login", "ROOT LOGIN ON console"),
        (7, "systemd", "debug: unit state changed"),
    ])
) + (JournalLine(int((T0 - 20) * 1e6), "demo-debian", 6, None, None, "", event="reboot"),)


IMAGES = (
    ImageRow("debian", "directory", False, 271_581_184, T0 - 86_400 * 3, "/var/lib/machines/debian",
             ("demo-debian",), "Debian GNU/Linux 12 (bookworm)"),
    ImageRow("busybox", "directory", False, 2_093_056, T0 - 3600, "/var/lib/machines/busybox",
             ("busybox-8f3a0c1d2e4b5a69",), "nsdash BusyBox demo"),
    ImageRow("golden", "directory", True, 268_435_456, T0 - 86_400 * 30, "/var/lib/machines/golden",
             (), "Debian GNU/Linux 12 (bookworm)"),
    ImageRow("appliance", "raw", False, 1_073_741_824, T0 - 86_400 * 7, "/var/lib/machines/appliance.raw"),
    ImageRow("hostile", "directory", False, None, T0, "/var/lib/machines/hostile",
             (), "\x1b]0;owned\x07 [@click=app.quit]"),
)

# debootstrap's steps as the create form shows them (a bookworm run, shortened)
CREATE_STEPS = (
    "I: Retrieving InRelease", "I: Checking Release signature", "I: Retrieving Packages",
    "I: Validating Packages", "I: Resolving dependencies of required packages...",
    "I: Resolving dependencies of base packages...", "I: Retrieving adduser 3.134",
    "I: Validating adduser 3.134", "I: Retrieving apt 2.6.1", "I: Validating apt 2.6.1",
    "I: Extracting adduser...", "I: Extracting apt...", "I: Installing core packages...",
    "I: Unpacking required packages...", "I: Unpacking adduser...",
)
