"""A machine's cgroup namespace is rooted at its own cgroup in every hierarchy; nspawn's default limits hold.

On a hybrid host (this one) container root can mount any v1 hierarchy
(`mount -t cgroup -o pids none /x`).  Such a mount shows the hierarchy from
the cgroup namespace's root down, so that root must be the machine's own
cgroup in each hierarchy: then another machine's cgroups are neither visible
nor writable.  nspawn's limits: pids.max 16384 on the machine's cgroup, tmpfs
sizes 10% of RAM for /tmp and /dev/shm, 20% for /run, 4M for /dev.
"""

from __future__ import annotations

import os

import pytest
from conftest import run_nsdash, wait_for

from nsdash.launcher import names
from nsdash.launcher.cgroup import TASKS_MAX, MachineCgroup
from nsdash.machines import state as st
from nsdash.system import cgroupfs


def _v1_mount_options() -> list[str]:
    """`mount -t cgroup -o OPTS` for each v1 hierarchy the host has (name=systemd included)."""
    seen: dict[str, str] = {}
    for ctrl, path in cgroupfs.detect().v1.items():
        opts = "none,name=systemd" if ctrl == "systemd" else path.name
        seen.setdefault(str(path.resolve()), opts)
    return sorted(seen.values())


def _run_inside(tree, name, script: str, *opts: str) -> str:
    r = run_nsdash("spawn", "-q", *opts, "-D", str(tree), "-M", name, "/bin/sh", "-c", script, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_every_hierarchy_is_rooted_at_the_machines_own_cgroup(busybox_tree, machine_name):
    lines = _run_inside(busybox_tree, machine_name, "cat /proc/self/cgroup").splitlines()
    hierarchies = [ln for ln in lines if ln.count(":") >= 2]
    assert len(hierarchies) >= 1 + (len(_v1_mount_options()) if cgroupfs.detect().v1 else 0)
    for line in hierarchies:
        assert line.rsplit(":", 1)[1] == "/", line  # never /../../machine.slice/... nor the host's tree


@pytest.mark.skipif(not cgroupfs.detect().v1, reason="no v1 hierarchy on this host: nothing to mount inside")
def test_a_v1_hierarchy_mounted_inside_shows_only_the_machines_subtree(busybox_tree, machine_name, detached,
                                                                        tmp_path):
    other = f"{machine_name}-other"
    other_tree = tmp_path / other
    os.system(f"cp -a {busybox_tree} {other_tree}")
    detached("-q", "-D", str(other_tree), "/bin/sleep", "600", name=other)
    wait_for(lambda: (s := st.read_state(st.machine_dir(other))) and s.leader)
    script = ["mkdir -p /x"]
    for opts in _v1_mount_options():
        script.append(
            f"if mount -t cgroup -o {opts} none /x; then "
            f"echo \"{opts} mounted\"; "
            f"find /x -name 'machine*' | sed 's/^/{opts} sees /'; "
            f"for f in '/x/..{names.scope_path(other)}/pids.max' "
            f"'/x{names.scope_path(other)}/pids.max'; do "
            f"  (echo 3 > $f) 2>/dev/null && echo \"{opts} wrote $f\"; done; "
            f"wc -l < /x/cgroup.procs | sed 's/^/{opts} procs /'; "
            f"umount /x; else echo \"{opts} refused\"; fi")
    out = _run_inside(busybox_tree, machine_name, "; ".join(script))
    mounted = [ln.split()[0] for ln in out.splitlines() if ln.endswith(" mounted")]
    # The attack is real, for every v1 hierarchy: container root can mount each one here.
    assert sorted(mounted) == _v1_mount_options(), out
    assert " sees " not in out, out  # no machine.slice, no other machine, no host cgroup
    assert " wrote " not in out, out
    for ln in out.splitlines():
        if " procs " in ln:
            assert int(ln.rsplit(" ", 1)[1]) <= 8, ln  # only the machine's own few processes
    other_cg = MachineCgroup(other)
    for d in other_cg.dirs:
        if (d / "pids.max").exists():
            assert (d / "pids.max").read_text().strip() == str(TASKS_MAX)


def test_the_machines_cgroup_has_nspawns_tasks_limit(busybox_tree, machine_name, detached):
    detached("-q", "-D", str(busybox_tree), "/bin/sleep", "600")
    wait_for(lambda: (s := st.read_state(st.machine_dir(machine_name))) and s.leader)
    cg = MachineCgroup(machine_name)
    limits = [(d / "pids.max").read_text().strip() for d in cg.dirs if (d / "pids.max").exists()]
    assert limits and set(limits) == {str(TASKS_MAX)}


def _mem_total_kb() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    raise AssertionError("no MemTotal")


def _sizes(df_output: str) -> dict[str, int]:
    sizes = {}
    for line in df_output.splitlines()[1:]:
        f = line.split()
        if len(f) >= 6:
            sizes[f[5]] = int(f[1])
    return sizes


def test_tmpfs_sizes_are_nspawns_and_can_be_overridden(busybox_tree, machine_name):
    sizes = _sizes(_run_inside(busybox_tree, machine_name, "df -k /tmp /dev/shm /run /dev"))
    total = _mem_total_kb()
    for path, share in (("/tmp", 0.10), ("/dev/shm", 0.10), ("/run", 0.20)):
        assert abs(sizes[path] - total * share) <= total * 0.01, (path, sizes[path], total)
    assert sizes["/dev"] == 4096
    sizes = _sizes(_run_inside(busybox_tree, machine_name, "df -k /tmp /dev/shm /run", "--tmpfs=/tmp:size=1M",
                               "--tmpfs=/dev/shm:size=2M", "--tmpfs=/run:size=3M"))
    # --tmpfs on the same path replaces the default, as with nspawn, for each of them
    assert (sizes["/tmp"], sizes["/dev/shm"], sizes["/run"]) == (1024, 2048, 3072), sizes
