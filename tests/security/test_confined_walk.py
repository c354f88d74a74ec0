"""The component walk in confined.open_in_root against a hostile tree (issue 15's rules).

Paths with no symlink and no `..` are walked one component at a time with O_NOFOLLOW;
anything else goes to openat2 (RESOLVE_IN_ROOT).  The walk must answer exactly as
openat2 alone would, for every spelling of a path and every kind of entry on it, and
no spelling, magic link or rename race may reach a file outside the root.
"""

import errno
import itertools
import multiprocessing
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from nsdash.system import confined
from nsdash.system.syscalls import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a device in the tree needs root")


@pytest.fixture
def hostile(tmp_path):
    """A root with symlinks (inside, out, absolute, relative, looping, magic), a FIFO, a device node."""
    (tmp_path / "host-secret").write_text("HOST\n")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "a/b").mkdir(parents=True)
    (root / "proc").mkdir()
    (root / "etc/f").write_text("GUEST\n")
    (root / "a/b/f").write_text("AB\n")
    (root / "host-secret").write_text("IN THE ROOT\n")
    (root / "abs").symlink_to("/etc")
    (root / "a/up").symlink_to("../../..")
    (root / "out").symlink_to(tmp_path / "host-secret")
    (root / "magic").symlink_to("/proc/self/root")
    (root / "etc/lf").symlink_to("f")
    (root / "a/lb").symlink_to("/a/b")
    (root / "loop1").symlink_to("loop2")
    (root / "loop2").symlink_to("loop1")
    os.mkfifo(root / "etc/fifo")
    os.mknod(root / "etc/zero", stat.S_IFCHR | 0o600, os.makedev(1, 5))
    return root


def _openat2_alone(root_fd: int, path: str, directory: bool, nofollow: bool) -> tuple[str, int]:
    """What open_in_root answered before the walk: openat2 for every path, then the type check."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
    flags |= (os.O_NOFOLLOW if nofollow else 0) | (os.O_DIRECTORY if directory else 0)
    try:
        fd = openat2(root_fd, path.lstrip("/") or ".", flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    except OSError as e:
        return ("refused", e.errno)
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISDIR(mode) if directory else stat.S_ISREG(mode)):
            return ("refused", errno.EINVAL)
        return ("opened", os.fstat(fd).st_ino)
    finally:
        os.close(fd)


def _walked(root_fd: int, path: str, directory: bool, nofollow: bool) -> tuple[str, int]:
    try:
        fd = confined.open_in_root(root_fd, path, directory=directory, nofollow=nofollow)
    except OSError as e:
        return ("refused", e.errno)
    try:
        return ("opened", os.fstat(fd).st_ino)
    finally:
        os.close(fd)


COMPONENTS = ["etc", "a", "b", "f", "lf", "abs", "up", "out", "magic", "lb", "..", ".", "", "fifo", "zero",
              "host-secret", "proc", "loop1", "missing"]


def test_the_walk_answers_as_openat2_for_every_spelling(hostile):
    """Each path of up to three components from COMPONENTS (symlinks first, middle and last,
    `..`/`.`/empty components, a trailing `/` or `/.`), as a file and as a directory, with and
    without nofollow: the same file or the same errno as openat2 alone, and never the host's file."""
    host = ("opened", (hostile.parent / "host-secret").stat().st_ino)
    root_fd = confined.open_root(hostile)
    differ = []
    try:
        for k in (1, 2, 3):
            for combo in itertools.product(COMPONENTS, repeat=k):
                for path in ("/".join(combo), "/" + "/".join(combo), "/".join(combo) + "/",
                             "/".join(combo) + "/."):
                    for directory, nofollow in itertools.product((False, True), repeat=2):
                        ours = _walked(root_fd, path, directory, nofollow)
                        assert ours != host, path
                        if ours != _openat2_alone(root_fd, path, directory, nofollow):
                            differ.append((path, directory, nofollow))
    finally:
        os.close(root_fd)
    assert differ == []


