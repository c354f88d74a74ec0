"""`nsdash ps`'s process rows (nsdash.monitor.procs.ps_row), read as psutil read them."""

import os
import pwd

from nsdash.monitor import procs


def test_command_text_splits_as_psutil_did():
    """NUL-separated arguments joined by spaces; a title rewritten without a NUL at the end
    (setproctitle) kept as written, its last space dropped; nothing: '[comm]'."""
    assert procs.command_text(b"sh\0-c\0a b\0", b"sh") == "sh -c a b"
    assert procs.command_text(b"postgres: writer \0", b"postgres") == "postgres: writer "
    assert procs.command_text(b"postgres: writer ", b"postgres") == "postgres: writer"
    assert procs.command_text(b"half\0title", b"x") == "half\0title"
    assert procs.command_text(b"", b"kthreadd") == "[kthreadd]"
    assert procs.command_text(b"\0", b"z") == "[z]"
    assert procs.command_text(b"caf\xe9\0", b"c") == "caf\udce9"  # not UTF-8: kept byte for byte


def test_ps_row_of_this_process_and_of_none():
    with open("/proc/self/cmdline", "rb") as f:
        arguments = f.read()[:-1].split(b"\0")
    users: dict[int, str] = {}
    row = procs.ps_row(os.getpid(), users)
    assert row is not None and row.pid == os.getpid()
    assert row.command == " ".join(a.decode("utf-8", "surrogateescape") for a in arguments)
    assert row.user == pwd.getpwuid(os.getuid()).pw_name and users == {os.getuid(): row.user}
    assert 0 <= row.cpu_seconds <= sum(os.times()[:2]) + 1
    assert procs.ps_row(1 << 30, {}) is None  # no such process


def test_all_pids_are_sorted_numbers(tmp_path):
    for name in ("12", "3", "self", "100", "net"):
        (tmp_path / name).mkdir()
    assert procs.all_pids(str(tmp_path)) == [3, 12, 100]
