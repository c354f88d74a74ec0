"""A file's time shown in UTC, or "n/a" where no calendar date can show it.

An image's times are its tree root's: root inside the machine sets that mtime as it likes
(touch -d), also under -U, and btrfs (machined's own /var/lib/machines) and tmpfs keep 64-bit
seconds, past datetime's year 9999 (ext4 stops at 2446).  systemd prints "n/a" for a time past
what it formats; so does nsdash, where datetime raised ValueError (a traceback out of
list-images and image-status, and the dashboard's images screen).
"""

from __future__ import annotations


def utc(ts: float | None, form: str) -> str:
    """TS (seconds since the epoch) formatted by strftime FORM in UTC; "n/a" for None or a time
    outside datetime's years 1-9999."""
    from datetime import UTC, datetime

    if ts is None:
        return "n/a"
    try:
        return datetime.fromtimestamp(ts, UTC).strftime(form)
    except (ValueError, OverflowError, OSError):
        return "n/a"
