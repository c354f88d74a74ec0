"""The host misbehaves: a full disk, a read-only tree, no usable cgroup layout.

Each gets one clear error naming the cause; a machine already running is not harmed.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time

import pytest
from _machines import one_line_error, teardown
from conftest import NSDASH, REPO, run_nsdash, wait_for

from nsdash.launcher.cgroup import MachineCgroup
from nsdash.machines import client
from nsdash.system import syscalls


@pytest.fixture
def bystander(busybox_cache, tmp_path_factory, machine_name):
    """A machine running before the fault and checked after it."""
    name = machine_name + "-by"
    r = run_nsdash("spawn", "--detach", "-x", "-M", name, "-bD", str(busybox_cache))
    assert r.returncode == 0, r.stderr
    leader = client.status(name)["leader"]
    yield name
    status = client.status(name)
    assert status["state"] == "running" and status["leader"] == leader, "the bystander was harmed"
    teardown(name)


@contextlib.contextmanager
def small_tmpfs(path, options: str):
    path.mkdir(parents=True, exist_ok=True)
    syscalls.mount("tmpfs", str(path), "tmpfs", 0, options)
    try:
        yield path
    finally:
        syscalls.umount2(str(path), syscalls.MNT_DETACH)


def _fill(path) -> None:
    """Use up every block and inode of the file system at PATH."""
    i = 0
    with contextlib.suppress(OSError), open(path / "filler", "wb") as f:
        while True:
            f.write(b"\0" * 4096)
            f.flush()
    with contextlib.suppress(OSError):
        while True:
            (path / f"i{i}").touch()
            i += 1


def _no_machine_remains(name: str) -> None:
    cg = MachineCgroup(name)
    assert not any(d.exists() for d in cg.dirs), f"cgroup of {name} left behind"


def test_full_state_directory(busybox_tree, machine_name, tmp_path, bystander):
    with small_tmpfs(tmp_path / "state", "size=64k,nr_inodes=64,mode=0755") as state:
        _fill(state)
        env = {**os.environ, "NSDASH_STATE_DIR": str(state)}
        for args in (["--detach", "-b"], ["-q"]):
            r = subprocess.run([*NSDASH, "spawn", *args, "-M", machine_name, "-D", str(busybox_tree),
                                *([] if "-b" in args else ["/bin/true"])],
                               capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
            assert one_line_error(r), r.stderr
            assert "No space left on device" in r.stderr, r.stderr
            _no_machine_remains(machine_name)
        leftovers = {p.name for p in state.iterdir() if not p.name.startswith(("filler", "i"))}
        assert leftovers <= {"machines", "cache", ".locks"}, leftovers
        for d in leftovers:  # empty directories at most: no state entry, no run directory
            assert not [x for x in (state / d).iterdir() if d != "cache"], d


def test_console_log_on_a_full_disk_does_not_stop_the_machine(busybox_tree, machine_name, tmp_path):
    with small_tmpfs(tmp_path / "state", "size=256k,mode=0755") as state:
        env = {**os.environ, "NSDASH_STATE_DIR": str(state)}

        def nsdash(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([*NSDASH, *args], capture_output=True, text=True, env=env, cwd=REPO,
                                  timeout=60)

        r = nsdash("spawn", "--detach", "-M", machine_name, "-D", str(busybox_tree), "/bin/sh", "-c",
                   "i=0; while [ $i -lt 4000 ]; do echo flood-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; "
                   "i=$((i+1)); done; echo done-flooding; exec sleep 300")
        assert r.returncode == 0, r.stderr
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                st = os.statvfs(state)
                if st.f_bavail == 0:
                    break
                time.sleep(0.1)
            time.sleep(0.5)
            r = nsdash("status", machine_name)
            assert r.returncode == 0 and "running" in r.stdout, r.stderr
            r = nsdash("terminate", machine_name)
            assert r.returncode == 0, r.stderr
            wait_for(lambda: not (state / "machines" / machine_name).exists(), what="the entry to go")
        finally:
            env_state = os.environ.get("NSDASH_STATE_DIR")
            os.environ["NSDASH_STATE_DIR"] = str(state)
            try:
                teardown(machine_name)
            finally:
                os.environ["NSDASH_STATE_DIR"] = env_state or ""
        _no_machine_remains(machine_name)


def test_tree_on_a_read_only_file_system(busybox_tree, machine_name, tmp_path, bystander):
    ro = tmp_path / "ro"
    ro.mkdir()
    syscalls.mount(str(busybox_tree), str(ro), None, syscalls.MS_BIND)
    syscalls.mount(None, str(ro), None, syscalls.MS_BIND | syscalls.MS_REMOUNT | syscalls.MS_RDONLY)
    try:
        # -x: the overlay's upper layer is elsewhere, so a read-only tree runs fine.
        r = run_nsdash("spawn", "-q", "-x", "-M", machine_name, "-D", str(ro), "/bin/sh", "-c", "echo ok")
        assert r.returncode == 0 and "ok" in r.stdout, r.stderr
        # Without -x: it runs, or it says exactly why not.
        r = run_nsdash("spawn", "-q", "-M", machine_name, "-D", str(ro), "--bind=/tmp:/new-dir", "/bin/true")
        assert r.returncode == 0 or (one_line_error(r) and "Read-only file system" in r.stderr), r.stderr
        _no_machine_remains(machine_name)
    finally:
        syscalls.umount2(str(ro), syscalls.MNT_DETACH)


def test_no_usable_cgroup_layout(busybox_tree, machine_name, bystander):
    """In a mount namespace whose /sys/fs/cgroup is an empty tmpfs: one clear error."""
    script = (f"mount --make-rprivate / && mount -t tmpfs none /sys/fs/cgroup && "
              f"exec {' '.join(NSDASH)} spawn -q -M {machine_name} -D {busybox_tree} /bin/true")
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, cwd=REPO,
                       timeout=60)
    assert one_line_error(r) and "no usable cgroup hierarchy" in r.stderr, r.stderr
    _no_machine_remains(machine_name)
