"""The terminal's input thread sleeps until input (nsdash.tui.quiet_input; issue 16 at rest).

Counted over a real PTY: the thread's wake-ups while nothing is typed (Textual's own driver
wakes ten times a second), a key, a lone Esc (the parser's wait still runs out), and a stop
that ends the thread at once."""

from __future__ import annotations

import os
import threading
import time
import tty
from types import SimpleNamespace

from textual import events

from nsdash.tui.backlog import CountingDriver


def _wait_for(condition, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


async def test_the_input_thread_sleeps_until_a_key_and_still_takes_a_lone_escape():
    master, slave = os.openpty()
    tty.setraw(slave)
    driver = CountingDriver(SimpleNamespace(backlog=None))
    keys: list[str] = []
    driver.fileno = slave
    driver.process_message = lambda message: keys.append(message.key) if isinstance(message, events.Key) else None
    thread = threading.Thread(target=driver.run_input_thread, daemon=True)
    try:
        thread.start()
        time.sleep(0.5)  # nothing typed: Textual's thread woke 5 times meanwhile
        assert driver.input_wakes == 0
        os.write(master, b"a")
        _wait_for(lambda: keys == ["a"], "the key a")
        assert driver.input_wakes == 1
        os.write(master, b"\x1b")  # a lone Esc: the parser waits for more, then it is the Escape key
        _wait_for(lambda: keys == ["a", "escape"], "the Escape key")
        woke = driver.input_wakes
        time.sleep(0.3)
        assert driver.input_wakes == woke  # asleep again once the wait ran out
        driver.exit_event.set()
        thread.join(timeout=5)
        assert not thread.is_alive()
    finally:
        driver.exit_event.set()
        thread.join(timeout=5)
        driver.close()
        os.close(master)
        os.close(slave)
    assert driver._wake_r == driver._wake_w == -1  # its pipe closed with it
