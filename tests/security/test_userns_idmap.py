"""-U with --private-users-ownership=map (idmapped mounts) and -U with -x, against real trees.

With map the tree's on-disk owners never move: the container sees them as its
own 0..65535 through an idmapped mount while its processes run as BASE+U on
the host, so what container root creates lands on disk owned by 0 (as with
systemd-nspawn's map).  With -x the overlay's upper layer takes every write
and goes away with the machine: the tree is left exactly as it was.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import console_log, run_nsdash, wait_for

from nsdash.launcher import userns
from nsdash.machines import state as st


def _owners(tree: Path) -> dict[str, tuple[int, int]]:
    """Every inode's (uid, gid) by path, never leaving the tree's file system."""
    found = {}
    dev = tree.lstat().st_dev
    for dirpath, dirs, files in os.walk(tree):
        dirs[:] = [d for d in dirs if os.lstat(os.path.join(dirpath, d)).st_dev == dev]
        for name in [".", *dirs, *files]:
            p = os.path.join(dirpath, name)
            st_ = os.lstat(p)
            found[os.path.normpath(p)] = (st_.st_uid, st_.st_gid)
    return found


def _metadata(tree: Path) -> list[str]:
    """Path, owners, mode, size and mtime of every inode: what "unchanged" means here."""
    out = subprocess.run(["find", str(tree), "-xdev", "-printf", "%p %U %G %m %s %T@ %y\\n"],
                         capture_output=True, text=True, check=True).stdout
    return sorted(out.splitlines())


def _shell(name: str, script: str) -> str:
    r = run_nsdash("shell", name, "/bin/sh", "-c", script, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.replace("\r", "")


def _spawn(tree: Path, name: str, script: str, *opts: str) -> tuple[int, str, str]:
    r = run_nsdash("spawn", "-q", *opts, "-D", str(tree), "-M", name, "/bin/sh", "-c", script, timeout=60)
    return r.returncode, r.stdout.replace("\r", ""), r.stderr


@pytest.fixture(scope="module")
def own_debian(debian_cache, tmp_path_factory) -> Path:
    """A Debian copy of this module's own: its owners are compared file by file."""
    dest = tmp_path_factory.mktemp("idmap") / "debian"
    subprocess.run(["cp", "-a", "--reflink=auto", str(debian_cache), str(dest)], check=True)
    return dest


def test_map_boots_debian_and_the_tree_keeps_its_on_disk_owners(own_debian, detached, machine_name):
    before = _owners(own_debian)
    assert before[str(own_debian / "etc/shadow")] == (0, 42)  # root:shadow, what the check below relies on
    base = userns.pick_base(machine_name, userns.host_ranges(), 0)
    detached("-U", "--private-users-ownership=map", "-bD", str(own_debian))
    wait_for(lambda: "login:" in console_log(machine_name), timeout=60, what="systemd's getty prompt")
    out = _shell(machine_name,
                 "systemctl is-system-running --wait; cat /proc/self/uid_map; id -u; "
                 "ls -lnd / /etc /root | cut -c 1-30 | tr -s ' ' | cut -d' ' -f3,4; "
                 "stat -c '%u:%g' /etc/shadow /var/log/journal; "
                 "rm -f /root/by-root /root/by-user; touch /root/by-root /root/by-user; "
                 "chown 1000:1001 /root/by-user; findmnt -no OPTIONS / | grep -o idmapped")
    lines = out.split("\n")
    assert lines[0] in ("running", "degraded"), out
    assert lines[1].split() == ["0", str(base), "65536"]  # the picked range
    assert lines[2] == "0"
    assert lines[3:6] == ["0 0", "0 0", "0 0"]  # ls -ln / inside: root-owned, not nobody
    assert lines[6] == "0:42" and lines[7] == f"0:{before[str(own_debian / 'var/log/journal')][1]}"
    assert lines[8] == "idmapped"
    # The container's root runs as BASE on the host.
    leader = st.read_state(st.machine_dir(machine_name)).leader
    with open(f"/proc/{leader}/status") as f:
        uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
    assert uids == [str(base)] * 4
    assert run_nsdash("poweroff", machine_name, timeout=60).returncode == 0
    wait_for(lambda: not st.machine_dir(machine_name).exists(), timeout=30, what="the machine to stop")

    after = _owners(own_debian)
    changed = {p: (before[p], after[p]) for p in before.keys() & after.keys() if before[p] != after[p]}
    assert not changed, list(changed.items())[:5]
    assert after[str(own_debian / "etc/shadow")] == (0, 42)
    # Written inside by container root (BASE on the host): on disk as 0, not BASE.
    assert after[str(own_debian / "root/by-root")] == (0, 0)
    assert after[str(own_debian / "root/by-user")] == (1000, 1001)
    # Nothing the boot wrote (journal, random seed, ...) carries a host-range owner.
    shifted = [p for p, (u, g) in after.items() if u >= 65536 or g >= 65536]
    assert not shifted, shifted[:5]


