"""The console's I/O: one attached console session, read in a thread of its own.

It feeds what it reads into the TerminalModel (under the model's lock) and
raises a flag; the pane looks at the flag at most ~30 times a second, so a
flooding console costs parsing, not rendering.  Keystrokes and window sizes go
the other way.  Closing detaches; the machine keeps running.

A flood (`yes > /dev/console`) arrives faster than any terminal model parses
it.  The reader takes everything the socket holds at once (the supervisor
skips ahead for an attacher that falls a megabyte behind, and says how much: counted as
skipped here), but parses only for part of
each frame (PARSE_SHARE, FLOOD_PARSE_SHARE while it skips): the rest waits in a
backlog.  When the backlog passes BEHIND, all but its last KEEP bytes are skipped,
from a point where a terminal is in its ground state (consolelog.safe_start): what would have scrolled past
unseen is never parsed, memory stays bounded, the UI thread keeps the GIL
often enough to take keys, and the screen ends as the stream's tail draws it.

Keys and window sizes are written by a thread of their own, never by the UI
thread: a write blocks once the peer stops reading (a guest that no longer
reads its tty fills the supervisor's PTY input queue and then the socket; a
far console's ssh that is stuck fills its pipe), and a UI thread that wrote
would freeze the whole dashboard.  send() only queues, in order; past
SEND_MAX bytes waiting, what is typed is dropped whole (a key's sequence is
never cut) and send() says so, as a tty's input queue drops what comes past
its 4 KiB: the pane rings the bell and counts them on its border.
"""

from __future__ import annotations

import contextlib
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from nsdash.errors import NsdashError
from nsdash.machines.consolelog import safe_start
from nsdash.tui.console.terminal import TerminalModel

# The supervisor's boot separators end in a bare LF; on a terminal that would leave
# the next line indented, so they get the CR a PTY would have added.
_SEPARATOR = re.compile(rb"(?<!\r)\n(-- nsdash: [^\r\n]{1,200} --)\n")


BEHIND = 64 * 1024  # unparsed bytes past which the oldest are skipped (about 100 ms of parsing)
KEEP = 32 * 1024  # what a skip keeps: a screenful or more, even of colourful lines
SLICE = 8 * 1024  # parsed at a time, between looks at the socket
FRAME = 1 / 30  # the pane's frame interval
PARSE_SHARE = 0.6  # of each frame, the most the reader parses while it is behind
# While it floods (it skipped within the last FLOOD_HOLD s) the pane paints a frame every 0.1 s
# and the screen ends as the stream's tail draws it: parsing more than a frame's tail is work
# no one sees, and the parser holds the GIL the UI thread needs for keys and frames.
FLOOD_PARSE_SHARE = 0.2
FLOOD_HOLD = 1.0
# After a key is sent, until what the reader took after it (its echo, from a machine's tty)
# is parsed or skipped, at most ECHO_WINDOW s, the reader keeps to the stream's tail: it
# skips a backlog past KEEP (not BEHIND) and parses without waiting for its share; the pane
# holds the key's frame until then (echo_pending).  A flood would otherwise keep the echo
# tens of ms behind the screen, and the frame after the key's own is 0.1 s away.
ECHO_WINDOW = 0.05
# Bytes of keys waiting to be sent (or being sent) past which what is typed is dropped: a tty's
# input queue holds as many.  One paste always goes when nothing waits, however long.
SEND_MAX = 4096
_clock = time.monotonic  # the reader's clock (a test sets its own)


def fix_separators(data: bytes) -> bytes:
    return _SEPARATOR.sub(rb"\r\n\1\r\n", data) if b"-- nsdash: " in data else data


class Session(Protocol):
    """A console to read and type into.  It may also have send_now(data) -> bool: send DATA
    only if that never waits (ConsoleSession); the UI thread then types without a hand-off."""

    def read(self, timeout: float | None = None) -> tuple[bytes, list[dict[str, Any]]] | None: ...
    def send(self, data: bytes) -> None: ...
    def resize(self, rows: int, cols: int) -> None: ...
    def close(self) -> None: ...


def _attach(name: str, rows: int, cols: int) -> Session:
    from nsdash.machines import client

    return client.attach(name, rows=rows, cols=cols)


