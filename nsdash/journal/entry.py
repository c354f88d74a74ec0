"""The one entry type every log source yields: journal files and console logs alike.

Fields stay raw bytes as the journal stores them; the few a format needs are
decoded on demand, so reading 100,000 entries does not decode 2,000,000 fields.
"""

from __future__ import annotations

# What a screen keeps of one entry: the bounds live with the sanitiser (the machine list uses
# them before the first frame, which loads nothing of nsdash.journal).
from nsdash.system.text import SHOWN_FIELD_MAX, SHOWN_MESSAGE_MAX, shown  # noqa: F401

TYPE_CHECKING = False  # collections.abc (collections, with it) is off `nsdash journal`'s path
if TYPE_CHECKING:
    from collections.abc import Mapping

FieldValue = bytes | list[bytes]


def _text(value: FieldValue | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):  # a field repeated in one entry: journalctl shows the first
        value = value[0]
    return value.decode("utf-8", "replace")


# journalctl's VALID_REALTIME(): a time the journal can hold (0 < t < 2^55 µs, the year 3112);
# a guest's journal, local or read over SSH, may hold any digits where a time belongs.
REALTIME_LIMIT = 1 << 55


class Entry:
    """One log entry.

    realtime: microseconds since the epoch (the journal's receive time; for a
    console line, the time of the boot separator before it, or of reading it
    while following).  fields: the journal's FIELD -> raw value(s).  machine:
    the machine it belongs to (None when read from a bare directory).
    event: for console-log separators, the event ("boot 2", "reboot",
    "poweroff", "exited", "killed"); None for ordinary entries.
    """

    __slots__ = ("realtime", "monotonic", "fields", "machine", "cursor", "event")

    def __init__(self, realtime: int, fields: Mapping[str, FieldValue], machine: str | None = None,
                 monotonic: int | None = None, cursor: str | None = None, event: str | None = None) -> None:
        self.realtime = realtime
        self.monotonic = monotonic
        self.fields = fields
        self.machine = machine
        self.cursor = cursor
        self.event = event

    def get(self, name: str) -> str | None:
        return _text(self.fields.get(name))

    @property
    def message(self) -> str:
        return _text(self.fields.get("MESSAGE")) or ""

    @property
    def priority(self) -> int | None:
        raw = self.fields.get("PRIORITY")
        if isinstance(raw, list):
            raw = raw[0]
        # One digit, as journalctl reads it: the guest's journald stores any PRIORITY= a user sends
        # (5,000 digits made int() raise past Python's limit, in the dashboard's poller too).
        if raw is None or len(raw) != 1 or raw not in b"01234567":
            return None
        return int(raw)

    @property
    def boot_id(self) -> str | None:
        return self.get("_BOOT_ID")

    @property
    def identifier(self) -> str | None:
        return self.get("SYSLOG_IDENTIFIER") or self.get("_COMM")

    @property
    def pid(self) -> str | None:
        return self.get("_PID") or self.get("SYSLOG_PID")

    @property
    def unit(self) -> str | None:
        return self.get("_SYSTEMD_UNIT")

    def with_machine(self, machine: str) -> Entry:
        return Entry(self.realtime, self.fields, machine, self.monotonic, self.cursor, self.event)

    def __repr__(self) -> str:
        return f"Entry({self.realtime}, {self.machine!r}, p={self.priority}, {self.message[:40]!r})"
