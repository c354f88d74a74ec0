"""The one bounded read of a small kernel file (nsdash/system/kernfiles.py)."""

import os
import threading

from nsdash.system.kernfiles import read_value


def test_a_value_comes_without_its_newline(tmp_path):
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert read_value(str(tmp_path / "cpu.max")) == "max 100000"


def test_a_real_sysctl_and_a_real_comm_read():
    assert read_value("/proc/sys/kernel/pid_max").isdigit()
    with open("/proc/self/comm") as f:
        assert read_value("/proc/self/comm") == f.read().rstrip("\n")


def test_missing_and_refused_read_as_none(tmp_path):
    assert read_value(str(tmp_path / "nothing")) is None
    assert read_value(str(tmp_path)) is None  # a directory: EISDIR on read


def test_a_file_longer_than_the_limit_is_not_a_value(tmp_path):
    (tmp_path / "big").write_bytes(b"1" * 9000)
    assert read_value(str(tmp_path / "big")) is None
    assert read_value(str(tmp_path / "big"), limit=9000) == "1" * 9000
    assert read_value(str(tmp_path / "big"), limit=8999) is None


def test_a_path_that_is_not_utf8_comes_back_whole(tmp_path):
    """A loop device's backing_file is a path: bytes, not necessarily UTF-8."""
    raw = b"/srv/images/caf\xe9.raw"
    (tmp_path / "backing_file").write_bytes(raw + b"\n")
    assert os.fsencode(read_value(str(tmp_path / "backing_file"))) == raw


def test_a_fifo_answers_at_once(tmp_path):
    fifo = tmp_path / "forwarding"
    os.mkfifo(fifo)
    got: list[str | None] = []
    reader = threading.Thread(target=lambda: got.append(read_value(str(fifo))), daemon=True)
    reader.start()
    reader.join(10)
    assert not reader.is_alive() and got == [""]  # no writer: EOF, not a wait
