"""A guest's cgroup tree of any depth: the host still finds its processes and removes it.

Container root owns its delegated cgroup2 subtree and can nest cgroups as deep as it likes
(cgroup.max.depth is "max").  Python 3.11's os.walk recurses once per level, so a chain
deeper than the interpreter's recursion limit (about 1000) raised RecursionError in the
machine's teardown (MachineCgroup.remove: the machine's cgroups were left behind) and in
pids() (used to kill what remains).  Real cgroups, as root; the chain is made as a guest
would (mkdir relative to the last level) and removed by the code under test.
"""

from __future__ import annotations

import os
import subprocess
import sys

from nsdash.launcher.cgroup import MachineCgroup
from nsdash.monitor import tree
from nsdash.monitor.tree_lines import process_tree
from nsdash.system import cgroupfs

DEPTH = 1500  # beyond the recursion limit; the path stays under PATH_MAX (2 bytes a level)


def _chain(top: str, depth: int) -> None:
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            deeper = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = deeper
    finally:
        os.close(fd)


def _unchain(top: str) -> None:
    """Deepest first, for the test's own cleanup when the code under test failed."""
    levels = []
    path = top
    while os.path.isdir(os.path.join(path, "d")):
        path = os.path.join(path, "d")
        levels.append(path)
    for p in reversed(levels):
        os.rmdir(p)


def test_a_cgroup_chain_deeper_than_the_recursion_limit_is_walked_and_removed(machine_name):
    cg = MachineCgroup(machine_name)
    top = str(cg.main_dir)  # cgroup2 where there is one: the hierarchy delegated to the guest
    try:
        cg.create()
        _chain(top, DEPTH)
        assert cg.pids() == []  # no RecursionError, nothing runs in it
        # what `nsdash status` draws: every level, one line each, indented one step deeper
        groups = [os.path.relpath(p, top) for p in cgroupfs.subtree(top)][1:]
        lines = process_tree("", {g: [] for g in groups})
        assert len(lines) == DEPTH and lines[-1] == "  " * (DEPTH - 1) + "└─d"
        # the dashboard's tree (walked, or from cgtop's flat list) and `nsdash cgls`: bounded depth
        mount = top[:-len(cg.path)]
        deepest = max(tree.level(n.path) for n in tree.walk(mount, "/", with_pids=True).iter())
        assert cg.path in {n.path for n in tree.walk(mount, "/").iter()}
        assert deepest == tree.MAX_DEPTH
        flat = tree.list_cgroups(mount, cg.path)
        assert len(flat) == DEPTH + 1  # cgtop's rows keep every level
        whole = tree.from_paths(tree.list_cgroups(mount, "/"))  # a far host's watch builds it so
        assert max(tree.level(n.path) for n in whole.iter()) == tree.MAX_DEPTH
        cgls = subprocess.run([sys.executable, "-m", "nsdash", "cgls", cg.path], capture_output=True, text=True,
                              timeout=120)
        assert cgls.returncode == 0 and cgls.stderr == "", cgls.stderr[-500:]
        cg.remove(timeout=10)
        assert not any(os.path.exists(str(d)) for d in cg.dirs)
    finally:
        if os.path.isdir(top):
            _unchain(top)
            for d in cg.dirs:
                if os.path.isdir(str(d)):
                    os.rmdir(str(d))
