"""A machine's console log: bounded, rotated once, with boot separators.

The file is `console.log` in the machine's state directory; when it passes
LIMIT bytes it becomes `console.log.1` (replacing the previous one) and a new
file starts, so at most 2 x LIMIT bytes are kept.

Separator lines (the journal reader parses them; keep the format exactly):

    \\n-- nsdash: <event> <ISO-8601 UTC time>[ (<detail>)] --\\n

with events `boot N`, `reboot`, `poweroff`, `exited`, `killed`.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

LIMIT = 1024 * 1024
SEPARATOR_RE = re.compile(
    rb"^-- nsdash: (?P<event>boot \d+|reboot|poweroff|exited|killed) "
    rb"(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)(?: \((?P<detail>[^)]*)\))? --$",
    re.MULTILINE,
)


def utc_now() -> str:
    """Now as ISO-8601 UTC to the second (time, not datetime: this is on every spawn's path)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def separator(event: str, detail: str | None = None, when: str | None = None) -> bytes:
    text = f"-- nsdash: {event} {when or utc_now()}"
    if detail:
        text += f" ({detail})"
    return f"\n{text} --\n".encode()


class ConsoleLog:
    """Append-only writer with one rotation; reads back the most recent bytes."""

    def __init__(self, path: Path, limit: int = LIMIT) -> None:
        self.path = Path(path)
        self.limit = limit
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._size = os.fstat(self._fd).st_size
        self.dropped = 0  # bytes lost to write errors (ENOSPC)

    def write(self, data: bytes) -> None:
        """Append DATA; on a full or failing disk the bytes are dropped, never the machine."""
        if not data:
            return
        try:
            if self._size + len(data) > self.limit and self._size > 0:
                self._rotate()
            self._size += os.write(self._fd, data)
        except OSError:
            self.dropped += len(data)

    def mark(self, event: str, detail: str | None = None) -> bytes:
        line = separator(event, detail)
        self.write(line)
        return line

    def tail(self, nbytes: int) -> bytes:
        """The last NBYTES written, across the rotation boundary."""
        parts: list[bytes] = []
        for path in (self.path, self.path.with_name(self.path.name + ".1")):
            if nbytes <= 0:
                break
            try:
                with open(path, "rb") as f:
                    size = f.seek(0, os.SEEK_END)
                    f.seek(max(0, size - nbytes))
                    chunk = f.read()
            except FileNotFoundError:
                continue
            parts.insert(0, chunk)
            nbytes -= len(chunk)
        return b"".join(parts)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _rotate(self) -> None:
        os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        os.close(self._fd)
        self._fd = fd
        self._size = 0


def last_lines(path: Path, count: int, max_bytes: int = 64 * 1024) -> list[str]:
    """The last COUNT non-empty lines of a console log, terminal escapes stripped."""
    log = ConsoleLog.__new__(ConsoleLog)
    log.path = Path(path)
    data = log.tail(max_bytes)
    text = re.sub(rb"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\r", b"", data).decode("utf-8", "replace")
    lines = [line for line in text.split("\n") if line.strip()]
    return lines[-count:]
