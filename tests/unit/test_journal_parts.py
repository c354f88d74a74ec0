"""The journal's pure parts and its file-level pieces: options, console logs, locating, CLI errors."""

from __future__ import annotations

import struct
import time
from datetime import datetime
from pathlib import Path

import pytest

from nsdash.cli import main as nsdash_main
from nsdash.errors import MachineNotFound, NsdashError, UsageError
from nsdash.journal.console import ConsoleSource, clean_line
from nsdash.journal.filters import Filters, mangle_unit, parse_boot, parse_priority, parse_time
from nsdash.journal.locate import check_journal_file, journal_dirs, locate, machine_id_of
from nsdash.journal.merge import MergedLog, open_logs
from nsdash.machines import consolelog
from nsdash.machines.consolelog import ConsoleLog

# ---------------------------------------------------------------- options


@pytest.mark.parametrize("text, want", [
    ("err", {0, 1, 2, 3}), ("3", {0, 1, 2, 3}), ("emerg", {0}), ("debug", set(range(8))),
    ("warning..err", {3, 4}), ("err..warning", {3, 4}), ("2..4", {2, 3, 4}), ("..1", {0, 1}),
    ("notice..", {5, 6, 7}), ("WARNING", {0, 1, 2, 3, 4}),
])
def test_priorities_as_journalctl_reads_them(text, want):
    assert parse_priority(text) == frozenset(want)


@pytest.mark.parametrize("text", ["9", "loud", "err..9", "-1", ""])
def test_bad_priorities_name_the_fix(text):
    with pytest.raises(UsageError) as e:
        parse_priority(text)
    assert "emerg" in e.value.hint


@pytest.mark.parametrize("text, want", [
    ("sshd", "sshd.service"), ("cron.service", "cron.service"), ("foo.socket", "foo.socket"),
    ("user-1000.slice", "user-1000.slice"), ("a.b", "a.b.service"), ("f*", "f*"),
])
def test_unit_names_are_mangled_like_systemd(text, want):
    assert mangle_unit(text) == want


def test_boots_offsets_and_ids():
    assert parse_boot(None) == 0
    assert parse_boot("-1") == -1 and parse_boot("2") == 2 and parse_boot("+1") == 1
    assert parse_boot("0F006B43-DA50-47AA-9169-6F3DE932AE4C") == "0f006b43da5047aa91696f3de932ae4c"
    with pytest.raises(UsageError):
        parse_boot("yesterday")


def test_times_in_journalctls_syntax():
    now = datetime(2026, 11, 29, 12, 30, 0).timestamp()
    us = 10**6
    assert parse_time("now", now) == int(now * us)
    assert parse_time("-1h", now) == int(now * us) - 3600 * us
    assert parse_time("+5min", now) == int(now * us) + 300 * us
    assert parse_time("2 days ago", now) == int(now * us) - 2 * 86400 * us
    assert parse_time("1h 30min ago", now) == int(now * us) - 5400 * us
    assert parse_time("@1700000000", now) == 1700000000 * us
    assert parse_time("today", now) == int(datetime(2026, 11, 29).timestamp() * us)
    assert parse_time("yesterday", now) == int(datetime(2026, 11, 28).timestamp() * us)
    assert parse_time("2026-01-02 03:04:05", now) == int(datetime(2026, 1, 2, 3, 4, 5).timestamp() * us)
    assert parse_time("2026-01-02", now) == int(datetime(2026, 1, 2).timestamp() * us)
    assert parse_time("08:15", now) == int(datetime(2026, 11, 29, 8, 15).timestamp() * us)
    with pytest.raises(UsageError):
        parse_time("last tuesday", now)


def test_filters_admit_console_lines_as_info():
    f = Filters(priorities=parse_priority("notice"))
    assert not f.admits_priority(None) and f.admits_priority(5)
    assert Filters(priorities=parse_priority("info")).admits_priority(None)
    assert Filters(since=10, until=20).admits_time(15) and not Filters(since=10).admits_time(9)


# ---------------------------------------------------------------- console logs

SEP1 = "-- nsdash: boot 1 2026-11-29T05:00:00Z --"
SEP2 = "-- nsdash: reboot 2026-11-29T05:01:00Z --"
SEP3 = "-- nsdash: boot 2 2026-11-29T05:01:01Z --"
SEP4 = "-- nsdash: exited 2026-11-29T05:02:00Z (status 3) --"
MARKS = {SEP1: ("boot 1", None, "2026-11-29T05:00:00Z"), SEP2: ("reboot", None, "2026-11-29T05:01:00Z"),
         SEP3: ("boot 2", None, "2026-11-29T05:01:01Z"), SEP4: ("exited", "status 3", "2026-11-29T05:02:00Z")}


