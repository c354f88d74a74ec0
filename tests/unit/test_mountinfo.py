"""nsdash.system.mountinfo: the one reader of which mount points lie below a path."""

from __future__ import annotations

from nsdash.system import mountinfo


def test_mountinfo_points_below_a_path_are_unescaped(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text("1 0 8:1 / / rw - ext4 /dev/vda rw\n"
                    "2 1 0:5 / /run/x rw - tmpfs tmpfs rw\n"
                    "3 2 0:6 / /run/x/a\\040b rw - tmpfs tmpfs rw\n"
                    "4 1 0:7 / /run/xy rw - tmpfs tmpfs rw\n")
    assert mountinfo.mounts_under("/run/x", str(info)) == ["/run/x", "/run/x/a b"]
    assert mountinfo.mounts_under("/", str(info))[0] == "/"
