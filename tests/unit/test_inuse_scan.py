"""The in-use scan and the cgroup layout's paths: the cheaper ways give what the plain ones gave.

launcher/treeusers._pids reads a machine's cgroup top-down and lists a directory only when its own
processes are not enough; Layout.v1_path and unified_path build one Path from the mount strings.
Checked here against the plain definitions on a made-up cgroup tree (plain directories and files).
"""

import os
from pathlib import Path

import pytest

from nsdash.launcher import treeusers
from nsdash.system import cgroupfs


def _walk_pids(cgroup: Path, limit: int) -> list[int]:
    """The definition the scan had: os.walk top-down, stop once LIMIT are found."""
    out: list[int] = []
    for sub, _, _ in os.walk(cgroup):
        try:
            with open(os.path.join(sub, "cgroup.procs")) as f:
                out.extend(int(x) for x in f.read().split())
        except OSError:
            pass
        if len(out) >= limit:
            break
    return out[:limit]


def _tree(root: Path) -> Path:
    """A scope with processes of its own, control files, and nested children, some empty."""
    layout = {
        "": [10, 11],
        "init.scope": [1],
        "system.slice": [],
        "system.slice/a.service": [20, 21, 22],
        "system.slice/b.service": [30],
        "system.slice/b.service/sub": [31, 32],
        "user.slice": [40, 41, 42, 43],
        "z-empty": [],
    }
    top = root / "machine-x.scope"
    for rel, pids in layout.items():
        d = top / rel if rel else top
        d.mkdir(parents=True, exist_ok=True)
        (d / "cgroup.procs").write_text("".join(f"{p}\n" for p in pids))
        (d / "cpu.stat").write_text("usage_usec 0\n")  # a control file: never descended into
    return top


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 8, 12, 100])
def test_pids_match_a_top_down_walk(tmp_path, limit):
    top = _tree(tmp_path)
    assert treeusers._pids(top, limit) == _walk_pids(top, limit)
    assert treeusers._pids(str(top), limit) == _walk_pids(top, limit)


def test_pids_of_a_missing_cgroup_is_empty(tmp_path):
    assert treeusers._pids(tmp_path / "gone") == []


def test_pids_stop_listing_once_enough(tmp_path, monkeypatch):
    """A cgroup whose own processes reach the limit is not listed at all."""
    top = _tree(tmp_path)
    listed: list[str] = []
    real = os.scandir

    def counting(path):
        listed.append(os.fspath(path))
        return real(path)

    monkeypatch.setattr(treeusers.posix, "scandir", counting)
    assert treeusers._pids(top, 2) == [10, 11]
    assert listed == []
    assert treeusers._pids(top, 3) == _walk_pids(top, 3)
    assert listed[0] == str(top) and len(listed) < 8  # the top first; never all eight directories


def test_layout_paths_as_the_dicts_gave_them():
    layout = cgroupfs.Layout("hybrid", "/sys/fs/cgroup", "/sys/fs/cgroup/unified",
                             {"cpu": "/sys/fs/cgroup/cpu,cpuacct", "pids": "/sys/fs/cgroup/pids"})
    for cg in ("/machine.slice/machine-a.scope", "machine.slice", "/"):
        assert layout.unified_path(cg) == layout.unified / cg.lstrip("/")
        for ctrl in ("cpu", "pids"):
            assert layout.v1_path(ctrl, cg) == layout.v1[ctrl] / cg.lstrip("/")
    assert layout.v1_path("memory", "/x") is None
    legacy = cgroupfs.Layout("legacy", "/sys/fs/cgroup", None, {"pids": "/sys/fs/cgroup/pids"})
    assert legacy.unified_path("/x") is None


def test_a_leaf_cgroup_is_not_listed(tmp_path, monkeypatch):
    """Too few processes, but no child cgroups (its link count says so): nothing to list."""
    leaf = tmp_path / "machine-leaf.scope"
    leaf.mkdir()
    (leaf / "cgroup.procs").write_text("5\n6\n")
    (leaf / "cpu.stat").write_text("usage_usec 0\n")
    if os.stat(leaf).st_nlink != 2:
        pytest.skip("this file system does not count subdirectories in a directory's links")
    listed: list[str] = []
    real = os.scandir
    monkeypatch.setattr(treeusers.posix, "scandir", lambda path: listed.append(os.fspath(path)) or real(path))
    assert treeusers._pids(leaf) == [5, 6]
    assert listed == []
    (leaf / "child").mkdir()
    (leaf / "child" / "cgroup.procs").write_text("7\n")
    assert treeusers._pids(leaf) == [5, 6, 7]
    assert listed == [str(leaf)]


def test_kernfs_counts_child_cgroups_in_links():
    """The property the scan relies on, on this host's cgroup file system."""
    layout = cgroupfs.detect()
    top = layout.unified_dir or next(iter(layout.v1_dirs.values()), None)
    if top is None:
        pytest.skip("no cgroup hierarchy mounted")
    subdirs = sum(1 for e in os.scandir(top) if e.is_dir(follow_symlinks=False))
    assert os.stat(top).st_nlink == 2 + subdirs


def _dirs_as_they_were(layout: cgroupfs.Layout, cgroup: str) -> list[Path]:
    """MachineCgroup's directories as launcher/cgroup made them (Paths), before cgroupfs.machine_dirs."""
    dirs: list[Path] = []
    unified = layout.unified_path(cgroup)
    if unified is not None:
        dirs.append(unified)
    for ctrl in (*cgroupfs.V1_CONTROLLERS, "devices", "perf_event", *sorted(layout.v1_dirs)):
        p = layout.v1_path(ctrl, cgroup)
        if p is not None and p not in dirs:
            dirs.append(p)
    return dirs


@pytest.mark.parametrize("layout", [
    cgroupfs.Layout("hybrid", "/sys/fs/cgroup", "/sys/fs/cgroup/unified",
                    {"cpu": "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
                     "pids": "/sys/fs/cgroup/pids", "name=systemd": "/sys/fs/cgroup/systemd",
                     "perf_event": "/sys/fs/cgroup/perf_event", "devices": "/sys/fs/cgroup/devices"}),
    cgroupfs.Layout("unified", "/sys/fs/cgroup", "/sys/fs/cgroup", {}),
    cgroupfs.Layout("legacy", "/sys/fs/cgroup", None, {"memory": "/sys/fs/cgroup/memory"})], ids=str)
def test_machine_dirs_as_machinecgroup_made_them(layout):
    for cg in ("/machine.slice/machine-a.scope", "machine.slice/x/", "/"):
        assert [Path(d) for d in cgroupfs.machine_dirs(layout, cg)] == _dirs_as_they_were(layout, cg)


def test_procs_reads_the_subtree_of_each_hierarchy_once_each(tmp_path):
    a, b = tmp_path / "unified" / "m.scope", tmp_path / "pids" / "m.scope"
    (a / "payload").mkdir(parents=True)
    b.mkdir(parents=True)
    (a / "cgroup.procs").write_text("30\n10\n")
    (a / "payload" / "cgroup.procs").write_text("20\n\n")
    (b / "cgroup.procs").write_text("10\n40\n")
    assert cgroupfs.procs([str(a), b, tmp_path / "gone"]) == [10, 20, 30, 40]
