"""A guest's cgroup and process names that are not UTF-8 break no host verb that reads /proc.

Root inside names its cgroups with any bytes but '/', and its PID 1 names itself (its comm)
with any bytes: /proc/PID/cgroup, /proc/PID/status and /proc/PID/stat then hold bytes that
are not UTF-8.  They were read as text: `nsdash shell` (which checks the leader's cgroup
and reads its status), `nsdash ps` (every process's cgroup: one guest process broke it for
the whole host) and `cgtop --extra=net` ended in UnicodeDecodeError's traceback.  They are
read with the guest's bytes kept as surrogates now, and shown escaped where shown.
A real BusyBox machine does it to itself.
"""

from __future__ import annotations

from pathlib import Path

from conftest import run_nsdash, wait_for

from nsdash.machines import client

SCRIPT = r"""
printf '\377\376' > /proc/self/comm
d="/sys/fs/cgroup/$(printf '\377\376x')"; mkdir "$d" && echo $$ > "$d/cgroup.procs"
sleep 1000 & wait
"""


def test_undecodable_cgroup_and_comm_of_the_guests_init(detached, busybox_tree, machine_name):
    detached("-D", str(busybox_tree), "/bin/sh", "-c", SCRIPT)
    leader = client.status(machine_name)["leader"]
    wait_for(lambda: b"\xff\xfex" in Path(f"/proc/{leader}/cgroup").read_bytes(), what="the guest's cgroup")
    assert Path(f"/proc/{leader}/comm").read_bytes() == b"\xff\xfe\n"

    r = run_nsdash("shell", machine_name, "/bin/echo", "joined", timeout=60)
    assert r.returncode == 0 and r.stdout == "joined\n" and "Traceback" not in r.stderr, r.stderr[-1500:]
    for verb in (["ps"], ["ps", "-M", machine_name], ["cgtop", "-b", "-n", "1", "--extra=net"]):
        r = run_nsdash(*verb, timeout=60)
        assert r.returncode == 0 and "Traceback" not in r.stderr, (verb, r.stderr[-1500:])
    r = run_nsdash("ps", "-M", machine_name, timeout=60)
    assert "sleep 1000" in r.stdout, r.stdout  # the machine's processes, found by their cgroup
