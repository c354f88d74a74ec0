"""The terminal's input thread asleep until there is something to read (issue 16: at rest).

Textual's Linux driver reads the terminal in a thread of its own that wakes every 0.1 s,
key or no key, to look whether input is to stop and whether the parser's wait for the rest
of an escape sequence is over: ten wake-ups a second, a tenth of a percent of a core at rest,
about a tenth of the dashboard's whole cost then.  QuietInputDriver's thread sleeps in poll(2)
until the terminal has input, until the parser's wait runs out (a lone Esc becomes the Escape
key when nothing follows it, at Textual's own pace, WAIT), or until input stops: the driver's
exit event, when set, writes a byte to a pipe the thread also polls.  The keys, their parsing
and their order are Textual's own (its XTermParser, the driver's process_message).

The loop reads the parser's pending deadline (`_timeout_time`, private): only on the Textual
that nsdash.tui.rows.PINNED names; on another the driver is Textual's own.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
from codecs import getincrementaldecoder
from typing import Any

from textual._xterm_parser import XTermParser
from textual.drivers.linux_driver import LinuxDriver

from nsdash.tui import rows

WAIT = 0.1  # s: how often the thread looks while an escape sequence waits for more (Textual's pace)
_EVENTS = select.POLLIN | select.POLLHUP | select.POLLERR


class _WakingEvent(threading.Event):
    """The driver's exit event: setting it also wakes the input thread (a byte in its pipe)."""

    def __init__(self, driver: QuietInputDriver) -> None:
        super().__init__()
        self._driver = driver

    def set(self) -> None:
        super().set()
        fd = self._driver._wake_w
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.write(fd, b"x")


class QuietInputDriver(LinuxDriver):
    """Textual's Linux driver whose input thread sleeps until input (module docstring)."""

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.exit_event = _WakingEvent(self)
        self.input_wakes = 0  # times the input thread woke (tests read it)

    def resume_application_mode(self) -> None:
        # Textual calls this on every SIGCONT (its way back from ^Z), and SIGCONT also comes with
        # a terminal's hang-up, or from anyone's kill: while application mode is still on, that
        # started a second input thread on this driver.  The two share one wake-up pipe, whose
        # byte only one of them reads: the other slept on when the dashboard quit, and it never
        # ended (q did nothing after a `kill -CONT`).  Only a stopped input thread is resumed.
        if self._key_thread is not None and self._key_thread.is_alive():
            return
        if self._wake_r < 0:  # ^Z closed the driver (suspend_application_mode): a new pipe, or
            # the resumed thread would be Textual's, awake ten times a second
            self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        super().resume_application_mode()

    def close(self) -> None:
        super().close()
        fds, (self._wake_r, self._wake_w) = (self._wake_r, self._wake_w), (-1, -1)
        for fd in fds:
            if fd >= 0:
                os.close(fd)

    def run_input_thread(self) -> None:
        if not rows.usable() or self._wake_r < 0:
            super().run_input_thread()
            return
        parser = XTermParser(self._debug)
        decode = getincrementaldecoder("utf-8")().decode
        with contextlib.suppress(OSError):
            os.read(self._wake_r, 4096)  # a wake-up left by the last stop (suspend, resume)
        poller = select.poll()
        poller.register(self.fileno, _EVENTS)
        poller.register(self._wake_r, select.POLLIN)
        reading = True
        try:
            while not self.exit_event.is_set():
                waiting = getattr(parser, "_timeout_time", 0) is not None
                ready = poller.poll(WAIT * 1000 if waiting else None)
                self.input_wakes += 1
                for fd, _ in ready:
                    if fd == self._wake_r:
                        with contextlib.suppress(OSError):
                            os.read(self._wake_r, 4096)
                    elif reading and not self._feed(parser, decode, final=False):
                        poller.unregister(self.fileno)  # end of input: nothing more to wait for
                        reading = False
                        self._hung_up()
                self._tick(parser)
            # What was typed before input stopped, read without waiting for more: Textual's own thread
            # sleeps 0.1 s here (a select on no file), and the driver's caller, restoring the terminal
            # at `q` or ^Z, waits for this thread: the shell's prompt came 0.1 s late.  A key typed
            # after the stop is flushed by the driver anyway (disable_input: tcflush).
            if reading and select.select([self.fileno], [], [], 0)[0]:
                self._feed(parser, decode, final=True)
                self._tick(parser)
        finally:
            with contextlib.suppress(Exception):
                for _ in parser.feed(""):
                    pass

    def _feed(self, parser: Any, decode: Any, final: bool) -> bool:
        """Read what the terminal has and hand on its events; False at the end of input."""
        data = os.read(self.fileno, 4096)
        if not data:
            return False
        for event in parser.feed(decode(data, final=final)):  # ("" while a character is incomplete)
            self.process_message(event)
        return True

    def _hung_up(self) -> None:
        """The terminal's end of input: it hung up (a closed terminal reads as empty once SIGHUP,
        which would have ended us, is ignored, as under nohup).  Nothing more can be typed or
        shown: the app ends as on its quit key, not left running (and sampling) for nobody."""
        self._app.call_later(self._app.exit)

    def _tick(self, parser: Any) -> None:
        for event in parser.tick():  # an escape sequence's wait run out: its keys
            self.process_message(event)
