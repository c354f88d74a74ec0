"""The terminal's input thread sleeps until input (nsdash.tui.quiet_input; issue 16 at rest).

Counted over a real PTY: the thread's wake-ups while nothing is typed (Textual's own driver
wakes ten times a second), a key, a lone Esc (the parser's wait still runs out), and a stop
that ends the thread at once."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import tty
from pathlib import Path
from types import SimpleNamespace

from textual import events

from nsdash.tui.backlog import CountingDriver

REPO = Path(__file__).resolve().parents[2]


def _wait_for(condition, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@contextlib.contextmanager
def _driver_on_a_pty(app: object = None):
    """A CountingDriver reading a real PTY (raw), the keys it takes, and `end`: the PTY's
    master (-1 once the test closed it) and the input threads the test started, all stopped
    and closed after it."""
    master, slave = os.openpty()
    tty.setraw(slave)
    driver = CountingDriver(app or SimpleNamespace(backlog=None))
    keys: list[str] = []
    driver.fileno = slave
    driver.process_message = lambda message: keys.append(message.key) if isinstance(message, events.Key) else None
    end = SimpleNamespace(master=master, threads=[])
    try:
        yield driver, keys, end
    finally:
        driver.exit_event.set()
        for thread in end.threads:
            thread.join(timeout=5)
        driver.close()
        if end.master >= 0:
            os.close(end.master)
        os.close(slave)


def _input_thread(driver: CountingDriver, end: SimpleNamespace) -> threading.Thread:
    thread = threading.Thread(target=driver.run_input_thread, daemon=True)
    thread.start()
    end.threads.append(thread)
    return thread


def _stopped(driver: CountingDriver, thread: threading.Thread) -> bool:
    """Whether setting the exit event ends THREAD at once (it sleeps in poll until then)."""
    driver.exit_event.set()
    thread.join(timeout=5)
    return not thread.is_alive()


async def test_the_input_thread_sleeps_until_a_key_and_still_takes_a_lone_escape():
    with _driver_on_a_pty() as (driver, keys, end):
        thread = _input_thread(driver, end)
        time.sleep(0.5)  # nothing typed: Textual's thread woke 5 times meanwhile
        assert driver.input_wakes == 0
        os.write(end.master, b"a")
        _wait_for(lambda: keys == ["a"], "the key a")
        assert driver.input_wakes == 1
        os.write(end.master, b"\x1b")  # a lone Esc: the parser waits for more, then it is the Escape key
        _wait_for(lambda: keys == ["a", "escape"], "the Escape key")
        woke = driver.input_wakes
        time.sleep(0.3)
        assert driver.input_wakes == woke  # asleep again once the wait ran out
        assert _stopped(driver, thread)
    assert driver._wake_r == driver._wake_w == -1  # its pipe closed with it


async def test_a_terminal_that_hangs_up_ends_the_app_and_the_thread_waits_no_more():
    """The terminal closes while SIGHUP is ignored (nohup): its reads say end of input.  The
    thread asks the app to end, as its quit key does, and sleeps (it was left running for
    nobody, sampling every cgroup each second; Textual's own thread spun on the empty reads)."""
    asked: list[object] = []
    app = SimpleNamespace(backlog=None, exit=object())
    app.call_later = lambda callback, *args: asked.append(callback)
    with _driver_on_a_pty(app) as (driver, keys, end):
        thread = _input_thread(driver, end)
        os.write(end.master, b"a")
        _wait_for(lambda: keys == ["a"], "the key a")
        assert asked == []
        os.close(end.master)  # the terminal hangs up
        end.master = -1
        _wait_for(lambda: asked == [app.exit], "the app asked to end")
        woke = driver.input_wakes
        time.sleep(0.3)
        assert driver.input_wakes == woke and thread.is_alive()  # asleep until input stops
        assert _stopped(driver, thread)


async def test_a_stop_reads_what_was_typed_without_waiting_for_more(monkeypatch):
    """The driver's caller (`q`'s terminal restore, ^Z) waits for the input thread to end: its last
    look at the terminal waits for nothing (Textual's own sleeps 0.1 s there, the shell's prompt
    that much late), and a key already typed is still taken."""
    import select

    from nsdash.tui import quiet_input

    waits: list[float | None] = []
    real_select = select.select

    def recording_select(r, w, x, timeout=None):
        waits.append(timeout)
        return real_select(r, w, x, timeout)

    monkeypatch.setattr(quiet_input, "select", SimpleNamespace(
        poll=select.poll, select=recording_select, POLLIN=select.POLLIN))
    with _driver_on_a_pty() as (driver, keys, end):
        thread = _input_thread(driver, end)
        assert _stopped(driver, thread)
        assert waits == [0]  # one look, no wait
        # a key in the terminal's buffer when input stops (the thread's loop never saw it): taken
        os.write(end.master, b"b")
        driver.exit_event.clear()
        waits.clear()
        driver.exit_event.set()  # stopped before it starts: only the last look reads
        thread = _input_thread(driver, end)
        thread.join(timeout=5)
        assert not thread.is_alive() and keys == ["b"] and waits == [0]


async def test_a_resumed_input_thread_still_sleeps_until_input_and_only_a_stopped_one_is_resumed(monkeypatch):
    """^Z closes the driver (suspend_application_mode), its wake-up pipe too; fg resumes it.  The
    resumed thread sleeps until input as before (without a pipe it was Textual's, awake ten
    times a second), and a SIGCONT while the thread runs starts nothing."""
    from textual.drivers.linux_driver import LinuxDriver

    with _driver_on_a_pty() as (driver, keys, end):

        def start(self) -> None:  # what Textual's start_application_mode does for input
            self._key_thread = _input_thread(self, end)

        monkeypatch.setattr(LinuxDriver, "start_application_mode", start)
        driver.close()  # the end of ^Z's suspend, its input thread stopped
        driver.resume_application_mode()  # fg
        assert len(end.threads) == 1 and driver._wake_r >= 0
        time.sleep(0.3)
        assert driver.input_wakes == 0  # asleep
        os.write(end.master, b"a")
        _wait_for(lambda: keys == ["a"], "the key a")
        assert driver.input_wakes == 1
        driver.resume_application_mode()  # a SIGCONT with the thread running: nothing to resume
        assert len(end.threads) == 1
        assert _stopped(driver, end.threads[0])


class _Dashboard:
    """The real `nsdash` dashboard in a PTY (HUP: SIGHUP ignored, as under nohup); what it
    writes is read all the time, as a terminal would."""

    def __init__(self, ignore_hup: bool = False, env: dict[str, str] | None = None) -> None:
        import pty
        import signal
        import sys

        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            if ignore_hup:
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
            os.chdir(REPO)
            os.execvpe(sys.executable, [sys.executable, "-m", "nsdash"],
                       {**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm-256color", **(env or {})})
        self.seen = b""
        self.framed = False  # its first frame written (the machine list's title)

    def pump(self, seconds: float) -> None:
        import select

        end = time.monotonic() + seconds
        while self.fd >= 0 and time.monotonic() < end:
            if select.select([self.fd], [], [], 0.05)[0]:
                try:
                    self.seen += os.read(self.fd, 65536)
                except OSError:
                    return
                self.framed = self.framed or b"Machines" in self.seen
                self.seen = self.seen[-4096:]

    def started(self) -> None:
        """Until its first frame has been written, then a little more."""
        deadline = time.monotonic() + 60
        while not self.framed:
            assert time.monotonic() < deadline, self.seen[-400:]
            self.pump(0.1)
        self.pump(0.5)

    def hang_up(self) -> None:
        os.close(self.fd)
        self.fd = -1

    def status_within(self, seconds: float, what: str) -> int:
        deadline = time.monotonic() + seconds
        while True:
            assert time.monotonic() < deadline, f"nsdash still runs {seconds:g} s after {what}"
            self.pump(0.05)
            done, st = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.pid = 0
                return os.waitstatus_to_exitcode(st)

    def close(self) -> None:
        import signal

        if self.pid:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        if self.fd >= 0:
            os.close(self.fd)


def test_nsdash_ends_when_its_terminal_closes_with_sighup_ignored():
    """The terminal closes (the kernel sends SIGHUP and SIGCONT) while SIGHUP is ignored."""
    dashboard = _Dashboard(ignore_hup=True)
    try:
        dashboard.started()
        dashboard.hang_up()
        assert dashboard.status_within(10, "its terminal closed") == 0
    finally:
        dashboard.close()


def test_q_still_quits_after_a_sigcont_that_resumed_nothing():
    """Textual resumes application mode on every SIGCONT: one without a ^Z before it made a
    second input thread, which slept on through the quit, so nsdash never ended (session 10)."""
    import signal

    dashboard = _Dashboard()
    try:
        dashboard.started()
        os.kill(dashboard.pid, signal.SIGCONT)
        dashboard.pump(1)
        os.write(dashboard.fd, b"q")
        assert dashboard.status_within(10, "q") == 0
    finally:
        dashboard.close()


def test_q_ends_nsdash_with_its_first_starts_rules_written_whole(tmp_path):
    """A new user's first start (no rule cache) quit with q: exit status 0 (nsdash.cli.run exits
    without the interpreter's teardown, after the rule cache's writer thread was waited for), the
    rules written, and nothing else left in the cache directory."""
    from nsdash.tui.rulecache import RuleCache, default_path

    dashboard = _Dashboard(env={"XDG_CACHE_HOME": str(tmp_path)})
    try:
        dashboard.started()
        os.write(dashboard.fd, b"q")
        assert dashboard.status_within(10, "q") == 0
    finally:
        dashboard.close()
    path = default_path({"XDG_CACHE_HOME": str(tmp_path)})
    assert path is not None and os.listdir(os.path.dirname(path)) == [os.path.basename(path)]
    assert RuleCache(path)._stored
