"""--volatile on a booted Debian tree (issue 18): yes leaves the tree unchanged, state keeps
/var in memory only (the rest read-only), overlay writes anywhere into a layer thrown away.  Each boots the session's Debian copy, writes
through a shell, powers off, and compares the tree's manifest."""

from __future__ import annotations

import pytest
from conftest import console_log, manifest_changes, run_nsdash, tree_manifest, wait_for

from nsdash.machines import state as st


@pytest.mark.parametrize("mode, script, expected", [
    ("yes", "mkdir -p /etc /var; echo x > /etc/nsdash-vol; echo y > /var/nsdash-vol; "
            "echo z 2>/dev/null > /usr/nsdash-vol || echo usr-ro; "
            "cat /etc/nsdash-vol /var/nsdash-vol; findmnt -no FSTYPE /", "usr-ro\nx\ny\ntmpfs"),
    ("state", "echo x > /etc/nsdash-vol || echo ro; echo y > /var/nsdash-vol && cat /var/nsdash-vol; "
              "findmnt -no FSTYPE /var", "ro\ny\ntmpfs"),
    # overlay: the whole tree writable through an overlay whose upper layer is thrown away
    ("overlay", "echo x > /etc/nsdash-vol && echo z > /usr/nsdash-vol && cat /etc/nsdash-vol /usr/nsdash-vol; "
                "findmnt -no FSTYPE /", "x\nz\noverlay"),
])
def test_volatile_boot_leaves_the_debian_tree_unchanged(debian_tree, detached, machine_name, mode, script,
                                                       expected):
    before = tree_manifest(debian_tree)
    detached(f"--volatile={mode}", "-bD", str(debian_tree))
    # yes: /etc starts empty, so systemd-firstboot asks its questions on the console (as under
    # nspawn) instead of a login prompt: a boot that far ran PID 1 and its services from /usr
    if mode == "yes":
        wait_for(lambda: "Please configure your system" in console_log(machine_name), timeout=90,
                 what="systemd-firstboot's questions")
    else:
        wait_for(lambda: "login:" in console_log(machine_name), timeout=90, what="the login prompt")
    r = run_nsdash("shell", machine_name, "/bin/sh", "-c", script)
    out = [x.strip() for x in r.stdout.splitlines() if x.strip()]
    assert out == expected.split("\n"), (r.stdout, r.stderr)
    assert run_nsdash("poweroff", machine_name).returncode == 0
    wait_for(lambda: not st.machine_dir(machine_name).exists(), timeout=30, what="the machine to stop")
    changes = manifest_changes(before, tree_manifest(debian_tree))
    assert changes == [], "\n".join(changes)
