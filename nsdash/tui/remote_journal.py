"""Journals of machines on other hosts, merged by time in the dashboard's journal pane (-H).

The poller follows a journal through a feed (nsdash.tui.poller.JournalFeed);
this one follows machines keyed HOST/MACHINE.  Per host, one thread owns one
Stream (nsdash.remote.stream): `journal -f -o json -n N -M A -M B` on the far
side, its own ssh connection.  A host that is slow, floods or drops holds up
neither the poller nor the other hosts: the threads only put parsed lines in
one bounded inbox and write a byte to a wake-up pipe, which is the feed's
descriptor for the poller's poll(2).

Order: the far side merges its own machines by time; across hosts, each batch
the poller takes is sorted by the entries' realtime.  The history (the last N
entries of each host) is held back until every host has sent its own (or
failed, or HISTORY_WAIT passed), so the first screen is in time order too.  A
host's history that comes after that (its ssh slower than HISTORY_WAIT, or a
stream connected again) goes out marked `late`, and the pane merges it into
place by time (JournalPane.show): live lines are only ever appended.

Bounds, as the local pane's: the inbox keeps at most JOURNAL_KEEP lines (the
oldest go first), a JSON line longer than LINE_MAX is left out whole, and a
message is cut at MESSAGE_MAX characters (the pane shows one line of it).
Nothing of the far side is trusted: a field of another shape is left out, and
every text reaches the screen through the pane's one sanitiser
(nsdash.tui.widgets.journal_pane.line_text, nsdash.system.text.escape).

A host that drops: its stream ends (or, for a host that vanished without a
word, the dashboard's HostWatch finds it unreachable), the pane says so in
one line, and the thread connects again after nsdash.remote.hosts.backoff(failures) seconds;
what it already showed is not shown twice (entries up to the last realtime
seen per machine are skipped; so are console-log lines written during the
outage, which carry their boot separator's time).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial

from nsdash.errors import NsdashError
from nsdash.journal.entry import REALTIME_LIMIT, SHOWN_FIELD_MAX, SHOWN_MESSAGE_MAX, shown
from nsdash.remote.hosts import HOST_TIMEOUT, backoff
from nsdash.remote.ssh import SshProcess
from nsdash.remote.stream import Stream
from nsdash.remote.target import Target
from nsdash.system.ready import readable
from nsdash.system.text import escape
from nsdash.tui.messages import JOURNAL_KEEP, JournalLine

LINE_MAX = 256 * 1024  # bytes of one JSON entry from the far side; a longer one is left out
MESSAGE_MAX = SHOWN_MESSAGE_MAX  # characters of a message kept (the pane shows one line; a filter searches these)
FIELD_MAX = SHOWN_FIELD_MAX  # characters of an identifier or unit name kept
HISTORY_WAIT = 3.0  # s: the longest the history is held back for a host that has not sent its own
QUIET = 0.3  # s: a stream with nothing more after its first bytes has sent its history (or its N entries came)
NOTE_MAX = 200  # characters of a far side's last words in a note
JOIN_WAIT = 5.0  # s close() waits for each thread once its ssh is killed
# What a pane line takes of an entry: asked for alone, an entry crosses ssh in about half the bytes.
FIELDS = ("MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "_COMM", "_SYSTEMD_UNIT", "NSDASH_EVENT")


def _field(value: object) -> str | None:
    """One journal field as `-o json` writes it: a string, a byte array (list of ints) for
    unprintable values, a list of those for a repeated field (the first counts, as journalctl
    shows it), null for a large one.  Anything else is not a field: None."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value:
        if all(isinstance(b, int) and 0 <= b <= 255 for b in value):
            return bytes(value).decode("utf-8", "replace")
        first = value[0]
        if isinstance(first, str | list):
            return _field(first)
    return None


