"""clone where the file system can do better than a copy: a btrfs snapshot of a subvolume
image, and a reflink copy (blocks shared, not written again) on btrfs and on XFS with
reflink=1.

Each test makes its own file system in a sparse file under the test's temporary
directory, mounts it (mount -o loop: the loop device is set to clear itself on the
unmount), points NSDASH_IMAGE_PATH at it, and unmounts it at the end; the suite's leak
check then finds no mount and no loop device of this session.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_nsdash

BIG = 1 << 20  # a file large enough to have real extents (btrfs keeps small files inline)


def _mkfs(kind: str) -> list[str]:
    return {"btrfs": ["mkfs.btrfs", "-q"], "xfs": ["mkfs.xfs", "-q", "-m", "reflink=1"]}[kind]


@contextlib.contextmanager
def _mounted(kind: str, tmp_path: Path, monkeypatch) -> Iterator[tuple[str, Path]]:
    """(KIND, a mounted file system of that kind), which is also the image directory."""
    if not shutil.which(_mkfs(kind)[0]):
        pytest.fail(f"{_mkfs(kind)[0]} is missing: install the Makefile's APT_PACKAGES")
    backing, mnt = tmp_path / f"{kind}.img", tmp_path / "mnt"
    with open(backing, "wb") as f:
        f.truncate(320 << 20)  # XFS wants 300 MiB at least; sparse, so nothing is written
    subprocess.run([*_mkfs(kind), str(backing)], check=True, capture_output=True)
    mnt.mkdir()
    subprocess.run(["mount", "-o", "loop", str(backing), str(mnt)], check=True)
    monkeypatch.setenv("NSDASH_IMAGE_PATH", str(mnt))
    try:
        yield kind, mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
        # Autoclear lets go when the last opener closes, which the kernel finishes in a
        # work item after umount returns (seen still attached once, at load 3): wait for it.
        deadline = time.monotonic() + 10
        while (left := subprocess.run(["losetup", "-j", str(backing)], capture_output=True, text=True).stdout):
            if time.monotonic() > deadline:
                subprocess.run(["losetup", "-d", left.split(":")[0]], check=False)
                pytest.fail(f"the loop device did not clear itself 10 s after umount: {left}")
            time.sleep(0.05)


@pytest.fixture(params=["btrfs", "xfs"])
def fs(request, tmp_path, monkeypatch) -> Iterator[tuple[str, Path]]:
    with _mounted(request.param, tmp_path, monkeypatch) as found:
        yield found


@pytest.fixture
def btrfs_fs(tmp_path, monkeypatch) -> Iterator[Path]:
    with _mounted("btrfs", tmp_path, monkeypatch) as (_, mnt):
        yield mnt


def _fill(tree: Path, busybox: Path) -> None:
    subprocess.run(["cp", "-a", f"{busybox}/.", str(tree)], check=True)
    (tree / "big").write_bytes(os.urandom(BIG))


def _shared(path: Path) -> bool:
    """Whether PATH's extents are shared with another file (filefrag's 'shared' flag)."""
    out = subprocess.run(["filefrag", "-v", str(path)], capture_output=True, text=True, check=True).stdout
    return "shared" in out


def _ok(*args: str) -> str:
    r = run_nsdash(*args)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_clone_shares_blocks_by_reflink(fs, busybox_cache, machine_name):
    kind, mnt = fs
    tree = mnt / machine_name
    tree.mkdir()
    _fill(tree, busybox_cache)
    assert not _shared(tree / "big")
    _ok("clone", machine_name, machine_name + "-c")
    copy = mnt / (machine_name + "-c")
    assert (copy / "big").read_bytes() == (tree / "big").read_bytes()
    assert _shared(copy / "big") and _shared(tree / "big"), f"{kind}: the clone copied the blocks"
    assert os.stat(copy).st_ino != 256  # a plain directory, not a subvolume (inode 256 on btrfs)
    assert f'"name": "{machine_name}-c", "type": "directory"' in _ok("list-images", "-o", "json")
    _ok("remove", machine_name + "-c", machine_name)
    assert os.listdir(mnt) == []


def _btrfs(*args: str) -> str:
    return subprocess.run(["btrfs", *args], capture_output=True, text=True, check=True).stdout


def _field(subvolume: Path, label: str) -> str:
    """A field of `btrfs subvolume show` (label, a colon, tabs, the value)."""
    for line in _btrfs("subvolume", "show", str(subvolume)).splitlines():
        key, _, value = line.strip().partition(":")
        if key == label:
            return value.strip()
    raise AssertionError(f"no {label} for {subvolume}")


def test_clone_of_a_subvolume_is_a_btrfs_snapshot(btrfs_fs, busybox_cache, machine_name):
    mnt = btrfs_fs
    tree = mnt / machine_name
    _btrfs("subvolume", "create", str(tree))
    _fill(tree, busybox_cache)
    status = _ok("image-status", "-o", "json", machine_name)
    assert '"type": "subvolume"' in status

    _ok("clone", machine_name, machine_name + "-s")
    snap = mnt / (machine_name + "-s")
    assert _field(snap, "Parent UUID") == _field(tree, "UUID")  # a snapshot of the image, not a copy
    assert (snap / "big").read_bytes() == (tree / "big").read_bytes()
    assert not [n for n in os.listdir(mnt) if n.startswith(".")]

    _ok("read-only", machine_name + "-s")
    assert _btrfs("property", "get", "-ts", str(snap), "ro").strip() == "ro=true"
    assert '"ro": true' in _ok("image-status", "-o", "json", machine_name + "-s")
    with pytest.raises(OSError):
        (snap / "new").write_text("x")
    _ok("read-only", machine_name + "-s", "no")
    assert _btrfs("property", "get", "-ts", str(snap), "ro").strip() == "ro=false"

    _ok("clone", "--read-only", machine_name, machine_name + "-r")
    assert _btrfs("property", "get", "-ts", str(mnt / (machine_name + "-r")), "ro").strip() == "ro=true"
    _ok("remove", machine_name + "-s", machine_name + "-r", machine_name)  # subvolume delete
    assert os.listdir(mnt) == []
    assert _btrfs("subvolume", "list", str(mnt)) == ""
