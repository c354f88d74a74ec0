"""A guest's journal whose _BOOT_ID field holds bytes that are no boot ID lists its real boots.

A guest's root writes its journal files as it likes; journalctl's --list-boots takes boots from
the entries' 128-bit boot IDs, but nsdash asks the _BOOT_ID field's values and decoded them as
UTF-8: a value of other bytes ended `nsdash journal --list-boots` in UnicodeDecodeError's
traceback.  A value that is not 32 hex digits is no boot now, and is left out as journalctl
leaves it.  A real journal file (systemd-journal-remote writes it), read by the real verb.
"""

from __future__ import annotations

import pytest
from conftest import run_nsdash

from nsdash.journal.export import export_entry, journal_remote, write_journal

pytestmark = pytest.mark.skipif(journal_remote() is None, reason="needs systemd-journal-remote")

BOOT = "2c2c2c2c2c2c4c2c8c2c2c2c2c2c2c2c"
T0 = 1_795_929_965_000_000


@pytest.mark.parametrize("planted", [b"\xff\xfe\x01binary", b"\xff" * 32, b"2C" * 16, b"x" * 5000],
                         ids=["binary", "32-bytes-not-hex", "upper-hex", "long"])
def test_list_boots_leaves_out_a_boot_id_that_is_none(tmp_path, planted):
    write_journal(tmp_path / "system.journal", [
        export_entry({"MESSAGE": "real", "SYSLOG_IDENTIFIER": "t"}, T0, 1000, BOOT),
        export_entry([("MESSAGE", "planted"), ("_BOOT_ID", planted)], T0 + 1, 1001, BOOT)])
    r = run_nsdash("journal", "-D", str(tmp_path), "--list-boots", timeout=30)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-1500:]
    rows = r.stdout.splitlines()[1:]
    assert [row.split()[:2] for row in rows] == [["0", BOOT]]
    r = run_nsdash("journal", "-D", str(tmp_path), "-b", "0", "-o", "cat", timeout=30)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-1500:]
    assert "real" in r.stdout.splitlines()
