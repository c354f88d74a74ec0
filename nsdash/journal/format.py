"""journalctl's output formats, line for line: short, short-precise, json, cat.

short:          `Mon DD HH:MM:SS HOST IDENT[PID]: MESSAGE` (the sender's own time,
                continuation lines indented under the message, "-- Boot ID --"
                between boots, "[N blob data]" for unprintable messages)
short-precise:  the same with microseconds
json:           one object per line, values as strings, byte arrays for
                unprintable values, null above 4096 bytes, arrays for repeated fields
cat:            the message alone
Colours by priority as journalctl's get_log_colors() when asked (on a terminal).

Every entry was written by a guest.  short and short-precise show it escaped
(nsdash.system.text) wherever it goes: journalctl already leaves out or shows as
"[N blob data]" what holds control characters, and the sanitiser also escapes the
bidi and other format characters journalctl prints.  json and cat keep
journalctl's exact text when the output is not a terminal (a pipe or a file:
a parser gets the guest's bytes as journalctl gives them); on a terminal json
spells those characters as JSON escapes (the same JSON) and cat shows them
escaped.
"""

from __future__ import annotations

import time

from nsdash.journal.entry import REALTIME_LIMIT, Entry, FieldValue
from nsdash.system.text import escape, escape_json

TYPE_CHECKING = False  # typing is 2 ms of every `nsdash journal`; the annotations are strings
if TYPE_CHECKING:
    import re
    from collections.abc import Callable
    from typing import IO

FORMATS = ("short", "short-precise", "json", "cat")
JSON_THRESHOLD = 4096

ANSI_NORMAL = "\x1b[0m"
ANSI_HIGHLIGHT = "\x1b[0;1;39m"
_COLORS = {0: "\x1b[0;1;31m", 1: "\x1b[0;1;31m", 2: "\x1b[0;1;31m", 3: "\x1b[0;1;31m",
           4: "\x1b[0;1;38;5;185m", 5: ANSI_HIGHLIGHT, 7: "\x1b[0;38;5;245m"}

# What journalctl's utf8_is_printable() rejects: C0 controls but tab and newline, DEL, C1 controls.
# No re on the common path (importing it, with enum, functools and collections, is milliseconds
# of every `nsdash journal`): text that str.isprintable() accepts has none of these, and the
# rest is looked at character by character, deleting them all.
_UNPRINTABLE = dict.fromkeys([*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0)])


def _has_unprintable(text: str) -> bool:
    return not text.isprintable() and len(text.translate(_UNPRINTABLE)) != len(text)


# journalctl's strip_tab_ansi(): colour (SGR) sequences dropped, a tab becomes eight spaces.
_sgr: re.Pattern[str] | None = None


def _strip_tab_ansi(text: str) -> str:
    global _sgr
    if "\x1b" in text:
        if _sgr is None:
            import re  # only for a message with an escape character

            _sgr = re.compile(r"\x1b\[[0-9;]*m")
        text = _sgr.sub("", text)
    return text.replace("\t", "        ") if "\t" in text else text


_HIGHLIGHTS = {"\x1b[0;1;31m": ANSI_HIGHLIGHT, "\x1b[0;1;38;5;185m": ANSI_HIGHLIGHT,
               ANSI_HIGHLIGHT: "\x1b[0;1;31m", "\x1b[0;38;5;245m": "\x1b[0;1;31m"}


def color_of(priority: int | None) -> tuple[str, str]:
    """The (on, off) escape sequences journalctl uses for a priority."""
    on = _COLORS.get(6 if priority is None else priority, "")
    return on, (ANSI_NORMAL if on else "")


def _printable(raw: bytes) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if _has_unprintable(text) else text


def format_bytes(n: int) -> str:
    """systemd's format_bytes(): 1023 -> "1023B", 1536 -> "1.5K"."""
    for suffix, factor in (("E", 1 << 60), ("P", 1 << 50), ("T", 1 << 40), ("G", 1 << 30),
                           ("M", 1 << 20), ("K", 1 << 10)):
        if n >= factor:
            return f"{n // factor}.{(n * 10 // factor) % 10}{suffix}"
    return f"{n}B"


def _first(value: FieldValue | None) -> bytes | None:
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _source_usec(raw: bytes | None, realtime: int) -> int:
    """The sender's own time (_SOURCE_REALTIME_TIMESTAMP) when it is one, else the entry's
    REALTIME.  A guest's journal file may hold any digits there (journald never checks a
    file it did not write): as journalctl, a value out of range falls back to the entry's
    time, which libsystemd checked; localtime() of it raised OverflowError, the verb's end."""
    if raw is None or len(raw) > 17 or not raw.isdigit():  # (17 digits hold 2^55: no huge int())
        return realtime
    usec = int(raw)
    return usec if 0 < usec < REALTIME_LIMIT else realtime


