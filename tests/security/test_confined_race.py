"""Confined reads on a busy host: openat2's RESOLVE_IN_ROOT answers EAGAIN when any mount
or rename on the system races with a `..` in the lookup.  Mounts come and go all the time
on a host that runs machines; a guest's `..` symlink must still read, never fail as if the
file were refused (seen once in the suite while other sessions mounted)."""

from __future__ import annotations

import os
import subprocess
import time

from nsdash.system import confined


def test_reads_through_dotdot_hold_while_mounts_churn(tmp_path):
    root = tmp_path / "root"
    (root / "a/b").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc/os-release").write_text("ID=churn\n")
    os.symlink("../../etc", root / "a/b/up")  # a climb that stays inside: the lookup has `..`
    point = tmp_path / "m"
    point.mkdir()
    # A private mount namespace: the churn touches only the global mount sequence, no one's view.
    churn = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c",
                              f"while :; do mount -t tmpfs none {point}; umount {point}; done"])
    try:
        fd = confined.open_root(root)
        try:
            reads, deadline = 0, time.monotonic() + 1.5
            while time.monotonic() < deadline:
                assert confined.read_text(fd, "a/b/up/os-release") == "ID=churn\n"
                reads += 1
        finally:
            os.close(fd)
    finally:
        churn.kill()
        churn.wait()
    assert reads > 1000  # enough lookups to have met the race (about 1 in 1,300 here without the retry)
