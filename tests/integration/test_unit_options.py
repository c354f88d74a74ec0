"""--slice, --property and --keep-unit on a host without systemd: nsdash makes the cgroups
and writes what it can map (v1 files here: this host's cgroup2 has no controllers)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_nsdash, wait_for

from nsdash.launcher import names
from nsdash.system import cgroupfs

LAYOUT = cgroupfs.detect()


def spawn(tree: Path, *args: str):
    return run_nsdash("spawn", "-q", "-P", "-D", str(tree), *args)


def _v1(controller: str, cgroup: str, name: str) -> str:
    path = LAYOUT.v1_path(controller, cgroup)
    assert path is not None
    return (path / name).read_text().strip()


def test_properties_are_written_to_the_machines_cgroup_files(detached, busybox_tree, machine_name):
    detached("-D", str(busybox_tree), "--property=TasksMax=77", "--property=MemoryMax=64M",
             "--property=MemoryHigh=32M", "--property=CPUQuota=50%", "--property=CPUWeight=200",
             "/bin/sh", "-c", "sleep 60")
    cgroup = names.scope_path(machine_name)
    assert _v1("pids", cgroup, "pids.max") == "77"
    assert _v1("memory", cgroup, "memory.limit_in_bytes") == str(64 << 20)
    assert _v1("memory", cgroup, "memory.soft_limit_in_bytes") == str(32 << 20)
    assert (_v1("cpu", cgroup, "cpu.cfs_quota_us"), _v1("cpu", cgroup, "cpu.cfs_period_us")) == ("50000", "100000")
    assert _v1("cpu", cgroup, "cpu.shares") == str(200 * 1024 // 100)
    status = json.loads(run_nsdash("status", "-o", "json", machine_name).stdout)
    assert status["limits"] == {"CPUQuota": "50%", "MemoryMax": str(64 << 20), "MemoryHigh": str(32 << 20),
                                "TasksMax": "77"}

    # changed live, as systemctl set-property --runtime would, and shown by status and cgtop
    r = run_nsdash("set-property", machine_name, "MemoryMax=32M", "TasksMax=55")
    assert r.returncode == 0, r.stderr
    assert _v1("memory", cgroup, "memory.limit_in_bytes") == str(32 << 20)
    assert "Limits: CPUQuota=50% MemoryMax=33554432 MemoryHigh=33554432 TasksMax=55" in \
        run_nsdash("status", machine_name).stdout
    top = run_nsdash("cgtop", "-b", "-n1", "--extra=limit").stdout
    assert any(line.split()[0] == cgroup and line.split()[-1] == "32.0M" for line in top.splitlines()), top
    r = run_nsdash("set-property", machine_name, "KillMode=mixed")
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "not booted with systemd" in r.stderr
    assert run_nsdash("terminate", machine_name).returncode == 0


def test_slice_places_the_machine_and_goes_with_it(busybox_tree, machine_name):
    # Inside, the cgroup namespace makes the machine's own cgroup "/": look from the host
    # while the payload runs, through the machine's own cgroup.procs.
    scope = names.scope_path(machine_name, f"{machine_name}-web.slice")
    assert scope.endswith(f"/{machine_name}.slice/{machine_name}-web.slice/{names.scope_name(machine_name)}")
    path = LAYOUT.v1_path("pids", scope)
    assert path is not None
    r = spawn(busybox_tree, "-M", machine_name, f"--slice={machine_name}-web", "--keep-unit",
              "/bin/sh", "-c", "grep :pids: /proc/self/cgroup")
    assert r.returncode == 0 and r.stdout.strip().endswith(":pids:/"), r.stderr
    detached = run_nsdash("spawn", "--detach", "-q", "-M", machine_name, "-D", str(busybox_tree),
                          f"--slice={machine_name}-web", "/bin/sh", "-c", "sleep 60")
    assert detached.returncode == 0, detached.stderr
    try:
        assert (path / "cgroup.procs").read_text().split(), "the payload is not in the slice's scope"
    finally:
        assert run_nsdash("terminate", machine_name).returncode == 0
    for hierarchy in LAYOUT.hierarchies():
        assert not (hierarchy / f"{machine_name}.slice").exists()


def test_machine_slice_goes_with_the_last_machine(busybox_tree, machine_name):
    """nsdash makes machine.slice with a machine on a host without systemd and takes it away
    with the last one, as systemd stops an unneeded slice; one holding another machine stays."""
    r = spawn(busybox_tree, "-M", machine_name, "/bin/true")
    assert r.returncode == 0, r.stderr

    def gone_or_held(top: Path) -> bool:
        """Other runs' machines come and go meanwhile: one read of the slice and its machines
        may straddle another's start or end, the next one does not."""
        try:
            return any(c.is_dir() for c in top.iterdir())
        except FileNotFoundError:
            return True

    for hierarchy in LAYOUT.hierarchies():
        top = hierarchy / names.SLICE
        wait_for(lambda top=top: gone_or_held(top), timeout=5, what=f"{top} gone, or still holding another machine")


def test_unmappable_or_bad_properties_are_refused_in_one_line_leaving_nothing(busybox_tree, machine_name):
    cases = {("--property=KillMode=mixed",): "not booted with systemd",
             ("--property=TasksMax=lots",): "Failed to parse TasksMax= value 'lots'",
             ("--property=TasksMax",): "Not an assignment",
             ("--property=CPUQuota=0%",): "Failed to parse CPUQuota=",
             ("-S", "-web"): "not a valid slice name"}
    for args, message in cases.items():
        r = spawn(busybox_tree, "-M", machine_name, *args, "/bin/true")
        assert r.returncode != 0 and r.stderr.count("\n") == 1 and message in r.stderr, (args, r.stderr)
        assert r.stderr.startswith("nsdash: ") and "Traceback" not in r.stderr
        for hierarchy in LAYOUT.hierarchies():
            assert not (hierarchy / names.scope_path(machine_name).lstrip("/")).exists(), args
