"""A guest that sets its tree's mtime past the year 9999 breaks no image verb: the time shows as n/a.

An image's Modified time is its tree root's, which root inside the machine sets with touch,
under -U too (its root is the tree's owner there).  ext4 keeps it below 2446, but btrfs
(machined's /var/lib/machines) and tmpfs keep 64-bit seconds: datetime raised ValueError
("year 2466649 is out of range"), a traceback out of `nsdash list-images` and `image-status`,
and the dashboard's images screen formats the same time.  As systemd does, it is "n/a" now.
The image directory here is a tmpfs of the test's own; the guest is a BusyBox machine with -U.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from conftest import run_nsdash

from nsdash.machines import images
from nsdash.system import syscalls
from nsdash.tui.widgets.image_list import modified

FAR = 77_777_777_777_777  # seconds: the year 2466649


@pytest.fixture
def tmpfs_images(image_dir):
    """image_dir on a tmpfs (64-bit timestamps), unmounted after the test."""
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0700", "nsdash-test", str(image_dir)], check=True)
    try:
        yield image_dir
    finally:
        syscalls.umount2(str(image_dir), syscalls.MNT_DETACH)


def test_a_guests_far_mtime_shows_as_na(tmpfs_images, busybox_cache, machine_name):
    tree = tmpfs_images / machine_name
    shutil.copytree(busybox_cache, tree, symlinks=True)
    r = run_nsdash("spawn", "-q", "-U", "-M", machine_name, "-D", str(tree), "/bin/sh", "-c", f"touch -d @{FAR} /",
                   timeout=60)
    assert r.returncode == 0, r.stderr
    assert tree.stat().st_mtime == FAR  # the guest's own doing, seen on the host

    r = run_nsdash("list-images", timeout=30)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-1500:]
    assert r.stdout.splitlines()[1].split()[-1] == "n/a", r.stdout
    r = run_nsdash("image-status", machine_name, timeout=30)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-1500:]
    assert "Modified: n/a" in r.stdout, r.stdout
    r = run_nsdash("list-images", "-o", "json", timeout=30)
    assert f'"mtime": {FAR}' in r.stdout  # json keeps the number
    assert modified(images.find(machine_name).mtime) == "n/a"  # the dashboard's images screen