class _Clock:
    """Local-time "Mon DD HH:MM:SS", cached per second (most entries share their second)."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __call__(self, usec: int) -> str:
        second = usec // 1_000_000
        if second != self._second:
            self._second = second
            self._text = time.strftime("%b %d %H:%M:%S", time.localtime(second))
        return self._text


WRITE_CHUNK = 65536  # characters rendered before Printer.write_all writes them


class Printer:
    """Writes entries to OUT in one of journalctl's formats.

    tag_machines: show each entry's machine in the host column (short) or as
    NSDASH_MACHINE (json), for streams merged from several machines; like
    journalctl --merge, no "-- Boot --" lines then.
    """

    def __init__(self, out: IO[str], mode: str = "short", color: bool = False, tag_machines: bool = False,
                 terminal: bool | None = None, output_fields: tuple[str, ...] | None = None) -> None:
        """OUTPUT_FIELDS: json shows only these fields (and always the cursor, both timestamps and
        _BOOT_ID), as journalctl's --output-fields; None: every field."""
        if mode not in FORMATS:
            raise ValueError(mode)
        self.output_fields = None if output_fields is None else (*output_fields, "_BOOT_ID")
        self.out = out
        # json and cat keep the guest's exact text only for a pipe or a file (see the module docstring).
        self.terminal = out.isatty() if terminal is None else terminal
        self.mode = mode
        self.color = color
        self.tag_machines = tag_machines
        self._clock = _Clock()
        self.precise = mode == "short-precise"
        self._senders: dict[tuple, str] = {}
        self._previous_boot: bytes | None = None
        self._render: Callable[[Entry], str | None] = {
            "short": self.short, "short-precise": self.short, "json": self.json, "cat": self.cat}[mode]
        self.count = 0

    def fields_needed(self) -> tuple[str, ...] | None:
        """The journal fields this format reads (None: all of them)."""
        if self.mode == "cat":
            return ("MESSAGE", "PRIORITY") if self.color else ("MESSAGE",)
        if self.mode == "json":
            return self.output_fields
        return None

    def write(self, entry: Entry) -> None:
        text = self._render(entry)
        if text is not None:
            self.out.write(text)
            self.count += 1

    def write_all(self, entries) -> None:
        """ENTRIES rendered, written in pieces of about WRITE_CHUNK characters: one write for
        `journal -n 20` whatever stdout's buffering (PYTHONUNBUFFERED made it a system call a
        line), a bounded piece at a time for a whole journal."""
        render, write = self._render, self.out.write
        n = size = 0
        pending: list[str] = []
        try:
            for e in entries:
                text = render(e)
                if text is not None:
                    pending.append(text)
                    n += 1
                    size += len(text)
                    if size >= WRITE_CHUNK:
                        write("".join(pending))
                        pending.clear()
                        size = 0
        finally:
            if pending:  # (what was rendered before an error is still written, as it was line by line)
                write("".join(pending))
            self.count += n

    # ------------------------------------------------------------ short

    def _boot_line(self, entry: Entry) -> str:
        if self.tag_machines or entry.event is not None:
            return ""
        boot = _first(entry.fields.get("_BOOT_ID"))
        if boot is None:
            return ""
        previous, self._previous_boot = self._previous_boot, boot
        if previous is None or previous == boot:
            return ""
        on, off = (ANSI_HIGHLIGHT, ANSI_NORMAL) if self.color else ("", "")
        return f"{on}-- Boot {escape(boot.decode('ascii', 'replace'))} --{off}\n"

    def short(self, entry: Entry) -> str | None:
        # The hot path of `nsdash journal`: keep the common case (one value per field,
        # a plain ASCII one-line message, a sender seen before) to a few dict lookups.
        fields = entry.fields
        if entry.event is not None:  # a console-log separator stands on its own, like "-- Boot --"
            on, off = (ANSI_HIGHLIGHT, ANSI_NORMAL) if self.color else ("", "")
            return f"{on}{escape(entry.message)}{off}\n"
        raw = fields.get("MESSAGE")
        if raw is None:
            return None  # journalctl skips entries without a message
        if isinstance(raw, list):
            raw = raw[0]
        head = ""
        if not self.tag_machines:
            boot = fields.get("_BOOT_ID")
            if boot is not None and boot != self._previous_boot:
                head = self._boot_line(entry)
        source_ts = fields.get("_SOURCE_REALTIME_TIMESTAMP")
        if isinstance(source_ts, list):
            source_ts = source_ts[0]
        usec = _source_usec(source_ts, entry.realtime)
        stamp = self._clock(usec)
        if self.precise:
            stamp = f"{stamp}.{usec % 1_000_000:06d}"
        get = fields.get
        host = entry.machine if self.tag_machines and entry.machine else get("_HOSTNAME")
        key = (host, get("SYSLOG_IDENTIFIER"), get("_COMM"), get("_PID"), get("SYSLOG_PID"))
        try:
            sender = self._senders[key]
        except (KeyError, TypeError):  # TypeError: a repeated field (a list) is not hashable
            sender = _sender(key)
            if len(self._senders) > 65536:
                self._senders.clear()
            try:  # noqa: SIM105  (contextlib imports collections and functools: off this verb's path)
                self._senders[key] = sender
            except TypeError:
                pass
        prefix = stamp + sender
        plain = raw.isascii()
        if plain:
            message = raw.decode("ascii")
            plain = message.isprintable()  # ASCII that prints: no tab, escape, newline or DEL
        if plain:  # shown as is
            if not self.color:
                return f"{head}{prefix}: {message}\n"
        else:
            decoded = _printable_message(raw)
            if decoded is None:
                return f"{head}{prefix}: [{format_bytes(len(raw))} blob data]\n"
            message = escape(decoded, newline=True)  # no C0/C1 left here; bidi and format characters
        if not message:
            return f"{head}{prefix}: \n"
        on = off = first_on = ""
        if self.color:
            on, off = color_of(entry.priority)
            # journalctl 252 marks an empty highlight at the start of the first line (its
            # grep highlighting, unused here): colour, highlight colour, colour again.
            first_on = f"{on}{_HIGHLIGHTS.get(on, '')}{on}"
        if "\n" not in message:
            return f"{head}{prefix}: {first_on}{message}{off}\n"
        indent = " " * (len(prefix) + 2)
        lines = message.split("\n")
        if lines[-1] == "":
            lines.pop()
        body = f"\n{indent}".join(f"{first_on if i == 0 else on}{line}{off}" for i, line in enumerate(lines))
        return f"{head}{prefix}: {body}\n"

    # ------------------------------------------------------------ cat

    def cat(self, entry: Entry) -> str | None:
        raw = _first(entry.fields.get("MESSAGE"))
        if raw is None:
            return None
        text = raw.decode("utf-8", "replace")
        if self.terminal:
            text = escape(text, newline=True, tab=True)
        if self.color:
            on, off = color_of(entry.priority)
            return f"{on}{text}{off}\n"
        return text + "\n"

    # ------------------------------------------------------------ json

    def json(self, entry: Entry) -> str | None:
        obj: dict[str, object] = {}
        if entry.cursor is not None:
            obj["__CURSOR"] = entry.cursor
        obj["__REALTIME_TIMESTAMP"] = str(entry.realtime)
        if entry.monotonic is not None:
            obj["__MONOTONIC_TIMESTAMP"] = str(entry.monotonic)
        keep = self.output_fields
        for name, value in entry.fields.items():
            if keep is not None and name not in keep:
                continue  # (a console log's entries carry all their few fields: taken out here)
            if isinstance(value, list):
                obj[name] = [_json_value(v) for v in value]
            else:
                obj[name] = _json_value(value)
        if self.tag_machines and entry.machine:
            obj["NSDASH_MACHINE"] = entry.machine
        import json  # -o json only

        line = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
        return (escape_json(line) if self.terminal else line) + "\n"


