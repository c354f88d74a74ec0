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
    """No symlink and no '..' on the way: walked with O_NOFOLLOW per component, no openat2 (ctypes);
    nor for a symlink whose target starts with '..' (etc/os-release's), is names (lib -> usr/lib) or
    is absolute; a `..` after a symlink is openat2's."""
    code = ("import sys; from nsdash.system import confined; "
            f"print(confined.read_text({str(tree)!r}, '/usr/lib/os-release'), 'ctypes' in sys.modules); "
            f"print(confined.read_text({str(tree)!r}, '/etc/os-release'), 'ctypes' in sys.modules); "
            f"print(confined.read_text({str(tree)!r}, '/lib/os-release'), 'ctypes' in sys.modules); "
            f"print(confined.read_text({str(tree)!r}, '/etc/absrel'), 'ctypes' in sys.modules); "
            f"print(confined.is_dir({str(tree)!r}, '/etc/abs'), 'ctypes' in sys.modules); "
            f"print(confined.is_dir({str(tree)!r}, '/etc/later'), 'ctypes' in sys.modules)")
    (tree / "lib").symlink_to("usr/lib")
    (tree / "etc/absrel").symlink_to("/usr/lib/os-release")
    (tree / "etc/later").symlink_to("../usr/../usr/lib")
    repo = str(Path(__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True,
                         cwd=repo, env=dict(os.environ, PYTHONPATH=repo))
    assert out.stdout.split() == ["ID=guest", "False", "ID=guest", "False", "ID=guest", "False", "ID=guest", "False",
                                  "False", "False", "True", "True"]


# Paths whose answer the plain walk (with its `..`-symlink hops) gives itself or hands on: either
# way it must be openat2's own answer, the same file or the same errno.
WALKED = ["/etc/os-release", "/etc/up", "/etc/dots/os-release", "/etc/dots2", "/etc/loop", "/etc/chain",
          "/etc/toolong", "/etc/file/x", "/etc/later", "/etc/dotslash", "/lnk/lib/os-release",
          "/lnk/nosuch", "/etc/dangling", "/etc/selfloop", "/etc/abs", "/etc/zero", "/etc/magic",
          "/usr/lib", "/etc/fifo", "/etc/sock", "/etc/socklink", "/lib/os-release", "/etc/absrel",
          "/etc/absdots", "/etc/names/os-release", "/lib/nosuch", "/etc/absloop", "/etc/slash", "/etc/absdot",
          "/etc/dirslash"]


@pytest.fixture
def walked(tree):
    import socket

    etc = tree / "etc"
    (etc / "dots").symlink_to("../../../usr/lib")  # climbs past the root: stays at the root
    (etc / "dots2").symlink_to("../etc/dots/os-release")  # a hop to a path with another hop
    (etc / "loop").symlink_to("../etc/loop")
    (etc / "chain").symlink_to("../etc/c5")  # 8 hops: the most the walk takes
    for i in range(1, 12):
        (etc / f"c{i}").symlink_to(f"../etc/c{i + 1}")
    (etc / "c12").write_text("end\n")
    (etc / "toolong").symlink_to("../etc/c4")  # 9 hops: openat2's
    (etc / "file").write_text("plain\n")
    (etc / "later").symlink_to("../etc/dots/../lib/os-release")  # `..` after a symlink: openat2's
    (etc / "dotslash").symlink_to("./../usr/./lib/os-release")
    (tree / "lnk").symlink_to("etc/../usr")  # a relative target not starting with `..`
    (etc / "dangling").symlink_to("../nosuch/x")
    (tree / "lib").symlink_to("usr/lib")  # names alone (merged /usr)
    (etc / "absrel").symlink_to("/usr/lib/os-release")  # absolute: from the root
    (etc / "absdots").symlink_to("/../../usr/lib/os-release")
    (etc / "names").symlink_to("../lib")  # a hop to a names-alone link
    (etc / "absloop").symlink_to("/etc/absloop")
    (etc / "slash").symlink_to("../usr/lib/os-release/")  # a file named as a directory: ENOTDIR
    (etc / "absdot").symlink_to("/usr/lib/os-release/.")
    (etc / "dirslash").symlink_to("../usr/lib/")
    (etc / "selfloop").symlink_to("../proc/self/root/etc/file")
    (tree / "proc").symlink_to("/proc")  # in the root: itself, a loop
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(etc / "sock"))
    (etc / "socklink").symlink_to("../etc/sock")
    yield tree
    sock.close()


