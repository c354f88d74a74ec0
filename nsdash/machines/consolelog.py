"""A machine's console log: bounded, rotated once, with boot marks kept out of band.

The file is `console.log` in the machine's state directory; when it passes
LIMIT bytes it becomes `console.log.1` (replacing the previous one) and a new
file starts, so at most 2 x LIMIT bytes are kept.

The supervisor marks boots, reboots and exits.  A mark is written twice:
- into the log, as a separator line a person reading the file (or attaching)
  sees:  `\\n-- nsdash: <event> <ISO-8601 UTC time>[ (<detail>)] --\\n`;
- into the side index `console.log.idx` (rotated with the log, as
  `console.log.1.idx`), one JSON record per mark: the byte offset of the
  separator line in the log, its time, event and detail.

Only the index says what is a mark.  The guest writes the console, so it can
print a line that reads exactly like a separator; a reader takes a line as a
mark only when the index names its offset and the line there is the
separator the record describes (journal/console.py).  A side index rather
than escaping guest bytes: the log keeps the console's exact bytes (the
attach replay is the guest's terminal output), and no rule about line starts
has to hold across reads that split lines.
The record goes to the index before the line goes to the log, so a follower
that reads the line finds its record already there.

Events: `boot N`, `reboot`, `poweroff`, `exited`, `killed`.
"""

from __future__ import annotations

import io
import posix
import time

from nsdash.system import jsontext
from nsdash.system.frozen import Frozen

TYPE_CHECKING = False  # mypy takes this as true; `nsdash status` reads the log without pathlib (it
if TYPE_CHECKING:      # imports re, urllib and ipaddress), the writer makes its Path when it opens
    from pathlib import Path

LIMIT = 1024 * 1024
INDEX_LIMIT = 256 * 1024  # an index holds one record per boot or exit: a few dozen bytes each
# A separator line, as a pattern for re (multi-line: ^ and $ at each line); readers and
# tests compile it.  This module imports neither re nor json at the top: a spawn writes
# its log and needs neither (its marks are written by nsdash.system.jsontext).
SEPARATOR = (
    rb"(?m)^-- nsdash: (?P<event>boot \d+|reboot|poweroff|exited|killed) "
    rb"(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)(?: \((?P<detail>[^)]*)\))? --$"
)


def utc_now() -> str:
    """Now as ISO-8601 UTC to the second (time, not datetime: this is on every spawn's path)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def separator_text(event: str, detail: str | None = None, when: str | None = None) -> str:
    """The separator line for a mark, without its line ends."""
    text = f"-- nsdash: {event} {when or utc_now()}"
    if detail:
        text += f" ({detail})"
    return f"{text} --"


def separator(event: str, detail: str | None = None, when: str | None = None) -> bytes:
    return f"\n{separator_text(event, detail, when)}\n".encode()


ROTATED = ".1"  # what a log's name gets when it rotates


def rotated(path: Path) -> Path:
    """Where PATH goes when it rotates."""
    return path.with_name(path.name + ROTATED)


def index_path(log: Path) -> Path:
    """The side index of the log at LOG (of `console.log.1` too)."""
    return log.with_name(log.name + ".idx")


def log_files(log: Path) -> tuple[Path, ...]:
    """Every file the log at LOG may have: itself, its rotated half and their indexes."""
    return (log, rotated(log), index_path(log), index_path(rotated(log)))


class Mark(Frozen):
    """One record of the side index: the separator line at OFFSET in the log is a real mark."""

    offset: int
    time: str
    event: str
    detail: str | None = None

    @property
    def text(self) -> str:
        return separator_text(self.event, self.detail, self.time)

    @property
    def realtime(self) -> int:
        """Microseconds since the epoch (the time is UTC, to the second)."""
        from datetime import UTC, datetime  # readers only: not on a spawn's path

        stamp = datetime.strptime(self.time, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        return int(stamp.timestamp()) * 10**6

    def record(self) -> bytes:
        """The index line: the record as json.dumps writes it (parse_marks reads it with json)."""
        return jsontext.encode({"offset": self.offset, "time": self.time, "event": self.event,
                                "detail": self.detail}).encode() + b"\n"


def parse_marks(data: bytes) -> list[Mark]:
    """The records in an index's bytes; a malformed or cut-off record is skipped."""
    import json

    marks: list[Mark] = []
    for raw in data.split(b"\n"):
        try:
            r = json.loads(raw)
            mark = Mark(int(r["offset"]), str(r["time"]), str(r["event"]),
                        None if r.get("detail") is None else str(r["detail"]))
            mark.realtime  # noqa: B018 - a time that does not parse is no record
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
        marks.append(mark)
    return marks


def read_marks(log: Path) -> list[Mark]:
    """The marks of the log at LOG (its index's last INDEX_LIMIT bytes), oldest first."""
    try:
        with open(index_path(log), "rb") as f:
            size = f.seek(0, io.SEEK_END)
            f.seek(max(0, size - INDEX_LIMIT))
            data = f.read(INDEX_LIMIT)
    except OSError:
        return []
    if size > INDEX_LIMIT:
        data = data[data.find(b"\n") + 1:]  # the first record is cut
    return parse_marks(data)