def test_a_file_with_a_trailing_slash_is_not_a_directory(hostile):
    """`f/` and `f/.` name a directory: refused for a regular file, as openat2 (and open(2)) refuse it."""
    for path in ("/etc/f/", "/etc/f/.", "/etc/f//", "/a/b/f/./"):
        with pytest.raises(NotADirectoryError):
            confined.read_bytes(hostile, path)
    assert confined.list_dir(hostile, "/a/b/") == ["f"]


MAGIC = """
import os, subprocess, sys
from nsdash.system import confined
root, secret = sys.argv[1], sys.argv[2]
subprocess.run(["mount", "--make-rprivate", "/"], check=True)
subprocess.run(["mount", "-t", "proc", "proc", os.path.join(root, "proc")], check=True)
fd = os.open(secret, os.O_RDONLY)
pid = os.getpid()
paths = [f"/proc/self/root{secret}", f"/proc/{pid}/root{secret}", f"/proc/thread-self/root{secret}",
         f"/proc/{pid}/fd/{fd}", f"/proc/{pid}/cwd/host-secret", f"/magic{secret}", f"/proc/1/root{secret}"]
for path in paths:
    try:
        data = confined.read_bytes(root, path)
    except OSError as e:
        print(path, "refused", e.errno)
    else:
        print(path, "READ", data)
"""


def test_magic_links_of_a_proc_mounted_in_the_tree_are_refused(hostile):
    """A running guest has its own /proc: /proc/self/root, /proc/PID/fd/N and /proc/PID/cwd there are
    magic links to the reader's own (host) files.  Mounted in a private mount namespace (gone with it)."""
    secret = str(hostile.parent / "host-secret")
    repo = str(Path(__file__).resolve().parents[2])
    out = subprocess.run(["unshare", "-m", sys.executable, "-c", MAGIC, str(hostile), secret],
                         capture_output=True, text=True, timeout=60, cwd=hostile.parent,
                         env=dict(os.environ, PYTHONPATH=repo))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 7 and all(" refused " in line for line in lines), out.stdout
    assert not any(Path(hostile, "proc").iterdir())  # the proc mount went with its namespace


def _swap(root: str, stop) -> None:  # noqa: ANN001  (a multiprocessing.Event)
    """The guest: exchanges a/ with a symlink out of the root, one to the host's directory, and alt/."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd, exchange = -100, 2
    a = f"{root}/a".encode()
    while not stop.is_set():
        for other in ("lnk", "lnk2", "alt"):
            libc.renameat2(at_fdcwd, a, at_fdcwd, f"{root}/{other}".encode(), exchange)


def test_a_guest_swapping_a_directory_for_a_symlink_never_leads_out(hostile):
    """A guest loops renaming a/ (on the walk's way) with symlinks out of the root: each read
    gives the guest's file, another guest file or a refusal, never the host's file."""
    host = hostile.parent
    (host / "b").mkdir()
    (host / "b/f").write_text("HOST\n")
    (hostile / "alt/b").mkdir(parents=True)
    (hostile / "alt/b/f").write_text("ALT\n")
    (hostile / "lnk").symlink_to("../../../..")
    (hostile / "lnk2").symlink_to(host)
    stop = multiprocessing.get_context("fork").Event()
    guest = multiprocessing.get_context("fork").Process(target=_swap, args=(str(hostile), stop))
    guest.start()
    seen: dict[object, int] = {}
    try:
        for _ in range(3000):
            for path in ("a/b/f", "/a//b/./f"):
                try:
                    key: object = confined.read_bytes(hostile, path)
                except OSError as e:
                    key = e.errno
                seen[key] = seen.get(key, 0) + 1
    finally:
        stop.set()
        guest.join(10)
    assert guest.exitcode == 0
    assert b"HOST\n" not in seen
    assert set(seen) <= {b"AB\n", b"ALT\n", errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EXDEV, errno.EAGAIN}