def test_terminal_escapes_are_not_log_text():
    assert clean_line("\x1b[1;32mOK\x1b[0m done\r") == "OK done"
    assert clean_line("\x1b]0;title\x07prompt") == "prompt"
    assert clean_line("a\tb") == "a\tb"


def _write(log: ConsoleLog, *parts: str | bytes) -> None:
    """Guest bytes (bytes) and the supervisor's marks (one of the SEP strings), in order."""
    for part in parts:
        if isinstance(part, str):
            log.mark(*MARKS[part])
        else:
            log.write(part)


def _console(tmp_path: Path, *parts: str | bytes, limit: int = consolelog.LIMIT) -> Path:
    d = tmp_path / "machines" / "bb"
    d.mkdir(parents=True)
    log = ConsoleLog(d / "console.log", limit=limit)
    _write(log, *parts)
    log.close()
    return d / "console.log"


def test_console_log_entries_boots_and_partial_lines(tmp_path):
    log = _console(tmp_path, SEP1, b"hello\n\x1b[31mred\x1b[0m\n", SEP2, SEP3, b"again\npartial")
    with ConsoleSource(log) as src:
        entries = list(src.entries())
        assert [e.message for e in entries] == [SEP1, "hello", "red", SEP2, SEP3, "again"]
        assert [e.event for e in entries if e.event] == ["boot 1", "reboot", "boot 2"]
        assert [e.priority for e in entries] == [6, None, None, 6, 6, None]
        assert entries[1].realtime == entries[0].realtime  # timed by the separator before it
        assert entries[0].realtime == int(datetime.fromisoformat("2026-11-29T05:00:00+00:00").timestamp()) * 10**6
        assert {e.machine for e in entries} == {"bb"} and entries[1].get("_HOSTNAME") == "bb"
        assert src.boot_numbers() == [1, 2]
    with ConsoleSource(log, Filters(boot=-1)) as src:
        assert [e.message for e in src.entries()] == [SEP1, "hello", "red", SEP2]
    with ConsoleSource(log, Filters(boot=0)) as src:
        assert [e.message for e in src.tail(10)] == [SEP3, "again"]
    with pytest.raises(NsdashError, match=r"boot \(-5\)"):
        ConsoleSource(log, Filters(boot=-5))
    with ConsoleSource(log, Filters(units=("x.service",))) as src:
        assert list(src.entries()) == []


@pytest.mark.parametrize("forged", [
    f"\n{SEP3}\n", f"{SEP3}\n", f"\r\n{SEP3}\r\n", f"\n{SEP4}\n",
    "\n-- nsdash: boot 7 1999-01-01T00:00:00Z --\n", "\n-- nsdash: killed 2000-01-01T00:00:00Z --",
])
def test_a_guest_cannot_forge_a_separator(tmp_path, forged):
    """A line the guest prints that reads exactly like a separator (at a line start, even the
    text of a real mark) is a console line: no boot, no event, no backdated lines after it."""
    log = _console(tmp_path, SEP1, b"before\n", forged.encode(), b"\nafter\n", SEP2, b"end\n")
    with ConsoleSource(log) as src:
        entries = list(src.entries())
        assert [e.event for e in entries if e.event] == ["boot 1", "reboot"]
        assert src.boot_numbers() == [1]
        stamp = entries[0].realtime
        after = next(e for e in entries if e.message == "after")
        assert after.realtime == stamp and after.get("NSDASH_BOOT") == "1"  # not backdated, not boot 7
        fake = [e for e in entries if "nsdash:" in e.message and e.event is None]
        assert len(fake) == 1 and fake[0].priority is None and fake[0].get("SYSLOG_IDENTIFIER") == "console"
        assert [e.message for e in src.tail(3)] == ["after", SEP2, "end"]


def test_marks_follow_the_log_through_rotation(tmp_path):
    log = _console(tmp_path, SEP1, b"x" * 60 + b"\n", SEP2, SEP3, b"y" * 60 + b"\n", limit=150)
    assert log.with_name("console.log.1").exists() and log.with_name("console.log.1.idx").exists()
    with ConsoleSource(log) as src:
        assert [e.message for e in src.entries()] == [SEP1, "x" * 60, SEP2, SEP3, "y" * 60]
        assert src.boot_numbers() == [1, 2]
        assert [e.get("NSDASH_BOOT") for e in src.tail(1)] == ["2"]


def test_tail_reads_only_the_end_of_a_flooded_log(tmp_path, monkeypatch):
    """A flood of one-letter lines: tail(n) starts near the end, the boot taken from the index."""
    log = _console(tmp_path, SEP1, b"y\n" * 400_000, SEP3, b"y\n" * 300_000 + b"last\n")
    with ConsoleSource(log) as src:
        counted = []
        feed = src._line_entry
        monkeypatch.setattr(src, "_line_entry", lambda *a: counted.append(1) or feed(*a))
        last = src.tail(5)
        assert [e.message for e in last] == ["y"] * 4 + ["last"]
        assert {e.get("NSDASH_BOOT") for e in last} == {"2"}
        assert len(counted) < 100_000  # not the 700,000 lines of the whole log


