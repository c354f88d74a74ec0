"""The engine notices PID 1's end through its pidfd, not on a timer (issue 16: where a boot's
time goes).  Counted, not timed: every poll() of the supervisor's loop blocks with no timeout
while nothing is due, and the poll that ends the run is the one the pidfd woke."""

from __future__ import annotations

import select
from typing import Any

from nsdash.launcher.options import parse_spawn_args
from nsdash.machines.supervisor import Supervisor


class CountingPoll:
    """select.poll() that records each call's timeout and the fds it returned."""

    def __init__(self) -> None:
        self.poll_ = select.poll()
        self.calls: list[tuple[int | None, list[int]]] = []

    def register(self, fd: int, events: int) -> None:
        self.poll_.register(fd, events)

    def unregister(self, fd: int) -> None:
        self.poll_.unregister(fd)

    def poll(self, timeout: int | None = None) -> list[tuple[int, int]]:
        events = self.poll_.poll(timeout)
        self.calls.append((timeout, [fd for fd, _ in events]))
        return events


def test_the_engine_sleeps_until_pid1_ends_and_wakes_on_its_pidfd(busybox_tree, machine_name, monkeypatch, reaper):
    # (reaper: the engine makes its process, here pytest's, a child subreaper; the fixture undoes it)
    # A payload that prints nothing and sends no sd_notify: nothing but its end can wake the loop.
    spec = parse_spawn_args(["-q", "-D", str(busybox_tree), "-M", machine_name, "/bin/sleep", "0.3"])
    engine = Supervisor(spec)
    counting = CountingPoll()
    monkeypatch.setattr(engine, "poller", counting)
    pidfds: list[Any] = []
    engine.on_ready = lambda _leader: pidfds.append(engine.container.pidfd if engine.container else None)

    assert engine.run() == 0

    calls = counting.calls
    assert pidfds and pidfds[0] is not None, "no pidfd: the engine would fall back to a waiting thread"
    assert calls, "the loop never polled"
    assert all(timeout is None for timeout, _ in calls), f"a poll with a timeout (a timer): {calls}"
    # The silent payload gives the loop nothing to do but wait: a handful of wakeups at most
    # (none but the end, plus whatever the console's set-up wrote), never a spin.
    assert len(calls) <= 4, calls
    assert pidfds[0] in calls[-1][1], f"the last wakeup was not PID 1's end: {calls}"