def _printable_message(raw: bytes) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\t" in text or "\x1b" in text:
        text = _strip_tab_ansi(text)
    return None if _has_unprintable(text) else text


def _sender(key: tuple) -> str:
    """" HOST IDENT[PID]" as journalctl prints it, from (host, identifier, comm, pid, syslog pid)."""
    host, ident, comm, pid, syslog_pid = (v.encode() if isinstance(v, str) else _first(v) for v in key)
    out = ""
    host_text = _short_field(host)
    if host_text is not None:
        out += " " + host_text
    name = _short_field(ident)
    if name is None:
        name = _short_field(comm)
    out += " " + (name if name is not None else "unknown")
    pid_text = _short_field(pid)  # journald's own record wins over the sender's claim
    if pid_text is None:
        pid_text = _short_field(syslog_pid)
    if pid_text is not None:
        out += f"[{pid_text}]"
    return out


def _short_field(raw: bytes | None) -> str | None:
    """journalctl's shall_print(): short enough and printable, else the field is left out."""
    if raw is None or len(raw) >= 300:
        return None
    text = _printable(raw)
    return None if text is None else escape(text)


def _json_value(raw: bytes) -> object:
    if len(raw) > JSON_THRESHOLD:
        return None
    text = _printable(raw)
    return text if text is not None else list(raw)
