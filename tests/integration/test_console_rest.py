"""A flooding console is read a tick at a time (issue 15: keys within 100 ms while a machine
floods).  A guest's `yes > /dev/console` never waits for its reader: read whenever the PTY
polls readable, it came in ~40-byte pieces, tens of thousands of reads, log writes and frames
to every attacher a second.  Counted, not timed: between any two looks at the console that
found bytes there are at most CONSOLE_BURST more looks than ticks (ConsolePace's bucket: a
loaded host only spreads them out), and what the guest wrote arrives in the log whole, in far
fewer, bigger pieces."""

from __future__ import annotations

import time

from nsdash.launcher.options import parse_spawn_args
from nsdash.machines import supervisor as sup
from nsdash.machines.supervisor import Supervisor


def test_a_flooding_console_is_read_once_a_tick_in_big_pieces(busybox_tree, machine_name, monkeypatch, reaper):
    # (reaper: the engine makes its process, here pytest's, a child subreaper; the fixture undoes it)
    spec = parse_spawn_args(["-q", "-D", str(busybox_tree), "-M", machine_name, "/bin/sh", "-c",
                             "yes > /dev/console & sleep 1; kill $!; echo; echo FLOOD-END > /dev/console"])
    engine = Supervisor(spec)
    pieces: list[tuple[float, int]] = []  # (when, bytes) of each log write of console bytes while PID 1 ran
    logged: list[bytes] = []  # the end of every log write (the separators too)

    def on_ready(_leader: int) -> None:
        log = engine.log
        assert log is not None
        write = log.write

        def counted(data: bytes) -> None:
            logged.append(data[-200:])
            if b"-- nsdash: " not in data and engine.outcome is None:  # not a separator, nor the final drain
                pieces.append((time.monotonic(), len(data)))
            write(data)

        monkeypatch.setattr(log, "write", counted)

    engine.on_ready = on_ready
    assert engine.run() == 0

    flood = sum(n for _, n in pieces)
    assert flood > 100_000, f"the guest wrote only {flood} bytes: no flood to read"
    times = [when for when, _ in pieces]
    excess = max(j - i - (times[j] - times[i]) / sup.CONSOLE_TICK
                 for i in range(len(times)) for j in range(i, len(times)))
    # +1: the log write comes a little before the look's end, which the bucket counts from
    assert excess <= sup.CONSOLE_BURST + 1, (f"{excess:.1f} looks more than ticks in one stretch "
                                             f"(bucket: {sup.CONSOLE_BURST}, tick {sup.CONSOLE_TICK} s)")
    assert len(pieces) < sup.CONSOLE_BURST + 2 * (times[-1] - times[0]) / sup.CONSOLE_TICK, len(pieces)
    assert flood / len(pieces) > 1024, f"{len(pieces)} log writes for {flood} bytes"
    assert any(b"FLOOD-END" in data for data in logged[-4:]), logged[-4:]  # the line after it, too
