"""A guest's link and cgroup names that are not UTF-8 hide nothing from the host's tools.

Root inside a machine with a network of its own names its links with any bytes but '/', ':'
and blanks, and its cgroups with any bytes but '/'; the kernel writes them raw into
/proc/PID/net/dev and /proc/PID/cgroup.  Read as text, one such link made the whole
machine's traffic vanish from `cgtop --extra=net` (monitor.net.link_counters took the
decode error for a machine gone), and one process in such a cgroup ended the dashboard's
unit-of-process look-up (inside.procs.unit_of_process) in UnicodeDecodeError.  They are
read keeping the guest's bytes now (surrogateescape), shown escaped where shown.
A real BusyBox machine does it to itself.
"""

from __future__ import annotations

from pathlib import Path

from conftest import wait_for

from nsdash.inside import procs
from nsdash.inside.target import resolve
from nsdash.machines import client
from nsdash.monitor.net import link_counters

SCRIPT = r"""
ip link set lo down && ip link set lo name "$(printf '\377x')" && ip link set "$(printf '\377x')" up
d="/sys/fs/cgroup/$(printf '\377\376u')"; mkdir "$d"
(echo 0 > "$d/cgroup.procs"; exec sleep 1000) &
sleep 1000 & wait
"""


def test_undecodable_link_and_cgroup_names(detached, busybox_tree, machine_name):
    detached("-D", str(busybox_tree), "--private-network", "/bin/sh", "-c", SCRIPT)
    leader = client.status(machine_name)["leader"]
    wait_for(lambda: b"\xffx:" in Path(f"/proc/{leader}/net/dev").read_bytes(), what="the renamed link")
    links = wait_for(lambda: link_counters(leader), what="the machine's links")
    assert list(links) == ["\udcffx"]

    def moved() -> int | None:
        for p in Path(f"/proc/{leader}/task/{leader}/children").read_text().split():
            if b"\xff\xfeu" in Path(f"/proc/{p}/cgroup").read_bytes():
                return int(p)
        return None
    host_pid = wait_for(moved, what="a process in the undecodable cgroup")
    assert procs.unit_of_process(resolve(machine_name), host_pid) is None  # no unit: no traceback
