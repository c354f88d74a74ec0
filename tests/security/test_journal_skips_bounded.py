"""A guest that keeps a planted journal file changing costs a follower bounded memory and descriptors.

A file the header check (or libsystemd) refused is tried again whenever it grows (journald may
still be creating it).  A guest can grow such a file by a byte every recheck, for ever: each
reopen must not add its reasons to the source's `skipped` list again (the list, and `journal -f`'s
stderr that reports each new line of it, grew by one line per tick, without bound), nor keep a
descriptor.  Real journal files (systemd-journal-remote writes them), confined to a tmp_path root.
"""

from __future__ import annotations

import os

import pytest

from nsdash.journal.export import export_entry, journal_remote, write_journal
from nsdash.journal.locate import JournalDir
from nsdash.journal.reader import MAX_SKIPPED, JournalSource

pytestmark = pytest.mark.skipif(journal_remote() is None, reason="needs systemd-journal-remote")

MID = "08c30baea87644339ade293f4e706ff1"
BOOT = "1b1b1b1b1b1b4b1b9b1b1b1b1b1b1b1b"
T0 = 1_795_929_965_000_000
TICKS = 3 * MAX_SKIPPED


def _entries(*messages: str, start: int = 0) -> list[bytes]:
    return [export_entry({"MESSAGE": m, "PRIORITY": "6", "SYSLOG_IDENTIFIER": "t"}, T0 + (start + i) * 1000,
                         1000 + start + i, BOOT) for i, m in enumerate(messages)]


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("refusal", ["truncated", "refused by libsystemd"])
def test_a_planted_file_grown_every_tick_adds_no_skip_line_per_tick(tmp_path, refusal):
    d = tmp_path / "root/var/log/journal" / MID
    d.mkdir(parents=True)
    write_journal(d / "system.journal", _entries("one", "two"))
    write_journal(tmp_path / "model.journal", _entries("planted"))
    raw = bytearray((tmp_path / "model.journal").read_bytes())
    if refusal == "truncated":
        raw = raw[:300]  # a whole header whose arena runs past the file: "truncated (N of M bytes)"
    else:
        raw[12:16] = (int.from_bytes(raw[12:16], "little") | 1 << 31).to_bytes(4, "little")  # an unknown flag
    planted = d / "planted.journal"
    planted.write_bytes(bytes(raw))
    with JournalSource(JournalDir(tmp_path / "root", f"var/log/journal/{MID}")) as src:
        assert [e.message for e in src.entries()] == ["one", "two"]
        assert any("planted.journal" in s and refusal in s for s in src.skipped)
        fds = _fds()
        for _ in range(TICKS):
            with open(planted, "ab") as f:
                f.write(b"\0")  # the guest's byte: the file changed size, so it is tried again
            assert src.read_new() == []
        assert _fds() == fds
        assert len(src.skipped) <= MAX_SKIPPED + 1  # the reasons once each, then one line saying more were not listed
        write_journal(tmp_path / "late.journal", _entries("late", start=5))
        os.rename(tmp_path / "late.journal", d / "user-1000.journal")
        assert [e.message for e in src.read_new()] == ["late"]  # still following, after all that
