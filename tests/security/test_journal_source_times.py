"""A guest's journal entry whose sender's time is no time ends nothing: the entry shows at its own.

journald sets _SOURCE_REALTIME_TIMESTAMP, but a guest's root writes its journal files as it
likes, and libsystemd checks an entry's realtime, never that field.  `nsdash journal` (short
and short-precise) shows the sender's time as journalctl does; a value past what localtime()
takes (40 nines) raised OverflowError and one past Python's 4,300 digits ValueError, a
traceback that ended the verb at that entry.  journalctl's rule holds now: the field is used
when it is a time the journal can hold (0 < t < 2^55 µs), else the entry's own time.
Real journal files (systemd-journal-remote writes them), read by the real verb.
"""

from __future__ import annotations

import pytest
from conftest import run_nsdash

from nsdash.journal.export import export_entry, journal_remote, write_journal

pytestmark = pytest.mark.skipif(journal_remote() is None, reason="needs systemd-journal-remote")

BOOT = "2c2c2c2c2c2c4c2c8c2c2c2c2c2c2c2c"
T0 = 1_795_929_965_000_000  # the entries' own times, microseconds apart


@pytest.mark.parametrize("source", ["9" * 40, "9" * 5000, "0", str(1 << 55), "12x4"],
                         ids=["overflow", "past-int-limit", "zero", "year-3112", "not-digits"])
def test_a_source_time_that_is_no_time_shows_the_entrys_own(tmp_path, source):
    write_journal(tmp_path / "system.journal", [
        export_entry({"MESSAGE": "before", "SYSLOG_IDENTIFIER": "t"}, T0, 1000, BOOT),
        export_entry({"MESSAGE": "planted", "SYSLOG_IDENTIFIER": "t", "_SOURCE_REALTIME_TIMESTAMP": source},
                     T0 + 1, 1001, BOOT),
        export_entry({"MESSAGE": "after", "SYSLOG_IDENTIFIER": "t"}, T0 + 2, 1002, BOOT)])
    r = run_nsdash("journal", "-D", str(tmp_path), "-o", "short-precise", "-n", "all", timeout=30)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-1500:]
    lines = r.stdout.splitlines()
    assert [line.split(" t: ")[1] for line in lines] == ["before", "planted", "after"]
    assert [line.split(" t: ")[0][-6:] for line in lines] == ["000000", "000001", "000002"]  # the entries' times


def test_a_sender_time_that_is_one_is_shown(tmp_path):
    """The rule keeps journalctl's use of the field: a real sender's time wins over the entry's."""
    write_journal(tmp_path / "system.journal", [
        export_entry({"MESSAGE": "sent earlier", "SYSLOG_IDENTIFIER": "t",
                      "_SOURCE_REALTIME_TIMESTAMP": str(T0 - 7)}, T0, 1000, BOOT)])
    r = run_nsdash("journal", "-D", str(tmp_path), "-o", "short-precise", timeout=30)
    assert r.returncode == 0, r.stderr[-1500:]
    assert r.stdout.split(" t: ")[0].endswith(f".{(T0 - 7) % 1_000_000:06d}")