def parse_entry(line: bytes, host: str, machines: Sequence[str]) -> JournalLine | None:
    """One line of the far side's `journal -o json` as a pane line of machine HOST/NAME; None for a
    line that is no entry of one of MACHINES (the far names, as asked).  With one machine asked the
    far side names none (NSDASH_MACHINE comes only with several -M)."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    tagged = obj.get("NSDASH_MACHINE")
    if isinstance(tagged, str):
        if tagged not in machines:
            return None
        machine = tagged
    elif len(machines) == 1:
        machine = machines[0]
    else:
        return None
    stamp = obj.get("__REALTIME_TIMESTAMP")
    realtime = int(stamp) if isinstance(stamp, str) and stamp.isascii() and stamp.isdigit() and len(stamp) < 19 \
        else 0
    if not 0 < realtime < REALTIME_LIMIT:
        return None
    priority = _field(obj.get("PRIORITY"))
    return JournalLine(
        realtime=realtime, machine=f"{host}/{machine}",
        priority=int(priority) if priority in ("0", "1", "2", "3", "4", "5", "6", "7") else None,
        identifier=shown(_field(obj.get("SYSLOG_IDENTIFIER")) or _field(obj.get("_COMM")), FIELD_MAX),
        unit=shown(_field(obj.get("_SYSTEMD_UNIT")), FIELD_MAX),
        message=shown(_field(obj.get("MESSAGE")), MESSAGE_MAX) or "",
        event=shown(_field(obj.get("NSDASH_EVENT")), FIELD_MAX))


class LineSplitter:
    """Bytes in, whole lines out; a line longer than LINE_MAX is dropped whole (counted in `dropped`)."""

    def __init__(self, limit: int = LINE_MAX) -> None:
        self.limit = limit
        self.partial = bytearray()
        self.skipping = False  # inside a line already too long: up to its newline goes
        self.dropped = 0

    def feed(self, data: bytes) -> list[bytes]:
        lines: list[bytes] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            if self.skipping:
                self.skipping = False
            elif len(self.partial) + end - start <= self.limit:
                lines.append(bytes(self.partial) + data[start:end])
            else:
                self.dropped += 1
            self.partial.clear()
            start = end + 1
        if not self.skipping:
            self.partial += data[start:]
            if len(self.partial) > self.limit:
                self.partial.clear()
                self.skipping = True
                self.dropped += 1
        return lines


def merge_batches(batches: Sequence[Sequence[JournalLine]]) -> list[JournalLine]:
    """Lines of several hosts as one list in time order (each host's own order kept for ties)."""
    return sorted((line for batch in batches for line in batch), key=lambda line: line.realtime)


def _note(host: str, text: str) -> JournalLine:
    """One line of the pane about HOST itself (an event line: shown whatever the filters)."""
    return JournalLine(realtime=int(time.time() * 1e6), machine=host, priority=None, identifier=None, unit=None,
                       message="", event=f"{host}: {text}")


class _Inbox:
    """What the host threads found, for the poller: bounded, and a pipe to wake its poll."""

    def __init__(self, hosts: Sequence[str]) -> None:
        self.lock = threading.Lock()
        self.lines: dict[str, deque[JournalLine]] = {h: deque(maxlen=JOURNAL_KEEP) for h in hosts}
        self.settled: set[str] = set()
        self.opened = time.monotonic()
        self.released = False  # the history went out: everything flows from now on
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def put(self, host: str, lines: Sequence[JournalLine], history: bool = False) -> None:
        """HISTORY: lines of a stream's history (sent before it settled); once the history of
        every host went out, they are marked late (the pane puts them in place by time)."""
        if lines:
            with self.lock:
                if history and self.released:
                    lines = [line._replace(late=True) for line in lines]
                self.lines[host].extend(lines)
            self._wake()

    def settle(self, host: str) -> None:
        with self.lock:
            if host in self.settled:
                return
            self.settled.add(host)
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self.wake_w, b"x")

    def take(self) -> list[JournalLine]:
        with contextlib.suppress(OSError):
            os.read(self.wake_r, 4096)
        with self.lock:
            if not self.released:
                if len(self.settled) < len(self.lines) and time.monotonic() - self.opened < HISTORY_WAIT:
                    return []
                self.released = True
            batches = [list(d) for d in self.lines.values() if d]
            for d in self.lines.values():
                d.clear()
        return merge_batches(batches)[-JOURNAL_KEEP:]

    def close(self) -> None:
        for fd in (self.wake_r, self.wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)


