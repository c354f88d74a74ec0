"""Confined reads of a machine's files: nothing outside its root, nothing special, nothing unbounded."""

import os
import subprocess
import sys
from pathlib import Path

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


def test_a_symlinked_directory_on_the_way_is_followed_inside_the_root(tree):
    """The component walk hands a path with a symlink (or '..') on the way to openat2: a guest's
    /var/log -> /srv/log still reads, inside the root; one aimed out of the root does not."""
    (tree / "srv/log").mkdir(parents=True)
    (tree / "srv/log/machine-id").write_text("abc\n")
    (tree / "var").mkdir()
    (tree / "var/log").symlink_to("/srv/log")
    assert confined.read_text(tree, "/var/log/machine-id") == "abc\n"
    assert confined.read_text(tree, "/usr/../srv/log/machine-id") == "abc\n"
    assert confined.list_dir(tree, "/var/log") == ["machine-id"]
    (tree / "var/up").symlink_to("../../..")
    with pytest.raises(FileNotFoundError):
        confined.read_bytes(tree, "/var/up/host-secret")  # resolved in the root: /host-secret is not there


def test_a_plain_path_is_opened_without_ctypes(tree):
    """No symlink and no '..' on the way: walked with O_NOFOLLOW per component, no openat2 (ctypes)."""
    code = ("import sys; from nsdash.system import confined; "
            f"print(confined.read_text({str(tree)!r}, '/usr/lib/os-release'), 'ctypes' in sys.modules); "
            f"print(confined.read_text({str(tree)!r}, '/etc/os-release'), 'ctypes' in sys.modules)")
    repo = str(Path(__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True,
                         cwd=repo, env=dict(os.environ, PYTHONPATH=repo))
    assert out.stdout.split() == ["ID=guest", "False", "ID=guest", "True"]  # the second: a symlink, openat2's