def _open_append(path: Path) -> int:
    return posix.open(path, posix.O_WRONLY | posix.O_CREAT | posix.O_APPEND | posix.O_CLOEXEC, 0o600)


class ConsoleLog:
    """Append-only writer with one rotation; reads back the most recent bytes."""

    def __init__(self, path: Path, limit: int = LIMIT) -> None:
        from pathlib import Path

        self.path = Path(path)
        self.limit = limit
        self._fd = _open_append(self.path)
        self._index = _open_append(index_path(self.path))
        self._size = posix.fstat(self._fd).st_size
        self.dropped = 0  # bytes lost to write errors (ENOSPC)
        self.position = 0  # bytes of the console's stream given to write() by this writer
        self.whole_from = 0  # the position from which the log holds every byte of the stream

    def write(self, data: bytes) -> None:
        """Append DATA; on a full or failing disk the bytes are dropped, never the machine."""
        if not data:
            return
        self.position += len(data)
        written = 0
        try:
            self._make_room(len(data))
            written = posix.write(self._fd, data)
            self._size += written
        except OSError:
            self.dropped += len(data)
        if written < len(data):
            self.whole_from = self.position

    def mark(self, event: str, detail: str | None = None, when: str | None = None) -> bytes:
        """Record EVENT in the index and as a separator line in the log; the line's bytes (to
        broadcast to attached consoles)."""
        when = when or utc_now()
        if detail:  # the record and the line must agree, and the line must stay one line
            detail = " ".join(detail.split())
        line = separator(event, detail, when)
        try:
            self._make_room(len(line))
            posix.write(self._index, Mark(self._size + 1, when, event, detail).record())
        except OSError:
            pass  # the line below is then only text, never a mark
        self.write(line)
        return line

    def tail(self, nbytes: int) -> bytes:
        """The last NBYTES written, across the rotation boundary."""
        return tail(self.path, nbytes)

    def tail_safe(self, nbytes: int, since: int | None = None) -> bytes:
        """At most the last NBYTES, starting where a terminal is in its ground state.

        SINCE is a position in the stream (`position` then) where the reader's stream is
        known to have left off: a boundary the caller made (where an attacher was last
        sent output, as at an event).  The bytes after it, if at most NBYTES and all in the
        log, come whole: they go on from the reader's last byte, whatever state that left.
        Else the tail starts where it is safe to, not knowing that state: the machine's
        first byte, or safe_start's point."""
        if since is not None and since >= self.whole_from and 0 <= self.position - since <= nbytes:
            data = self.tail(self.position - since)
            if len(data) == self.position - since:  # (the log was not removed under us)
                return data
        data = self.tail(nbytes)
        return data if _whole(self.path, len(data)) else data[safe_start(data):]

    def close(self) -> None:
        for fd in (self._fd, self._index):
            if fd >= 0:
                posix.close(fd)
        self._fd = self._index = -1

    def _make_room(self, n: int) -> None:
        if self._size + n > self.limit and self._size > 0:
            self._rotate()

    def _rotate(self) -> None:
        index = index_path(self.path)
        posix.replace(self.path, rotated(self.path))
        import contextlib  # here: readers of the log (`nsdash status`) need none of it

        with contextlib.suppress(FileNotFoundError):
            posix.replace(index, index_path(rotated(self.path)))
        fd = _open_append(self.path)
        posix.close(self._fd)
        self._fd = fd
        fd = _open_append(index)
        posix.close(self._index)
        self._index = fd
        self._size = 0


def tail(path: Path | str, nbytes: int) -> bytes:
    """The last NBYTES of the log at PATH, across the rotation boundary."""
    parts: list[bytes] = []
    for p in (posix.fspath(path), posix.fspath(path) + ROTATED):  # (rotated(), on a string)
        if nbytes <= 0:
            break
        try:
            with open(p, "rb") as f:
                size = f.seek(0, io.SEEK_END)
                f.seek(max(0, size - nbytes))
                chunk = f.read(nbytes)
        except FileNotFoundError:
            continue
        parts.insert(0, chunk)
        nbytes -= len(chunk)
    return b"".join(parts)


def _whole(path: Path, held: int) -> bool:
    """Whether HELD bytes are everything the machine wrote since it started (no rotation)."""
    if rotated(path).exists():
        return False
    try:
        return posix.stat(path).st_size <= held
    except OSError:
        return True


# ---------------------------------------------------------------- a safe start for a replay

