"""-U: container root is an unprivileged range on the host; attack what that should stop."""

from __future__ import annotations

import os

from conftest import run_nsdash

from nsdash.launcher import userns


def _sh(tree, name, script, *extra):
    r = run_nsdash("spawn", "-q", "-U", "-D", str(tree), "-M", name, *extra, "/bin/sh", "-c", script, timeout=60)
    return r.returncode, r.stdout.replace("\r", ""), r.stderr


def test_root_inside_is_the_picked_range_outside(busybox_tree, machine_name):
    """The chown version (test_userns_idmap has map, which -U picks on ext4)."""
    base = userns.pick_base(machine_name, userns.host_ranges(), 0)
    rc, out, err = _sh(busybox_tree, machine_name, "cat /proc/self/uid_map /proc/self/gid_map; id -u; "
                       "stat -c '%u:%g' /bin /etc/passwd", "--private-users-ownership=chown")
    assert rc == 0, err
    lines = out.split("\n")
    assert lines[0].split() == ["0", str(base), "65536"]
    assert lines[1].split() == ["0", str(base), "65536"]
    assert lines[2] == "0"
    assert lines[3:5] == ["0:0", "0:0"]  # the tree looks root-owned inside ...
    st = os.stat(busybox_tree / "etc" / "passwd")
    assert (st.st_uid, st.st_gid) == (base, base)  # ... and belongs to the range outside
    rc, out2, err = _sh(busybox_tree, machine_name, "cat /proc/self/uid_map", "--private-users-ownership=chown")
    assert out2.split() == lines[0].split()  # the same range next time: owners stay valid


def test_host_root_files_stay_out_of_reach(busybox_tree, machine_name, tmp_path):
    shared = tmp_path / "hostdir"
    shared.mkdir(mode=0o755)
    (shared / "secret").write_text("host")
    os.chmod(shared / "secret", 0o600)
    rc, out, err = _sh(busybox_tree, machine_name,
                       "cat /mnt/h/secret 2>/dev/null || echo no-read; "
                       "touch /mnt/h/new 2>/dev/null && echo WROTE || echo no-write; "
                       "stat -c '%u' /mnt/h", f"--bind={shared}:/mnt/h")
    assert rc == 0, err
    assert out.split() == ["no-read", "no-write", "65534"]  # host root is nobody in here
    assert not (shared / "new").exists()


def test_unmasking_proc_reveals_nothing_under_userns(busybox_tree, machine_name):
    """Without userns, root inside could umount the masks; with -U the kernel still guards what they hid."""
    rc, out, err = _sh(busybox_tree, machine_name,
                       "umount /proc/kallsyms 2>/dev/null; umount /proc/timer_list 2>/dev/null; "
                       "head -n 50 /proc/kallsyms | cut -d' ' -f1 | sort -u | tr '\\n' ' '; echo; "
                       "head -c 10 /proc/timer_list >/dev/null 2>&1 && echo TIMERS || echo no-timers; "
                       "mount -t proc proc /mnt 2>/dev/null && echo PROC || echo no-proc; "
                       "(echo x > /proc/sys/kernel/domainname) 2>/dev/null && echo SYSCTL || echo no-sysctl")
    assert rc == 0, err
    lines = out.split("\n")
    addresses = set(lines[0].split())
    assert addresses <= {"0000000000000000"}, addresses  # no kernel pointers for a non-init userns
    assert lines[1:4] == ["no-timers", "no-proc", "no-sysctl"]
