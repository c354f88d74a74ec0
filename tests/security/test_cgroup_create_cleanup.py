"""A machine cgroup that cannot be made everywhere leaves nothing behind, and says why in one line."""

from __future__ import annotations

import subprocess

import pytest

from nsdash.errors import NsdashError
from nsdash.launcher.cgroup import MachineCgroup
from nsdash.system import cgroupfs


def test_a_read_only_hierarchy_leaves_no_cgroup_in_the_others(machine_name, tmp_path):
    host = cgroupfs.detect()
    if host.unified is None or "cpu" not in host.v1:
        pytest.fail("this host has no hybrid layout (cgroup2 plus the v1 cpu hierarchy)")
    ro = tmp_path / "cpu-ro"
    ro.mkdir()
    subprocess.run(["mount", "--bind", str(host.v1["cpu"]), str(ro)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
        cg = MachineCgroup(machine_name, cgroupfs.Layout("hybrid", host.root, host.unified, {"cpu": ro}))
        try:
            with pytest.raises(NsdashError, match="cannot create cgroup .*Read-only file system"):
                cg.create()
            assert not (host.unified / cg.path.lstrip("/")).exists()  # made first, removed again
        finally:
            for d in cg.dirs:
                if d.is_dir() and not str(d).startswith(str(ro)):
                    d.rmdir()
    finally:
        subprocess.run(["umount", str(ro)], check=True)