# What ends a control string (OSC, DCS, SOS, PM, APC) in a VT parser: BEL, ST (ESC \\),
# CAN and SUB (which cancel), another ESC.  A replay that begins inside such a string
# would show its body as text.
_ESC_OR_END = rb"[\x07\x18\x1a\x1b]"
# A sequence started before LF and still open at it (ESC, CSI parameters, a control string)
# runs past it: the replay starts after an LF in the ground state.
_SEQUENCE = (
    rb"\x1b(?:"
    rb"\[[\x00-\x17\x19\x1c-\x1f\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"  # CSI (an LF in one is executed, the CSI goes on)
    rb"|[\]PX^_][^\x07\x18\x1a\x1b]*(?:\x07|\x18|\x1a|\x1b\\\\)?"  # a control string; another ESC ends it too
    rb"|[\x20-\x2f]*[\x30-\x7e]?"  # other escapes
    rb")"
)


# Written to a terminal where the console's stream has a gap (output skipped ahead of a
# reader that fell behind), before what follows it.  The terminal is in whatever state the
# last bytes before the gap left it; the gap may have held the sequences that undid it (a
# program's exit from the alternate screen, a progress bar's scroll region given back, SGR 0)
# or half a sequence that would swallow what follows.  So, the least that makes the rest
# render as in a fresh terminal, and keeps what the user sees and scrolled (no RIS, no
# erase): CAN and ST end a sequence or control string cut open; the normal screen (1047, not
# 1049: that one restores a saved cursor even when not on the alternate screen); the whole
# screen as scroll region (DECSTBM homes the cursor, so between DECSC and DECRC); no
# attributes, ASCII in G0 and G0 in GL; replace mode, autowrap, the cursor shown.  Input
# modes (application keys, mouse, bracketed paste) stay: a program still running wants them.
GAP_RESET = (b"\x18\x1b\\" b"\x1b[?1047l" b"\x1b7\x1b[r\x1b8"
             b"\x1b[m\x0f\x1b(B" b"\x1b[4l\x1b[?7h\x1b[?25h")


def safe_start(data: bytes) -> int:
    """Where to start showing DATA, a cut from a console stream, so that no escape
    sequence, control string or UTF-8 character is entered in its middle.

    Nothing says what state the terminal was in at the cut.  If a string
    terminator comes before any ESC, the cut may be inside a control string:
    skip past the terminator.  Then start right after the first LF that a
    parser started there reaches in its ground state (an LF is never part of a
    UTF-8 character).  len(DATA) when there is no such point.
    """
    import re  # compiled once, then from re's own cache

    sequence = re.compile(_SEQUENCE)
    pos = 0
    first = re.search(_ESC_OR_END, data)
    if first is not None and data[first.start()] != 0x1B:
        pos = first.end()  # BEL, CAN or SUB before any ESC
    elif first is not None and data.startswith(b"\x1b\\", first.start()):
        pos = first.end() + 1
    n = len(data)
    while pos < n:
        lf = data.find(b"\n", pos)
        esc = data.find(b"\x1b", pos)
        if lf < 0:
            return n
        if 0 <= esc < lf:
            m = sequence.match(data, esc)
            pos = m.end() if m is not None and m.end() > esc else esc + 1
            if pos >= n:
                return n  # a sequence still open at the end: nothing shown is safe
            continue
        return lf + 1
    return n


# What last_lines strips, as re would say it (tests compare strip_escapes with re.sub of it):
# a CSI sequence, a character-set designation, a carriage return.
STRIPPED = rb"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\r"
_CSI_PARAMETERS = frozenset(b"0123456789;?")
_CSI_INTERMEDIATES = frozenset(range(0x20, 0x30))
_CHARSETS = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _escape_end(data: bytes, i: int) -> int:
    """Where the sequence STRIPPED matches at DATA[i] (an ESC) ends, or I if none does.  The
    three byte classes of a CSI are disjoint, so taking each greedily is re's match."""
    n = len(data)
    if i + 1 < n and data[i + 1] == 0x5B:  # ESC [
        j = i + 2
        while j < n and data[j] in _CSI_PARAMETERS:
            j += 1
        while j < n and data[j] in _CSI_INTERMEDIATES:
            j += 1
        return j + 1 if j < n and 0x40 <= data[j] <= 0x7E else i
    if i + 2 < n and data[i + 1] in b"()" and data[i + 2] in _CHARSETS:
        return i + 3
    return i


def strip_escapes(data: bytes) -> bytes:
    """re.sub(STRIPPED, b"", DATA), without re (a tenth of `nsdash status`): the text between
    sequences is copied whole, found with bytes.find."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        esc, cr = data.find(b"\x1b", i), data.find(b"\r", i)
        nxt = min(esc if esc >= 0 else n, cr if cr >= 0 else n)
        out += data[i:nxt]
        if nxt == n:
            break
        if nxt == cr:
            i = nxt + 1
            continue
        end = _escape_end(data, nxt)
        if end == nxt:  # a lone ESC stays, as re leaves it
            out += b"\x1b"
            i = nxt + 1
        else:
            i = end
    return bytes(out)


def last_lines(path: Path | str, count: int, max_bytes: int = 64 * 1024) -> list[str]:
    """The last COUNT non-empty lines of a console log, terminal escapes stripped."""
    text = strip_escapes(tail(path, max_bytes)).decode("utf-8", "replace")
    lines = [line for line in text.split("\n") if line.strip()]
    return lines[-count:]
