"""Confined reads of a machine's files: nothing outside its root, nothing special, nothing unbounded."""

import os

import pytest

from nsdash.system import confined


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "host-secret").write_text("ID=host\n")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/os-release").write_text("ID=guest\n")
    (root / "etc/os-release").symlink_to("../usr/lib/os-release")
    (root / "etc/up").symlink_to("../../host-secret")
    (root / "etc/abs").symlink_to(str(tmp_path / "host-secret"))
    (root / "etc/zero").symlink_to("/dev/zero")
    (root / "etc/magic").symlink_to(f"/proc/self/root{tmp_path}/host-secret")
    os.mkfifo(root / "etc/fifo")
    (root / "etc/big").write_bytes(b"x" * (confined.SMALL + 1))
    return root


def test_symlinks_inside_the_root_are_followed(tree):
    assert confined.read_text(tree, "/etc/os-release") == "ID=guest\n"


@pytest.mark.parametrize("path", ["/etc/up", "/etc/abs", "/etc/zero", "/etc/magic", "../host-secret",
                                  "/../../host-secret"])
def test_no_path_reaches_a_host_file(tree, path):
    with pytest.raises(OSError):
        confined.read_bytes(tree, path)


def test_a_fifo_is_refused_without_blocking(tree):
    with pytest.raises(OSError):
        confined.read_bytes(tree, "/etc/fifo")


def test_a_directory_is_not_a_file(tree):
    with pytest.raises(OSError):
        confined.read_bytes(tree, "/etc")


def test_size_bound(tree):
    with pytest.raises(OSError):
        confined.read_bytes(tree, "/etc/big")
    assert len(confined.read_bytes(tree, "/etc/big", limit=confined.SMALL + 1)) == confined.SMALL + 1


def test_nofollow_refuses_a_final_symlink(tree):
    with pytest.raises(OSError):
        confined.read_bytes(tree, "/etc/os-release", nofollow=True)


def test_list_dir_is_confined(tree):
    assert "os-release" in confined.list_dir(tree, "/etc")
    (tree / "jd").symlink_to("/etc")  # the guest's /etc, never the host's
    assert sorted(confined.list_dir(tree, "/jd")) == sorted(confined.list_dir(tree, "/etc"))
    assert confined.is_dir(tree, "/etc") and not confined.is_dir(tree, "/etc/fifo")