def _answer(open_fd):
    try:
        fd = open_fd()
    except OSError as e:
        return e.errno
    try:
        st = os.fstat(fd)
        return (st.st_dev, st.st_ino)
    finally:
        os.close(fd)


@pytest.mark.parametrize("path", WALKED)
@pytest.mark.parametrize("how", ["file", "dir", "nofollow", "path"])
def test_the_walk_answers_as_openat2(walked, path, how):
    from nsdash.system import syscalls as sc

    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
    flags |= {"file": 0, "dir": os.O_DIRECTORY, "nofollow": os.O_NOFOLLOW, "path": 0}[how]
    if how == "path":
        flags = os.O_PATH | os.O_CLOEXEC
    inner = path.lstrip("/")
    root = confined.open_root(walked)
    try:
        def ours():
            fd = confined._walk(root, inner, flags)
            if fd < 0:
                return sc.openat2(root, inner, flags, sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_MAGICLINKS)
            return fd
        expected = _answer(lambda: sc.openat2(root, inner, flags, sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_MAGICLINKS))
        assert _answer(ours) == expected
    finally:
        os.close(root)


def test_the_hops_need_no_openat2(walked):
    """The walk itself (no openat2) answers the `..` symlinks it may follow; the others it hands on."""
    root = confined.open_root(walked)
    try:
        def walk(path, flags=os.O_RDONLY | os.O_CLOEXEC):
            fd = confined._walk(root, path, flags)
            if fd >= 0:
                os.close(fd)
            return fd >= 0
        assert walk("etc/os-release") and walk("etc/dots2") and walk("etc/chain") and walk("etc/dotslash")
        assert walk("etc/socklink", os.O_PATH | os.O_CLOEXEC)
        assert not walk("etc/toolong") and not walk("etc/later") and not walk("lnk/lib/os-release")
        assert walk("lib/os-release") and walk("etc/absrel") and walk("etc/absdots") and walk("etc/names/os-release")
        assert not walk("etc/loop") and not walk("etc/selfloop") and not walk("etc/absloop")
        for path in ("etc/up", "etc/abs"):  # ../../host-secret, and the host's path: in the root, not there
            with pytest.raises(FileNotFoundError):
                walk(path)
    finally:
        os.close(root)


MAGIC = ["proc/self/cwd", "proc/self/cwd/etc", "proc/self/fd/0", "proc/self/ns/net", "proc/self/root/etc/hostname",
         "proc/thread-self/exe", "proc/self/exe", f"proc/{os.getpid()}/root/etc", f"proc/{os.getpid()}/cwd"]


@pytest.mark.parametrize("path", MAGIC)
@pytest.mark.parametrize("how", ["file", "path"])
def test_a_proc_link_is_never_followed_as_text(path, how):
    """/proc's links (magic or not: self, cwd, fd/N, ns/net) read as names or absolute paths the
    walk could follow; openat2 refuses the magic ones (ELOOP), and the walk must answer as it."""
    from nsdash.system import syscalls as sc

    flags = os.O_PATH | os.O_CLOEXEC if how == "path" else os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
    root = confined.open_root("/")
    try:
        def ours():
            fd = confined._walk(root, path, flags)
            return fd if fd >= 0 else sc.openat2(root, path, flags, sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_MAGICLINKS)
        expected = _answer(lambda: sc.openat2(root, path, flags, sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_MAGICLINKS))
        assert _answer(ours) == expected
    finally:
        os.close(root)


def test_open_path_in_root_gives_a_socket_inside_the_root(walked, tmp_path):
    """The bus socket's lookup (inside/bus.py): an O_PATH fd on the guest's socket, never the host's."""
    import socket
    import stat

    host = socket.socket(socket.AF_UNIX)
    host.bind(str(tmp_path / "host.sock"))
    (walked / "etc/hostsock").symlink_to(str(tmp_path / "host.sock"))
    (walked / "etc/upsock").symlink_to("../../host.sock")
    root = confined.open_root(walked)
    try:
        for path in ("/etc/sock", "/etc/socklink"):
            fd = confined.open_path_in_root(root, path)
            try:
                assert stat.S_ISSOCK(os.fstat(fd).st_mode)
                assert os.fstat(fd).st_ino == os.stat(walked / "etc/sock").st_ino
            finally:
                os.close(fd)
        for path in ("/etc/hostsock", "/etc/upsock"):
            with pytest.raises(FileNotFoundError):
                confined.open_path_in_root(root, path)
    finally:
        os.close(root)
        host.close()


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
