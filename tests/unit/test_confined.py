"""Confined reads of a machine's files: nothing outside its root, nothing special, nothing unbounded."""

import os
import subprocess
import sys
import time
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


def _in_open(tid: int) -> bool:
    """True while thread TID sleeps in openat() (x86-64's system call 257)."""
    try:
        with open(f"/proc/self/task/{tid}/syscall") as f:
            return f.read().split(" ", 1)[0] == "257"
    except OSError:
        return False


@pytest.mark.parametrize("path", ["etc/os-release", "/etc/os-release", "etc/link-to-fifo"])
def test_a_fifo_is_looked_up_never_opened(tmp_path, path):
    """Opening a FIFO (or a device) has effects of its own: a writer blocked in open() is let
    go by any reader.  The host only looks such a file up, so the guest's writer stays blocked."""
    import threading

    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.mkfifo(root / "etc/os-release")
    (root / "etc/link-to-fifo").symlink_to("/etc/os-release")  # followed inside the root (openat2)
    released = threading.Event()

    def writer() -> None:
        fd = os.open(root / "etc/os-release", os.O_WRONLY)  # blocks until someone opens it to read
        released.set()
        os.close(fd)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    deadline = time.monotonic() + 5
    while t.native_id is None or not _in_open(t.native_id):  # the writer must be blocked in open() first
        assert time.monotonic() < deadline, "the writer never reached open()"
        time.sleep(0.005)
    with pytest.raises(OSError) as refused:
        confined.read_bytes(root, path)
    assert "not a regular file" in str(refused.value)
    assert not released.wait(0.3), "the host opened the guest's FIFO"
    os.close(os.open(root / "etc/os-release", os.O_RDONLY | os.O_NONBLOCK))  # let the writer go
    t.join(5)


def test_a_final_symlink_with_nofollow_is_eloop(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/real").write_text("x")
    (root / "etc/link").symlink_to("real")
    with pytest.raises(OSError) as refused:
        confined.read_bytes(root, "etc/link", nofollow=True)
    assert refused.value.errno == 40  # ELOOP, as an open with O_NOFOLLOW says
    assert confined.read_bytes(root, "etc/link") == b"x"