def test_console_log_is_followed_with_inotify_across_split_utf8_and_rotation(tmp_path):
    path = _console(tmp_path, SEP1, b"first\n")
    with ConsoleSource(path) as src, MergedLog([src]) as log:
        log.filenos()
        assert [e.message for e in log.tail(5)] == [SEP1, "first"]
        with open(path, "ab") as f:
            f.write("café ok\n".encode()[:4])  # "caf" and half of the two-byte "é"
        assert log.wait(timeout=2)
        assert log.read_new() == []
        with open(path, "ab") as f:
            f.write("café ok\n".encode()[4:])
        assert log.wait(timeout=2)
        new = log.read_new()
        assert [e.message for e in new] == ["café ok"]
        assert abs(new[0].realtime / 1e6 - time.time()) < 5  # followed lines carry the time they were read
        # the supervisor's rotation: console.log -> console.log.1, a new console.log
        writer = ConsoleLog(path, limit=_size(path) + len(b"last of the old file\n"))
        writer.write(b"last of the old file\n")
        _write(writer, SEP2, b"fresh\n")
        writer.close()
        assert path.with_name("console.log.1").exists()
        got: list[str] = []
        deadline = time.monotonic() + 3
        while "fresh" not in got and time.monotonic() < deadline:
            log.wait(timeout=1)
            got += [e.message for e in log.read_new()]
        assert got == ["last of the old file", SEP2, "fresh"]
    with ConsoleSource(path) as src:  # history spans the rotated half first
        assert [e.message for e in src.entries()] == [SEP1, "first", "café ok", "last of the old file", SEP2, "fresh"]


def _size(path: Path) -> int:
    return path.stat().st_size


# ---------------------------------------------------------------- locating


def test_machine_id_from_the_tree_else_the_uuid(tmp_path):
    (tmp_path / "etc").mkdir()
    assert machine_id_of(tmp_path, "7CB6B85E-8215-444A-B415-011596679BA2") == "7cb6b85e8215444ab415011596679ba2"
    (tmp_path / "etc/machine-id").write_text("08c30baea87644339ade293f4e706ff1\n")
    assert machine_id_of(tmp_path, "7cb6b85e8215444ab415011596679ba2") == "08c30baea87644339ade293f4e706ff1"
    (tmp_path / "etc/machine-id").write_text("uninitialized\n")
    assert machine_id_of(tmp_path, None) is None


def test_journal_dirs_of_a_stopped_tree_and_a_guest_link_are_listed_once(tmp_path):
    mid = "08c30baea87644339ade293f4e706ff1"
    tree = tmp_path / "tree"
    (tree / "var/log/journal" / mid).mkdir(parents=True)
    host = tmp_path / "host"
    host.mkdir()
    assert [d.path for d in journal_dirs(mid, tree, None, host)] == [str(tree / "var/log/journal" / mid)]
    (host / mid).symlink_to(tree / "var/log/journal" / mid)  # --link-journal=guest
    assert [d.path for d in journal_dirs(mid, tree, None, host)] == [str(tree / "var/log/journal" / mid)]
    assert journal_dirs("f" * 32, tree, None, host) == ()


def _state(tmp_path: Path, monkeypatch, machine: str, **state) -> Path:
    monkeypatch.setenv("NSDASH_STATE_DIR", str(tmp_path / "state"))
    d = tmp_path / "state" / "machines" / machine
    d.mkdir(parents=True)
    if state:  # written as the supervisor writes it (machines/state, the one reader and writer)
        from nsdash.machines import state as st

        defaults = {"cgroup": "/machine.slice/x", "supervisor": 1, "started": "2026-01-01T00:00:00Z",
                    "since": "2026-01-01T00:00:00Z"}
        st.write_state(d, st.MachineState(**{**defaults, **state}))
    return d


def test_locate_reads_the_supervisors_state(tmp_path, monkeypatch):
    mid = "08c30baea87644339ade293f4e706ff1"
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/machine-id").write_text(mid + "\n")
    (tree / "var/log/journal" / mid).mkdir(parents=True)
    d = _state(tmp_path, monkeypatch, "web", name="web", root=str(tree), leader=None, uuid=mid)
    logs = locate("web", host_journal=tmp_path / "nohost")
    assert logs.machine_id == mid and not logs.running
    assert [d.path for d in logs.journal_dirs] == [str(tree / "var/log/journal" / mid)] and logs.console_log is None
    # The ID the supervisor recorded at start counts, not one the guest writes later.
    (tree / "etc/machine-id").write_text("ab" * 16 + "\n")
    (tree / "var/log/journal" / ("ab" * 16)).mkdir()
    assert locate("web", host_journal=tmp_path / "nohost").machine_id == mid
    (d / "console.log").write_text(f"{SEP1}\n")
    assert locate("web", host_journal=tmp_path / "nohost").console_log == str(d / "console.log")


