"""`nsdash login` where the console's stream has a gap: the terminal gets
consolelog.GAP_RESET at the gap's place, and only there (pure logic; the real
terminal is tests/integration/test_login_gap.py)."""

from __future__ import annotations

from nsdash.cli.login import BEHIND, KEEP, skip_behind, with_gaps
from nsdash.machines.consolelog import GAP_RESET


def test_a_gap_the_supervisor_skipped_gets_the_reset_at_its_place() -> None:
    out = b"before\r\nafter\r\n"
    events = [{"event": "reboot", "at": 0}, {"event": "skipped", "bytes": 5000, "at": 8}]
    assert with_gaps(out, events) == b"before\r\n" + GAP_RESET + b"after\r\n"


def test_two_gaps_in_one_read_each_get_one() -> None:
    events = [{"event": "skipped", "bytes": 1, "at": 1}, {"event": "skipped", "bytes": 1, "at": 2}]
    assert with_gaps(b"abc", events) == b"a" + GAP_RESET + b"b" + GAP_RESET + b"c"


def test_no_gap_no_reset() -> None:
    out = b"plain\r\n"
    assert with_gaps(out, [{"event": "boot 2", "at": 0}]) is out


def test_skipping_behind_the_terminal_starts_what_is_kept_with_the_reset() -> None:
    line = b"\x1b[7mflood\x1b[m line\r\n"
    pending = bytearray(b"\x1b]0;open title" + line * (BEHIND // len(line) + 1))
    total = len(pending)
    gone = skip_behind(pending)
    assert pending.startswith(GAP_RESET + line) and len(pending) - len(GAP_RESET) <= KEEP
    assert gone == total - (len(pending) - len(GAP_RESET))
    small = bytearray(line)
    assert skip_behind(small) == 0 and small == line
