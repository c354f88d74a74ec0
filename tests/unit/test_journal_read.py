"""Reading, filtering and formatting real journal files, checked against journalctl itself.

The journal files are written by systemd's own systemd-journal-remote from
export-format entries chosen to hit every formatting rule: two boots, units
(and PID 1's messages about them), every priority, multi-line, binary,
tabbed, oversized and repeated fields, entries without a message, host or
identifier, and senders' own timestamps.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from nsdash.cli import main as nsdash_main
from nsdash.journal.entry import Entry
from nsdash.journal.export import export_entry, journal_remote, write_journal
from nsdash.journal.filters import Filters, parse_priority
from nsdash.journal.merge import MergedLog
from nsdash.journal.reader import JournalSource

pytestmark = pytest.mark.skipif(journal_remote() is None or shutil.which("journalctl") is None,
                                reason="needs systemd-journal-remote and journalctl")

BOOT1 = "1b1b1b1b1b1b4b1b9b1b1b1b1b1b1b1b"
BOOT2 = "2c2c2c2c2c2c4c2c9c2c2c2c2c2c2c2c"
T0 = 1_795_929_965_000_000  # 2026-11-29, a fixed time


def _base(**extra: str | bytes) -> dict[str, str | bytes]:
    fields: dict[str, str | bytes] = {"_HOSTNAME": "deb", "_UID": "0", "_MACHINE_ID": "0" * 31 + "1"}
    fields.update(extra)
    return fields


def sample_entries() -> list[bytes]:
    out: list[bytes] = []
    t = T0

    def add(boot: str, fields, step: int = 137_000) -> None:
        nonlocal t
        t += step
        out.append(export_entry(fields, t, t - T0 + 1000, boot))

    for boot in (BOOT1, BOOT2):
        add(boot, _base(MESSAGE="Started foo.service - Foo.", _PID="1", _COMM="systemd",
                        SYSLOG_IDENTIFIER="systemd", UNIT="foo.service", PRIORITY="6",
                        _SYSTEMD_UNIT="init.scope"))
        add(boot, _base(MESSAGE="foo failed", SYSLOG_IDENTIFIER="foo", _PID="100", PRIORITY="3",
                        _SYSTEMD_UNIT="foo.service"))
        add(boot, _base(MESSAGE="bar warns", _COMM="bar", _PID="101", PRIORITY="4", _SYSTEMD_UNIT="bar.service"))
        add(boot, _base(MESSAGE="line one\nline two\n\nline four\n", SYSLOG_IDENTIFIER="ml", SYSLOG_PID="7",
                        _PID="102", PRIORITY="5"))
        add(boot, _base(MESSAGE=b"bin\x01\x02data", SYSLOG_IDENTIFIER="blob", _PID="103", PRIORITY="6"))
        add(boot, _base(MESSAGE="tab\there", SYSLOG_IDENTIFIER="tabby", PRIORITY="6"))
        add(boot, _base(MESSAGE="\x1b[0;31mred\x1b[0m text", SYSLOG_IDENTIFIER="sgr", PRIORITY="6"))
        add(boot, _base(MESSAGE="\x1b[2Jclear screen", SYSLOG_IDENTIFIER="csi", PRIORITY="6"))
        add(boot, _base(SYSLOG_IDENTIFIER="nomessage", PRIORITY="2"))
        add(boot, {"MESSAGE": "no host here", "SYSLOG_IDENTIFIER": "lonely", "PRIORITY": "1"})
        add(boot, _base(MESSAGE="no identifier at all", PRIORITY="0"))
        add(boot, _base(MESSAGE="sent earlier", SYSLOG_IDENTIFIER="late", _PID="104", PRIORITY="7",
                        _SOURCE_REALTIME_TIMESTAMP=str(t - 5_000_000)))
        add(boot, _base(MESSAGE="héllo ✓ ünïcode", SYSLOG_IDENTIFIER="utf", PRIORITY="6"))
        add(boot, _base(MESSAGE="freeze foo", OBJECT_SYSTEMD_UNIT="foo.service", SYSLOG_IDENTIFIER="audit",
                        _PID="9", PRIORITY="5"))
        add(boot, _base(MESSAGE="x" * 5000, SYSLOG_IDENTIFIER="big", PRIORITY="6"))
        add(boot, [*_base(MESSAGE="repeated", SYSLOG_IDENTIFIER="rep").items(), ("TAG", "a"), ("TAG", "b")])
        for i in range(40):
            add(boot, _base(MESSAGE=f"filler {i}", SYSLOG_IDENTIFIER="filler", _PID=str(200 + i),
                            PRIORITY=str(i % 8), _SYSTEMD_UNIT="filler.service" if i % 3 else "other.service"))
        t += 3_600_000_000  # an hour between the boots
    return out


@pytest.fixture(scope="module")
def journal_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("journal") / ("0" * 31 + "1")
    d.mkdir()
    write_journal(d / "system.journal", sample_entries())
    return d


def journalctl(directory: Path, *args: str) -> str:
    return subprocess.run(["journalctl", "--no-pager", "-D", str(directory), *args],
                          capture_output=True, text=True, check=True, env={**os.environ, "SYSTEMD_COLORS": "0"}).stdout


def ours(capsys, *args: str) -> str:
    capsys.readouterr()
    rc = nsdash_main(["journal", *args])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out


OPTION_SETS = [
    [], ["-p", "err"], ["-p", "warning..err"], ["-p", "3..1"], ["-p", "7"], ["-u", "foo"], ["-u", "bar.service"],
    ["-u", "f*"], ["-u", "foo", "-u", "bar"], ["-b", "1"], ["-b", "-1"], ["-b"], ["-b", "2"], ["-n", "5"],
    ["-n", "0"], ["-b", "-1", "-p", "4", "-u", "filler"], ["-b", "2c2c2c2c2c2c4c2c9c2c2c2c2c2c2c2c"],
    ["--since", f"@{(T0 + 2_000_000) / 1e6}", "--until", f"@{(T0 + 5_000_000) / 1e6}"],
    ["-u", "nonexistent"], ["-p", "0", "-u", "bar"],
]


@pytest.mark.parametrize("mode", ["short", "short-precise", "cat"])
@pytest.mark.parametrize("opts", OPTION_SETS, ids=lambda o: " ".join(o) or "all")
def test_text_formats_match_journalctl_byte_for_byte(journal_dir, capsys, mode, opts):
    want = journalctl(journal_dir, "-o", mode, *opts)
    got = ours(capsys, "-D", str(journal_dir), "-o", mode, *opts)
    assert got == want


@pytest.mark.parametrize("opts", [[], ["-u", "foo"], ["-b", "-1", "-p", "err"]], ids=lambda o: " ".join(o) or "all")
def test_json_matches_journalctl_entry_for_entry(journal_dir, capsys, opts):
    want = [json.loads(line) for line in journalctl(journal_dir, "-o", "json", *opts).splitlines()]
    got = [json.loads(line) for line in ours(capsys, "-D", str(journal_dir), "-o", "json", *opts).splitlines()]
    assert len(got) == len(want) > 0
    assert got == want


def test_sample_really_has_what_the_comparisons_rely_on(journal_dir, capsys):
    short = ours(capsys, "-D", str(journal_dir))
    assert "-- Boot 2c2c2c2c2c2c4c2c9c2c2c2c2c2c2c2c --" in short
    assert "[9B blob data]" in short
    assert "\n" + " " * len("Nov 29 05:26:05 deb ml[102]: ") + "line two\n" in short
    assert " bar[101]: bar warns" in short  # _COMM stands in for a missing identifier
    assert "lonely: no host here" in short
    assert " unknown: no identifier at all" in short
    records = [json.loads(line) for line in ours(capsys, "-D", str(journal_dir), "-o", "json").splitlines()]
    assert any(r.get("TAG") == ["a", "b"] for r in records)
    assert any(r.get("MESSAGE") is None for r in records if r.get("SYSLOG_IDENTIFIER") == "big")
    assert any(r.get("MESSAGE") == list(b"bin\x01\x02data") for r in records)


def test_colours_follow_priority_like_journalctl(journal_dir, capsys, monkeypatch):
    monkeypatch.setenv("SYSTEMD_COLORS", "1")
    got = ours(capsys, "-D", str(journal_dir), "-b", "1")
    want = subprocess.run(["journalctl", "--no-pager", "-D", str(journal_dir), "-b", "1"],
                          capture_output=True, text=True, env={**os.environ, "SYSTEMD_COLORS": "1"}).stdout
    assert "\x1b[0;1;31mfoo failed\x1b[0m" in got
    assert "\x1b[0;1;38;5;185mbar warns\x1b[0m" in got
    assert got == want


def test_last_lines_before_until(journal_dir):
    # (journalctl 252 prints nothing for -n with --until; we give the last N before it)
    until = T0 + 5_000_000
    with JournalSource(journal_dir, Filters(until=until)) as src:
        everything = [e for e in src.entries()]
        last = src.tail(3)
    assert len(everything) > 3 and all(e.realtime <= until for e in everything)
    assert [e.realtime for e in last] == [e.realtime for e in everything[-3:]]


def test_list_boots_numbers_boots_like_journalctl(journal_dir, capsys):
    got = ours(capsys, "-D", str(journal_dir), "--list-boots").splitlines()[1:]
    want = journalctl(journal_dir, "--list-boots").splitlines()[1:]
    assert [line.split()[:2] for line in got] == [line.split()[:2] for line in want]
    assert [line.split()[1] for line in got] == [BOOT1, BOOT2]


def test_boot_missing_from_the_journal_is_one_clear_error(journal_dir, capsys):
    rc = nsdash_main(["journal", "-D", str(journal_dir), "-b", "-5"])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.count("\n") == 1 and "boot (-5) is not available" in err and "--list-boots" in err


def test_merged_directories_interleave_by_time_and_tag_machines(journal_dir, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    write_journal(other / "system.journal",
                  [export_entry(_base(MESSAGE=f"other {i}", SYSLOG_IDENTIFIER="o", PRIORITY="6"),
                                T0 + 500_000 + i * 1_000_000, 1, BOOT1) for i in range(10)])
    a = JournalSource(journal_dir, machine="alpha")
    b = JournalSource(other, machine="beta")
    with MergedLog([a, b]) as log:
        entries = list(log.entries())
        last = log.tail(4)
    stamps = [e.realtime for e in entries]
    assert stamps == sorted(stamps)
    assert {e.machine for e in entries} == {"alpha", "beta"}
    assert sum(e.machine == "beta" for e in entries) == 10
    assert [e.realtime for e in last] == stamps[-4:]


def test_truncated_journal_file_is_skipped_and_named(journal_dir, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(journal_dir / "system.journal", broken / "system.journal")
    shutil.copy(journal_dir / "system.journal", broken / "system@0001-0002.journal~")
    size = (broken / "system@0001-0002.journal~").stat().st_size
    os.truncate(broken / "system@0001-0002.journal~", size // 3)
    (broken / "tiny.journal").write_bytes(b"LPKS")  # not even a header
    rc = nsdash_main(["journal", "-D", str(broken), "-o", "cat"])
    out = capsys.readouterr()
    assert rc == 0
    assert out.out == journalctl(journal_dir, "-o", "cat")  # everything readable was read
    assert "system@0001-0002.journal~: truncated" in out.err
    assert "tiny.journal: truncated (no complete header)" in out.err
    assert "Traceback" not in out.err


def test_follow_sees_appended_entries_rotation_and_vacuum(tmp_path):
    d = tmp_path / "j"
    d.mkdir()
    write_journal(d / "system.journal", [export_entry(_base(MESSAGE="first", PRIORITY="6"), T0, 1, BOOT1)])
    src = JournalSource(d, Filters(priorities=parse_priority("info")))
    with MergedLog([src]) as log:
        log.filenos()
        assert [e.message for e in log.tail(10)] == ["first"]
        assert log.read_new() == []
        # journald's rotation: the active file is archived under a new name, a new one started
        os.rename(d / "system.journal", d / "system@0000000000000000000000000000000a-0000000000000001-0000000000000001.journal")
        write_journal(d / "system.journal", [export_entry(_base(MESSAGE=m, PRIORITY=p), T0 + i + 1, 2, BOOT1)
                                             for i, (m, p) in enumerate([("second", "6"), ("noise", "7")])])
        assert log.wait(timeout=5)
        got = _collect(log, 1)
        assert [e.message for e in got] == ["second"]
        # vacuum: the archived file disappears while we follow
        for f in d.glob("system@*"):
            f.unlink()
        write_journal(d / "system.journal", [export_entry(_base(MESSAGE="third", PRIORITY="6"), T0 + 10, 3, BOOT1)])
        got = _collect(log, 1)
        assert [e.message for e in got] == ["third"]


def _collect(log: MergedLog, n: int, timeout: float = 5.0) -> list[Entry]:
    import time

    got: list[Entry] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        log.wait(timeout=max(0.0, deadline - time.monotonic()))
        got += log.read_new()
    return got


def test_follow_of_an_initially_empty_match_shows_every_new_entry(journal_dir, tmp_path):
    d = tmp_path / "j2"
    d.mkdir()
    write_journal(d / "system.journal", [export_entry(_base(MESSAGE="old debug", PRIORITY="7"), T0, 1, BOOT1)])
    with MergedLog([JournalSource(d, Filters(priorities=parse_priority("err")))]) as log:
        log.filenos()
        assert log.tail(10) == []
        write_journal(d / "system.journal", [export_entry(_base(MESSAGE=f"bad {i}", PRIORITY="3"), T0 + i + 1, 2,
                                                          BOOT1) for i in range(3)])
        assert [e.message for e in _collect(log, 3)] == ["bad 0", "bad 1", "bad 2"]


def test_merged_output_tags_each_line_with_its_machine(journal_dir, tmp_path):
    import io

    from nsdash.journal.format import Printer

    with MergedLog([JournalSource(journal_dir, machine="alpha"),
                    JournalSource(journal_dir, machine="beta", detail=True)]) as log:
        entries = list(log.entries())
    out = io.StringIO()
    Printer(out, "short", tag_machines=True).write_all(entries)
    lines = out.getvalue().splitlines()
    assert any(" alpha foo[100]: foo failed" in line for line in lines)
    assert any(" beta foo[100]: foo failed" in line for line in lines)
    assert not any(line.startswith("-- Boot") for line in lines)  # like journalctl --merge
    out = io.StringIO()
    Printer(out, "json", tag_machines=True).write_all(entries[:4])
    assert {json.loads(line)["NSDASH_MACHINE"] for line in out.getvalue().splitlines()} == {"alpha", "beta"}
    # --output-fields: those fields only, with the timestamps, cursor and boot ID as journalctl keeps them
    out = io.StringIO()
    printer = Printer(out, "json", tag_machines=True, output_fields=("MESSAGE", "NOT_THERE"))
    assert printer.fields_needed() == ("MESSAGE", "NOT_THERE", "_BOOT_ID")
    printer.write_all(entries[:4])
    got = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(got) == 4
    beta = next(obj for obj in got if obj["NSDASH_MACHINE"] == "beta")  # (read with detail: a cursor)
    assert set(beta) == {"__CURSOR", "__REALTIME_TIMESTAMP", "__MONOTONIC_TIMESTAMP", "_BOOT_ID", "MESSAGE",
                         "NSDASH_MACHINE"}
    assert all(set(obj) <= set(beta) and "MESSAGE" in obj for obj in got)


def test_a_journal_directory_gone_since_it_was_located_is_passed_over(journal_dir, tmp_path):
    # A booting machine's journald flushes /run/log/journal/ID to /var/log/journal and removes it:
    # a reader that located both a moment before reads the one still there instead of failing.
    from nsdash.journal.locate import MachineLogs
    from nsdash.journal.merge import sources_for

    logs = MachineLogs(name="web", machine_id=None, journal_dirs=(tmp_path / "gone", journal_dir),
                       console_log=None, running=True)
    sources = sources_for(logs, Filters())
    try:
        assert [s.directory for s in sources] == [str(journal_dir)]
    finally:
        for s in sources:
            s.close()


def test_output_fields_keeps_what_journalctl_keeps(journal_dir, capsys):
    want = [json.loads(line) for line in journalctl(journal_dir, "-o", "json", "--output-fields=MESSAGE,_PID",
                                                    "-n", "5").splitlines()]
    got = [json.loads(line) for line in ours(capsys, "-D", str(journal_dir), "-o", "json",
                                             "--output-fields=MESSAGE,_PID", "-n", "5").splitlines()]
    assert len(got) == len(want) == 5
    for mine, theirs in zip(got, want, strict=True):
        theirs = {k: v for k, v in theirs.items() if not k.startswith("__SEQNUM")}  # (newer journalctl's)
        assert mine == theirs


@pytest.mark.parametrize("mode", ["short", "short-precise", "cat", "json"])
def test_the_launched_verb_matches_journalctl_with_datetime_stood_in(journal_dir, mode):
    """The tests above run inside pytest, where datetime.py is loaded long before the reader:
    the reader's _datetime stand-in (nsdash.journal.reader) never acts there.  The launched
    verb (bin/nsdash, nothing imported first) is where it does: its output is journalctl's."""
    import sys

    repo = Path(__file__).resolve().parents[2]
    since = ["--since", "@" + str((T0 + 2_000_000) / 1e6)]
    env = {**os.environ, "PYTHONPATH": str(repo), "SYSTEMD_COLORS": "0"}
    out = subprocess.run([sys.executable, "-S", str(repo / "bin" / "nsdash"), "journal", "-D", str(journal_dir),
                          "-o", mode, *since], capture_output=True, text=True, env=env, timeout=60, cwd=repo)
    want = journalctl(journal_dir, "-o", mode, *since)
    assert (out.returncode, out.stderr) == (0, "")
    if mode == "json":
        assert [json.loads(x) for x in out.stdout.splitlines()] == [json.loads(x) for x in want.splitlines()]
    else:
        assert out.stdout == want
    assert want.count("\n") > 10


def test_entries_are_written_in_one_piece_whatever_stdouts_buffering(journal_dir, monkeypatch):
    """`journal -n 20` under PYTHONUNBUFFERED made a write system call a line: the printer hands
    stdout its text in pieces of WRITE_CHUNK characters, the same text as line by line."""
    import io

    from nsdash.journal import format as fmt

    class Recording(io.StringIO):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def write(self, text: str) -> int:
            self.calls += 1
            return super().write(text)

    with MergedLog([JournalSource(journal_dir)]) as log:
        entries = list(log.entries())
    assert len(entries) > 3
    one_by_one = io.StringIO()
    printer = fmt.Printer(one_by_one, "short")
    for e in entries:
        printer.write(e)
    whole = Recording()
    fmt.Printer(whole, "short").write_all(entries)
    assert whole.getvalue() == one_by_one.getvalue() and whole.calls == 1
    monkeypatch.setattr(fmt, "WRITE_CHUNK", 1)  # a piece per entry once each passes the bound
    pieces = Recording()
    printer = fmt.Printer(pieces, "short")
    printer.write_all(entries)
    assert pieces.getvalue() == one_by_one.getvalue() and 3 < pieces.calls == printer.count  # (shown ones)