class HostFollower:
    """MACHINES (far names) of one host followed in a thread: its lines go to INBOX."""

    def __init__(self, host: str, target: Target, machines: tuple[str, ...], lines: int, inbox: _Inbox,
                 timeout: float = HOST_TIMEOUT, alive: Callable[[], bool] | None = None) -> None:
        """ALIVE: whether the host still answers elsewhere (the dashboard's HostWatch): a host that
        vanished sends no end on a quiet stream, so this is how its stream is known to be dead."""
        self.host, self.target, self.machines, self.inbox = host, target, machines, inbox
        self.alive = alive
        self.lines = lines
        self.timeout = timeout
        self.connects = 0  # streams opened (tests read it)
        self._last: dict[str, int] = {}  # machine key -> the latest realtime shown
        self._down = False  # said so in the pane, not back yet
        self._ssh: SshProcess | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"nsdash-journal-{host}", daemon=True)

    def argv(self) -> list[str]:
        out = ["journal", "-f", "-o", "json", f"--output-fields={','.join(FIELDS)}", "-n", str(self.lines)]
        for m in self.machines:
            out += ["-M", m]
        return out

    def start(self) -> None:
        self._thread.start()

    def stop_soon(self) -> None:
        """End the thread: its ssh is killed (a hanging host must not hold up a new selection)."""
        self._stop.set()
        ssh = self._ssh
        if ssh is not None and ssh.poll() is None:
            with contextlib.suppress(OSError):
                ssh.kill()

    def join(self) -> None:
        if self._thread.ident is not None:
            self._thread.join(timeout=JOIN_WAIT)

    def _started(self, ssh: SshProcess) -> None:
        self._ssh = ssh
        if self._stop.is_set():
            ssh.kill()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            heard = False
            if failures and self.alive is not None and not self.alive():
                failures += 1  # still down for the dashboard: no new ssh to it until it answers there
                self._stop.wait(min(backoff(failures), 1.0))
                continue
            try:
                self.connects += 1
                stream = Stream(self.target, self.argv(), timeout=self.timeout, started=self._started)
            except (NsdashError, OSError) as e:
                why = e.oneline() if isinstance(e, NsdashError) else f"{type(e).__name__}: {e}"
                text = f"journal unreachable: {why}"
            else:
                try:
                    text, heard = self._follow(stream)
                finally:
                    stream.close()
            self.inbox.settle(self.host)
            if self._stop.is_set():
                break
            failures = 1 if heard else failures + 1
            if not self._down:  # one line per outage, not one per retry
                self._down = True
                self.inbox.put(self.host, [_note(self.host, f"{text}; trying again (every ≤ {backoff(99):.0f} s)")])
            self._stop.wait(backoff(failures))

    def _follow(self, stream: Stream) -> tuple[str, bool]:
        """Read STREAM until it ends (or stop): what to say about its end, and whether it sent anything."""
        split = LineSplitter()
        before = dict(self._last)
        errors = bytearray()
        began = time.monotonic()
        heard: float | None = None  # when bytes last came, until the history is in
        sent = 0  # entries the stream sent: its history is the first self.lines of them at most
        history = True  # the stream is sending its history: until it is quiet for QUIET, or all came
        settled = False  # the inbox was told (the history came, or HISTORY_WAIT passed without it)
        while not self._stop.is_set():
            wait = 0.1 if not settled else 1.0
            ready = readable(stream.fds(), wait)
            try:
                got = stream.pump() if ready else {}
            except NsdashError as e:
                return e.oneline(), heard is not None
            if got is None:
                tail = [s for s in errors.decode(errors="replace").splitlines() if s.strip()]
                why = f": {tail[-1].strip()[:NOTE_MAX]}" if tail else ""
                return f"journal ended (exit {stream.code}){why}", heard is not None
            if 2 in got:
                errors = (errors + got[2])[-4096:]
            if 1 in got:
                if self._down:  # back after an outage, and it speaks
                    self._down = False
                    self.inbox.put(self.host, [_note(self.host, "journal connected again")])
                heard = time.monotonic()
                raw = split.feed(got[1])
                self.inbox.put(self.host, self._fresh(raw, before), history=history)
                sent += len(raw)
                history = history and sent < self.lines
            now = time.monotonic()
            if history and heard is not None and now - heard >= QUIET:
                history = False
            if not settled and (not history or now - began >= HISTORY_WAIT):
                settled = True
                self.inbox.settle(self.host)
            if not ready and self.alive is not None and not self.alive():
                return f"{self.host} does not answer", heard is not None
        return "stopped", heard is not None

    def _fresh(self, raw: list[bytes], before: dict[str, int]) -> list[JournalLine]:
        """The parsed lines not shown before: a reconnect sends the last N again, and what an earlier
        stream showed (up to BEFORE, the last realtime per machine then) is skipped.  Within one
        stream nothing is: a console log's lines share their boot separator's time."""
        out = []
        for data in raw:
            line = parse_entry(data, self.host, self.machines)
            if line is None or line.machine is None:
                continue
            if line.realtime <= before.get(line.machine, 0):
                continue
            self._last[line.machine] = max(line.realtime, self._last.get(line.machine, 0))
            out.append(line)
        return out


class RemoteJournal:
    """A JournalFeed (nsdash.tui.poller) over machines keyed HOST/MACHINE on TARGETS' hosts."""

    def __init__(self, targets: dict[str, Target], keys: tuple[str, ...], lines: int,
                 timeout: float = HOST_TIMEOUT, alive: Callable[[str], bool] | None = None) -> None:
        """ALIVE(host): whether HOST answers the dashboard's other questions (HostFollower)."""
        wanted: dict[str, list[str]] = {}
        for key in keys:
            host, slash, machine = key.partition("/")
            if not slash or not machine or host not in targets:
                raise NsdashError(f"'{escape(key)}' is not a machine of the dashboard's hosts",
                                  "select a machine in the list")
            if machine not in wanted.setdefault(host, []):
                wanted[host].append(machine)
        self.inbox = _Inbox(list(wanted))
        self.followers = [HostFollower(host, targets[host], tuple(names), lines, self.inbox, timeout,
                                       None if alive is None else partial(alive, host))
                          for host, names in wanted.items()]
        for follower in self.followers:
            follower.start()

    def tail(self, n: int) -> list[JournalLine]:
        """Nothing yet: each host's history comes through read_new, merged, once all have sent it."""
        return []

    def read_new(self) -> list[JournalLine]:
        return self.inbox.take()

    def filenos(self) -> list[int]:
        return [self.inbox.wake_r]

    def close(self) -> None:
        for follower in self.followers:
            follower.stop_soon()  # all at once, then each waited for
        for follower in self.followers:
            follower.join()
        self.inbox.close()