def test_auto_picks_map_on_ext4(busybox_tree, machine_name):
    """-U on ext4 maps the tree (an idmapped mount) instead of chowning it.

    What "mapped, not chowned" means on disk: no owner of anything the tree
    had moves, and what the spawn itself adds (as systemd-nspawn does, e.g.
    /etc/localtime and /etc/resolv.conf when the tree has none) lands owned by
    0, container root's owner through the map.  Whether the tree already had
    those files does not matter.
    """
    assert userns.fs_type(str(busybox_tree)) == "ext4"
    before = _owners(busybox_tree)
    rc, out, err = _spawn(busybox_tree, machine_name,
                          "stat -c '%u:%g' / /bin/busybox /etc/passwd; grep -c ' / .*idmapped' /proc/self/mountinfo",
                          "-U")  # -U: pick + auto
    assert rc == 0, err
    assert out.split() == ["0:0", "0:0", "0:0", "1"]
    after = _owners(busybox_tree)
    moved = {p: (before[p], after.get(p)) for p in before if after.get(p) != before[p]}
    assert not moved, list(moved.items())[:5]
    added = {p: after[p] for p in after.keys() - before.keys()}
    assert all(owner == (0, 0) for owner in added.values()), added


def test_userns_ephemeral_leaves_the_tree_unchanged(busybox_tree, machine_name):
    before = _metadata(busybox_tree)
    base = userns.pick_base(machine_name, userns.host_ranges(), 0)
    rc, out, err = _spawn(busybox_tree, machine_name,
                          "cat /proc/self/uid_map; stat -c '%u:%g' /etc/passwd; "
                          "echo x >> /etc/passwd && touch /new && rm /bin/true && rm -r /etc && mkdir /etc "
                          "&& mkdir -p /var/d && chown 5:5 /var/d && echo wrote",
                          "-U", "-x")
    assert rc == 0, err
    lines = out.split("\n")
    assert lines[0].split() == ["0", str(base), "65536"]
    assert lines[1:3] == ["0:0", "wrote"]
    assert _metadata(busybox_tree) == before
    assert not (st.machine_dir(machine_name)).exists()


def test_userns_ephemeral_boots_debian(own_debian, machine_name):
    """-U -x -b: systemd boots over the overlay and powers off; the tree is exactly as before."""
    before = _metadata(own_debian)
    r = run_nsdash("spawn", "-q", "-U", "-x", "-b", "-D", str(own_debian), "-M", machine_name,
                   "systemd.unit=poweroff.target", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Powering off" in r.stdout, r.stdout[-2000:]
    assert _metadata(own_debian) == before


def test_userns_ephemeral_refuses_chown(busybox_tree, machine_name):
    before = _metadata(busybox_tree)
    rc, _, err = _spawn(busybox_tree, machine_name, "true", "-U", "-x", "--private-users-ownership=chown")
    assert rc != 0 and err.count("\n") == 1 and "-x/--ephemeral" in err, err
    assert _metadata(busybox_tree) == before


@pytest.fixture
def ramfs_tree(busybox_cache, tmp_path, machine_name) -> Path:
    """The BusyBox tree on ramfs, a file system without idmapped-mount support."""
    mnt = tmp_path / "ramfs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "ramfs", "ramfs", str(mnt)], check=True)
    try:
        dest = mnt / machine_name
        subprocess.run(["cp", "-a", str(busybox_cache), str(dest)], check=True)
        yield dest
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_map_on_a_file_system_without_idmap_support_is_one_line(ramfs_tree, machine_name):
    before = _metadata(ramfs_tree)
    for extra in ([], ["-x"]):
        rc, out, err = _spawn(ramfs_tree, machine_name, "echo RAN", "-U", "--private-users-ownership=map", *extra)
        assert rc != 0 and "RAN" not in out
        assert err.count("\n") == 1 and "(ramfs) does not support idmapped mounts" in err, err
        assert "Traceback" not in err
        assert _metadata(ramfs_tree) == before
        assert not st.machine_dir(machine_name).exists()
    # auto probes the same refusal and falls back to chown: the owners move into the range.
    base = userns.pick_base(machine_name, userns.host_ranges(), 0)
    rc, out, err = _spawn(ramfs_tree, machine_name, "stat -c '%u:%g' /etc/passwd", "-U")
    assert rc == 0, err
    assert out.split() == ["0:0"]
    assert os.stat(ramfs_tree / "etc/passwd").st_uid == base


def test_map_refuses_a_tree_an_earlier_chown_shifted(busybox_tree, machine_name):
    base = userns.pick_base(machine_name, userns.host_ranges(), 0)
    userns.shift_ownership(busybox_tree, base, userns.RANGE_SIZE)
    rc, _, err = _spawn(busybox_tree, machine_name, "true", "-U", "--private-users-ownership=map")
    assert rc != 0 and err.count("\n") == 1 and "needs a tree owned by IDs 0..65535" in err, err
    # auto stays on chown for such a tree (and the container still sees root-owned files).
    rc, out, err = _spawn(busybox_tree, machine_name, "stat -c '%u:%g' /etc/passwd", "-U")
    assert rc == 0, err
    assert out.split() == ["0:0"]


def test_userns_ephemeral_host_root_names_the_mounts_below(machine_name):
    """-U -x -D /: the host's root has proc, sysfs, ... below it, which cannot be idmapped."""
    r = run_nsdash("spawn", "-q", "-U", "-x", "-D", "/", "-M", machine_name, "/bin/true")
    assert r.returncode != 0 and r.stderr.count("\n") == 1, r.stderr
    assert "do not all support idmapped mounts" in r.stderr and "proc" in r.stderr, r.stderr
    assert not st.machine_dir(machine_name).exists()
