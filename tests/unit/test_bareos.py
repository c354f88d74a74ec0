"""nsdash.system.bareos answers as os.path and os.environ do, for the paths its callers hold."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nsdash.system import bareos

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("parts", [("a", "b"), ("/a", "b", "c"), ("/a/", "b"), ("a", "/b"), ("", "b"),
                                   ("a", ""), ("/", "proc"), ("/a", "b/", "c"), ("/sys/fs/cgroup", "unified"),
                                   ("x",), ("", "")])
def test_join_is_os_path_join(parts):
    assert bareos.join(*parts) == os.path.join(*parts)


def test_kinds_are_os_paths(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link").symlink_to("dir")
    (tmp_path / "dangling").symlink_to("nowhere")
    names = ["dir", "file", "fifo", "link", "dangling", "nowhere", "file/below", "bad\0name"]
    for name in names:
        path = f"{tmp_path}/{name}"
        got = (bareos.exists(path), bareos.isdir(path), bareos.isfile(path))
        assert got == (os.path.exists(path), os.path.isdir(path), os.path.isfile(path)), name
    assert bareos.isdir(str(tmp_path / "link")) and not bareos.exists(str(tmp_path / "dangling"))


def test_getenv_reads_os_environ_once_os_is_loaded(monkeypatch):
    monkeypatch.setenv("NSDASH_BAREOS_TEST", "set through os.environ")
    assert bareos.getenv("NSDASH_BAREOS_TEST") == "set through os.environ"
    monkeypatch.delenv("NSDASH_BAREOS_TEST")
    assert bareos.getenv("NSDASH_BAREOS_TEST") is None


def test_getenv_without_os_reads_the_environment_as_os_would():
    """In a fresh interpreter that never loads os: the value as given, undecodable bytes kept."""
    code = ("import sys; from nsdash.system import bareos; "
            "print(ascii([bareos.getenv('NSDASH_A'), bareos.getenv('NSDASH_B'), bareos.getenv('NSDASH_NONE')]),"
            " 'os' in sys.modules)")
    env = {b"PYTHONPATH": str(REPO).encode(), b"NSDASH_A": "é=1".encode(), b"NSDASH_B": b"\xff\xfe", b"LANG": b"C.UTF-8"}
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, env=env, check=True)
    assert out.stdout.decode().split() == ["['\\xe9=1',", "'\\udcff\\udcfe',", "None]", "False"]


@pytest.mark.parametrize("encoding_env", [{b"LANG": b"C.UTF-8"},
                                          {b"LC_ALL": b"C", b"PYTHONUTF8": b"0", b"PYTHONCOERCECLOCALE": b"0"}])
def test_getenv_and_setenv_decode_as_os_environ_does(encoding_env, tmp_path):
    """In the file system's encoding, as os.environ: under a C locale without UTF-8 mode (ascii)
    a non-ASCII byte is a surrogate that opens the file it names; decoded as UTF-8 it was 'é',
    which ascii cannot encode back, and every verb failed on NSDASH_STATE_DIR=/tmp/é."""
    made = bytes(tmp_path) + b"/\xc3\xa9"
    os.mkdir(made)
    code = ("import sys, posix; from nsdash.system import bareos\n"
            "got = bareos.getenv('NSDASH_E'); bareos.setenv('NSDASH_F', got)\n"
            "posix.stat(got)\n"  # the value names the directory it was given as
            "assert 'os' not in sys.modules\n"
            "import os\n"
            "print(got == os.environ['NSDASH_E'], os.environ['NSDASH_F'] == got, os.environb[b'NSDASH_F'] == posix.environ[b'NSDASH_E'])")
    env = {b"PYTHONPATH": str(REPO).encode(), b"NSDASH_E": made, **encoding_env}
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, env=env)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    assert out.stdout.split() == [b"True", b"True", b"True"]


def test_join_takes_a_path_first(tmp_path):
    assert bareos.join(tmp_path, "a", "b") == os.path.join(tmp_path, "a", "b")


def test_lexists_is_os_path_lexists(tmp_path):
    (tmp_path / "dangling").symlink_to("nowhere")
    for name in ("dangling", "nowhere", ""):
        path = f"{tmp_path}/{name}"
        assert bareos.lexists(path) == os.path.lexists(path), name


def test_setenv_without_os_reaches_the_c_library_and_a_later_os_environ():
    """Set and unset before os loads: getenv(3) (what libsystemd reads) and os.environ agree."""
    code = ("import sys\nfrom nsdash.system import bareos\n"
            "bareos.setenv('NSDASH_SET', 'crit'); bareos.setenv('NSDASH_GONE', None)\n"
            "assert 'os' not in sys.modules\n"
            "import os, ctypes\n"
            "libc = ctypes.CDLL(None); libc.getenv.restype = ctypes.c_char_p\n"
            "print(os.environ.get('NSDASH_SET'), os.environ.get('NSDASH_GONE'),"
            " libc.getenv(b'NSDASH_SET'), libc.getenv(b'NSDASH_GONE'))")
    env = {"PYTHONPATH": str(REPO), "NSDASH_GONE": "here"}
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.split() == ["crit", "None", "b'crit'", "None"], out.stderr