class _SwitchInterval:
    """Python's GIL switch interval at 1 ms while any console reads, as it was after the last.

    A flooding console keeps its reader parsing (Python, holding the GIL); the UI
    thread waits up to the switch interval for the GIL on every wake-up, several
    per frame.  Python's 5 ms default adds tens of ms to key-to-screen; 1 ms does not.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved = 0.0

    def take(self) -> None:
        with self._lock:
            if self._users == 0:
                self._saved = sys.getswitchinterval()
                sys.setswitchinterval(min(self._saved, 0.001))
            self._users += 1

    def give_back(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                sys.setswitchinterval(self._saved)


_SWITCH = _SwitchInterval()


class ConsoleConnection:
    def __init__(self, name: str, model: TerminalModel,
                 on_end: Callable[[str], None],
                 attach: Callable[[str, int, int], Session] = _attach) -> None:
        self.name = name
        self.model = model
        self.lock = threading.Lock()
        self.changed = threading.Event()
        self.ui_waiting = False  # the pane wants the lock (set by the UI thread)
        self.on_end = on_end
        self._attach = attach
        self._session: Session | None = None
        # What is to be sent, in the order typed: keys (bytes) and window sizes (rows, cols).
        # Keys typed while the session opens (a far console's ssh takes a while) wait here too.
        self._outgoing: list[bytes | tuple[int, int]] = []
        self._pending = 0  # bytes of keys queued or being sent (bounded by SEND_MAX)
        self._send_lock = threading.Lock()
        self._wake_sender = threading.Condition(self._send_lock)
        self.dropped = 0  # bytes of keys dropped because SEND_MAX were waiting
        self._closing = False
        self._thread: threading.Thread | None = None
        self.max_backlog = 0  # the most unparsed bytes held at once (bounded by BEHIND)
        # True while the UI thread wants the GIL for a key's frame (the pane sets it: the app's
        # KeyFirst): the reader parses nothing meanwhile, as if its frame's share were spent.
        self.hold: Callable[[], bool] = lambda: False
        self._sent_at = float("-inf")  # when the last key was sent (the reader's clock)
        self._echo_end: int | None = None  # the console offset after the first read since then

    def start(self) -> None:
        _SWITCH.take()
        self._thread = threading.Thread(target=self._run, name=f"console-{self.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            session = self._attach(self.name, self.model.lines, self.model.columns)
        except (NsdashError, OSError) as e:
            if not self._closing:  # else the pane has moved on: this is no news about what it shows
                self.on_end(e.oneline() if isinstance(e, NsdashError) else f"cannot attach: {e}")
            return
        with self._send_lock:
            self._session = session
        if self._closing:  # closed while attaching: close() found no session to close
            with contextlib.suppress(OSError):
                session.close()
            return
        threading.Thread(target=self._send_all, args=(session,), name=f"console-send-{self.name}",
                         daemon=True).start()
        reason = "the console closed (the machine stopped)"
        try:
            self._pump(session)
        except NsdashError as e:
            reason = f"console connection lost: {e.oneline()}"
        except (OSError, ValueError) as e:  # ValueError: a malformed frame, or select() above fd 1024
            reason = f"console connection lost: {e}"
        if not self._closing:
            self.on_end(reason)

    def _pump(self, session: Session) -> None:
        """Read SESSION until it ends (or we close), parsing at the rate the pane paints."""
        backlog = bytearray()
        frame_start, spent = _clock(), 0.0
        skipped_at = float("-inf")
        ended = False
        while not self._closing and not ended:
            now = _clock()
            if now - frame_start >= FRAME:
                frame_start, spent = now, 0.0
            share = FLOOD_PARSE_SHARE if now - skipped_at < FLOOD_HOLD else PARSE_SHARE
            budget_left = spent < FRAME * share and not self.hold()
            echo = self._echo_due(now)
            # Block only when there is nothing to parse, or this frame's share is spent.
            timeout = 0.5 if not backlog else 0.0 if budget_left or echo else frame_start + FRAME - now
            ended = not self._take(session, backlog, timeout)
            if echo and self._echo_end is None:
                self._echo_end = self.model.bytes_fed + len(backlog)
            if len(backlog) > (KEEP if echo else BEHIND):
                self._skip(backlog)
                skipped_at = now
            self.max_backlog = max(self.max_backlog, len(backlog))
            if backlog and (budget_left or ended or echo):
                piece = bytes(backlog[:SLICE])
                del backlog[:SLICE]
                started = _clock()
                with self.lock:
                    self.model.feed(fix_separators(piece))
                spent += _clock() - started
                self.changed.set()
                if self.ui_waiting:
                    # A lock is not fair: step aside so the pane can take its snapshot of the screen.
                    time.sleep(0.001)
                ended = ended and not backlog  # the last bytes before the end are shown too

    def _echo_due(self, now: float) -> bool:
        """A key was sent within ECHO_WINDOW and what was read after it is not all parsed or skipped."""
        end = self._echo_end
        return now - self._sent_at < ECHO_WINDOW and (end is None or self.model.bytes_fed < end)

    @property
    def echo_pending(self) -> bool:
        """The last key's echo may still be on its way to the screen (see ECHO_WINDOW)."""
        return self._echo_due(_clock())

    def _take(self, session: Session, backlog: bytearray, timeout: float) -> bool:
        """Add what the session has (waiting up to TIMEOUT for the first bytes, not for more)
        to BACKLOG, at most about BEHIND bytes; False once the session has ended."""
        took = 0
        while took < BEHIND:
            got = session.read(timeout=timeout)
            if got is None:
                return False
            data, events = got
            gaps = [e for e in events if e.get("event") == "skipped"]
            if gaps:  # the supervisor skipped ahead: what we hold from before the gap goes too
                at = int(gaps[-1].get("at", 0))
                with self.lock:
                    self.model.skip(len(backlog) + at + sum(int(e.get("bytes", 0)) for e in gaps))
                del backlog[:]
                data = data[at:]
            if not data:
                if gaps:
                    timeout = 0.0
                    continue
                return True
            backlog += data
            took += len(data)
            timeout = 0.0
        return True

    def _skip(self, backlog: bytearray) -> None:
        """Leave out all but the last KEEP bytes of BACKLOG, from a safe start in them."""
        cut = len(backlog) - KEEP
        start = safe_start(bytes(backlog[cut:]))
        cut += start if start < KEEP else 0  # no safe start in them: cut where we must
        with self.lock:
            self.model.skip(cut)
        del backlog[:cut]

    @contextlib.contextmanager
    def locked_for_ui(self):
        """The model's lock, taken from the UI thread ahead of the reader."""
        self.ui_waiting = True
        try:
            with self.lock:
                self.ui_waiting = False
                yield
        finally:
            self.ui_waiting = False

    def send(self, data: bytes) -> bool:
        """Queue DATA (a key's bytes, a paste) to be sent; never blocks on the session.  False
        when it was dropped: SEND_MAX bytes are waiting (the peer stopped reading)."""
        with self._send_lock:
            if self._pending >= SEND_MAX:
                self.dropped += len(data)
                return False
            if self._outgoing or self._pending or not self._send_now(data):
                self._queue(data)
                self._pending += len(data)
        self._echo_end = None
        self._sent_at = _clock()
        return True

    def resize(self, columns: int, lines: int) -> None:
        with self.locked_for_ui():
            self.model.resize(columns, lines)
        self.changed.set()
        with self._send_lock:  # after the keys typed before it, as a terminal's SIGWINCH comes
            if self._outgoing and isinstance(self._outgoing[-1], tuple):
                self._outgoing.pop()  # a size not sent yet: only the last one matters
            self._queue((lines, columns))

    def _send_now(self, data: bytes) -> bool:
        """Send DATA from the UI thread if the session can without waiting (its send_now: the
        local console's socket); nothing is queued or being sent (the send lock held), so it is
        in order.  Saves the sender's hand-off: under a flood it waited for the GIL the reader
        holds (p90 2.3 ms against 0.1 ms, bench/bench_console_send.py).  A failed send is left
        to the sender, which says so through on_end outside the lock."""
        send_now = getattr(self._session, "send_now", None)
        if send_now is None:
            return False
        try:
            return bool(send_now(data))
        except OSError:
            return False

    def _queue(self, item: bytes | tuple[int, int]) -> None:
        """Add ITEM for the sender (the send lock held)."""
        self._outgoing.append(item)
        self._wake_sender.notify()

    def _send_all(self, session: Session) -> None:
        """The sender's thread: send what is queued, in order, until the session ends or we close.
        A failed send calls on_end outside the send lock: on_end waits for the UI thread,
        which may be waiting for the lock in send() (review26: the dashboard hung)."""
        while True:
            with self._send_lock:
                while not self._outgoing and not self._closing:
                    self._wake_sender.wait()
                if self._closing:
                    return
                items, self._outgoing = self._outgoing, []
            try:
                for item in _joined(items):
                    if isinstance(item, tuple):
                        session.resize(*item)
                        continue
                    self._echo_end = None
                    self._sent_at = _clock()
                    session.send(item)
                    with self._send_lock:
                        self._pending -= len(item)
            except OSError as e:
                if not self._closing:
                    self.on_end(f"console connection lost: {e}")
                return

    def close(self) -> None:
        if self._closing:
            return
        with self._send_lock:
            self._closing = True
            self._wake_sender.notify()
        if self._thread is not None:
            _SWITCH.give_back()
        if self._session is not None:
            # Closing a socket does not wake a poll() on it in another thread: the reader would
            # sit out its read timeout while the UI waits in join().  A shutdown wakes it (EOF).
            sock = getattr(self._session, "sock", None)
            with contextlib.suppress(OSError):
                if isinstance(sock, socket.socket):
                    sock.shutdown(socket.SHUT_RDWR)
                self._session.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        # The sender is not waited for: it may be in a send the peer never reads.  The shutdown
        # above ends that send (a socket), as the far session's close ends its ssh (a pipe).


def _joined(items: list[bytes | tuple[int, int]]) -> list[bytes | tuple[int, int]]:
    """ITEMS with adjacent keys joined: one send (one frame) for what was typed meanwhile."""
    out: list[bytes | tuple[int, int]] = []
    for item in items:
        last = out[-1] if out else None
        if isinstance(item, bytes) and isinstance(last, bytes):
            out[-1] = last + item
        else:
            out.append(item)
    return out
