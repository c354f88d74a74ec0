"""A file's time shown in UTC, or "n/a" where no calendar date can show it.

An image's times are its tree root's: root inside the machine sets that mtime as it likes
(touch -d), also under -U, and btrfs (machined's own /var/lib/machines) and tmpfs keep 64-bit
seconds, past datetime's year 9999 (ext4 stops at 2446).  systemd prints "n/a" for a time past
what it formats; so does nsdash, where datetime raised ValueError (a traceback out of
list-images and image-status, and the dashboard's images screen).
"""

from __future__ import annotations

# datetime's years 1-9999 in seconds since the epoch: what nsdash has always shown, now through
# time.strftime (importing datetime was a tenth of `nsdash list-images`)
_FIRST, _PAST_LAST = -62135596800, 253402300800


def utc(ts: float | None, form: str) -> str:
    """TS (seconds since the epoch) formatted by strftime FORM in UTC; "n/a" for None or a time
    outside datetime's years 1-9999."""
    import time

    if ts is None or ts != ts or not _FIRST <= ts < _PAST_LAST:  # (ts != ts: NaN)
        return "n/a"
    return time.strftime(form, time.gmtime(ts // 1))