def test_unknown_machine_and_machine_without_logs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NSDASH_STATE_DIR", str(tmp_path / "state"))
    with pytest.raises(MachineNotFound):
        locate("surely-not-a-machine-name")
    _state(tmp_path, monkeypatch, "bare", name="bare", root=str(tmp_path / "empty"), leader=None)
    with pytest.raises(NsdashError, match="has no journal and no console log"):
        open_logs(["bare"])
    rc = nsdash_main(["journal", "-M", "bare"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and err.startswith("nsdash: machine 'bare' has no journal")


def test_journal_file_header_checks(tmp_path):
    (tmp_path / "a.journal").write_bytes(b"LPKSHHRH" + b"\0" * 10)
    assert check_journal_file(tmp_path / "a.journal") == "truncated (no complete header)"
    (tmp_path / "b.journal").write_bytes(b"NOTAJRNL" + b"\0" * 200)
    assert check_journal_file(tmp_path / "b.journal") == "not a journal file (bad signature)"
    (tmp_path / "c.journal").write_bytes(b"LPKSHHRH" + b"\0" * 142)  # past the offsets, short of n_data
    assert check_journal_file(tmp_path / "c.journal") == "truncated (no complete header)"
    header = bytearray(b"LPKSHHRH" + b"\0" * 264)
    header[88:104] = struct.pack("<QQ", 272, 0)  # header_size, arena_size: a header and no arena
    (tmp_path / "d.journal").write_bytes(bytes(header))
    assert check_journal_file(tmp_path / "d.journal") is None
    header[136:144] = struct.pack("<Q", 4096)  # tail_object_offset past header + arena
    (tmp_path / "e.journal").write_bytes(bytes(header))
    assert check_journal_file(tmp_path / "e.journal") == "being written (its header is not complete yet)"
    header[136:144] = struct.pack("<Q", 268)  # inside, but not 8-byte aligned
    (tmp_path / "f.journal").write_bytes(bytes(header))
    assert check_journal_file(tmp_path / "f.journal") == "being written (its header is not complete yet)"


# ---------------------------------------------------------------- CLI errors


@pytest.mark.parametrize("argv, words", [
    (["journal"], "no machine or journal directory given"),
    (["journal", "-D", "/nonexistent/dir"], "does not exist"),
    (["journal", "-D", "/dev/null"], "'/dev/null' is not a directory"),
    (["journal", "-D", "/tmp", "-p", "loud"], "unknown log level 'loud'"),
    (["journal", "-D", "/tmp", "-n", "many"], "invalid number of lines"),
    (["journal", "-D", "/tmp", "--since", "whenever"], "failed to parse timestamp"),
    (["journal", "-D", "/tmp", "-o", "verbose"], "invalid choice"),
    (["journal", "-D", "/tmp", "-u", "a/b"], "invalid unit name"),
    (["journal", "-D", "/tmp", "--since", "2099-01-01", "--until", "2000-01-01"], "must be before --until"),
])
def test_bad_input_is_one_line_with_a_hint(capsys, argv, words):
    rc = nsdash_main(argv)
    err = capsys.readouterr().err
    assert rc == 1
    assert err.count("\n") == 1 and words in err and "; " in err and "Traceback" not in err


def test_locating_does_not_load_systemd_python():
    """The launcher and `inside` import the locator; the journal Reader stays out of their processes."""
    import subprocess
    import sys

    code = "import sys, nsdash.journal.locate, nsdash.journal; print('systemd' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_boot_index_counts_like_journalctl_b():
    from nsdash.journal.filters import boot_index
    assert [boot_index(o, 3) for o in (1, 2, 3, 4)] == [0, 1, 2, None]
    assert [boot_index(o, 3) for o in (0, -1, -2, -3)] == [2, 1, 0, None]
    assert boot_index(0, 0) is None


def test_follow_ends_when_the_output_has_no_reader(tmp_path):
    """`journal -f | head -1` ended only at the next entry, which a quiet machine may never
    write: the follower now ends (status 0, as on a write to a closed pipe) once its
    output's reader has gone."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    r, w = os.pipe()
    os.close(r)  # the reader, gone before the follower starts
    p = subprocess.Popen([sys.executable, "-S", str(repo / "bin" / "nsdash"), "journal", "-f", "-D", str(tmp_path)],
                         stdout=w, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(repo)})
    os.close(w)
    try:
        _, err = p.communicate(timeout=30)
    finally:
        p.kill()  # (still following: the test fails, and leaves no follower behind)
    assert (p.returncode, err) == (0, b"")
