"""`nsdash login NAME`: the machine's console in this terminal, like machinectl login.

Raw mode, the window size follows the terminal (SIGWINCH), and ^] pressed
three times within a second detaches, leaving the machine running.

A flooding machine (`yes > /dev/console`) writes faster than a terminal
(tmux, ssh) shows, and the supervisor drops an attacher that falls a megabyte
behind.  So the output goes out without blocking, keys are read meanwhile,
and once BEHIND bytes wait for the terminal all but the last KEEP of them
are skipped, from a point where a terminal is in its ground state
(consolelog.safe_start); the closing message says how much.  Where output
was skipped, here or by the supervisor, the terminal gets consolelog.GAP_RESET
first: what was skipped may have held the end of what the last bytes shown began.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import termios
import tty

from nsdash.system.fdio import write_all
from nsdash.system.terminal import window_size

ESCAPE = 0x1D  # ^]
ESCAPE_COUNT = 3
ESCAPE_WINDOW = 1.0
BEHIND = 256 * 1024  # bytes waiting for the terminal past which the oldest are skipped
KEEP = 64 * 1024


class EscapeDetector:
    """Spots ^] typed ESCAPE_COUNT times within ESCAPE_WINDOW seconds."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def feed(self, data: bytes, now: float) -> bool:
        for b in data:
            if b != ESCAPE:
                self.times.clear()
                continue
            self.times = [t for t in self.times if now - t <= ESCAPE_WINDOW] + [now]
            if len(self.times) >= ESCAPE_COUNT:
                return True
        return False



def skip_behind(pending: bytearray) -> int:
    """Cut PENDING to its last KEEP bytes (from a safe start) once it holds more than BEHIND;
    how many bytes went."""
    from nsdash.machines.consolelog import GAP_RESET, safe_start

    if len(pending) <= BEHIND:
        return 0
    cut = len(pending) - KEEP
    start = safe_start(bytes(pending[cut:]))
    cut += start if start < KEEP else 0
    pending[:cut] = GAP_RESET
    return cut


def with_gaps(out: bytes, events: list[dict]) -> bytes:
    """OUT with GAP_RESET at the place of each gap the supervisor skipped (`skipped` events)."""
    places = [int(e.get("at", 0)) for e in events if e.get("event") == "skipped"]
    if not places:
        return out
    from nsdash.machines.consolelog import GAP_RESET

    parts, last = [], 0
    for at in places:
        parts += [out[last:at], GAP_RESET]
        last = at
    parts.append(out[last:])
    return b"".join(parts)


def _flush(fd: int, pending: bytearray) -> None:
    """Write what the terminal takes now (FD is non-blocking)."""
    try:
        while pending:
            del pending[:os.write(fd, pending)]
    except BlockingIOError:
        pass


def login(name: str) -> int:
    import time

    from nsdash.machines import client
    from nsdash.system.ready import wait

    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    size = window_size(stdin)
    session = client.attach(name, *(size or (None, None)))
    sys.stderr.write(f"Connected to machine {name}. Press ^] three times within 1s to exit session.\r\n")
    sys.stderr.flush()
    is_tty = os.isatty(stdin)
    saved = termios.tcgetattr(stdin) if is_tty else None
    sig_r, sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    old_wakeup = signal.set_wakeup_fd(sig_w, warn_on_full_buffer=False)
    old_winch = signal.signal(signal.SIGWINCH, lambda *_: None)
    escape = EscapeDetector()
    message = f"Connection to machine {name} terminated."
    pending = bytearray()  # output the terminal has not taken yet
    skipped = 0
    was_blocking = os.get_blocking(stdout)
    try:
        if is_tty:
            tty.setraw(stdin)
        os.set_blocking(stdout, False)
        stdin_open = True
        first = session.read(0)  # whatever arrived together with the attach reply
        if first and first[0]:
            pending += first[0]
        while True:
            watch = [session.fileno(), sig_r] + ([stdin] if stdin_open else [])
            ready, writable = wait(watch, [stdout] if pending else [])
            if writable:
                _flush(stdout, pending)
            if sig_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(sig_r, 64)
                size = window_size(stdin)
                if size:
                    session.resize(*size)
            if stdin in ready:
                try:
                    data = os.read(stdin, 4096)
                except BlockingIOError:  # stdin shares stdout's file (a terminal): not ready after all
                    data = None
                except OSError:  # (`0>/dev/null`: write-only) no input to send, as at its end
                    data = b""
                if data == b"":
                    stdin_open = False  # piped input ended: keep showing output
                elif data:
                    if escape.feed(data, time.monotonic()):
                        break
                    session.send(data)
            if session.fileno() in ready:
                got = session.read(0)
                if got is None:
                    message = f"Machine {name} terminated."
                    break
                out, events = got
                # The supervisor left out what came while we were a megabyte behind: said at the end.
                skipped += sum(int(e.get("bytes", 0)) for e in events if e.get("event") == "skipped")
                out = with_gaps(out, events)
                if out:
                    pending += out
                    skipped += skip_behind(pending)
                    _flush(stdout, pending)
                if any(e.get("event") in ("poweroff", "exited", "killed") for e in events):
                    message = f"Machine {name} terminated."
                failed = [e for e in events if e.get("event") == "error"]
                if failed:  # the supervisor drops the session after it: say why, not "terminated"
                    message = f"Console of machine {name} failed: {failed[0].get('message', 'unknown error')}"
                    break
    finally:
        os.set_blocking(stdout, was_blocking)
        with contextlib.suppress(OSError):
            write_all(stdout, bytes(pending))
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, old_winch)
        signal.set_wakeup_fd(old_wakeup)
        os.close(sig_r)
        os.close(sig_w)
        session.close()
    if skipped:
        message += f" ({skipped / 1e6:.1f} MB of console output skipped: the terminal could not keep up.)"
    sys.stderr.write(f"\r\n{message}\r\n")
    return 0
