"""A guest's PID 1 that floods the notify socket with distinct STATUS= lines costs the host little.

The supervisor read every datagram as it came and wrote state.json once per batch of 256:
a guest sending as fast as it could kept the host-side supervisor near a third of a CPU
busy (thousands of state.json writes in seconds).  Now the socket is read at most
NOTIFY_PER_TICK datagrams a tick (the sender blocks meanwhile) and a new STATUS= alone is
written at most every STATUS_WRITE_INTERVAL, the last one always; READY=1 is acted on and
written as soon as it is read.  Counted, not timed: the supervisor's write system calls and
CPU ticks (/proc/PID/io, /proc/PID/stat) over the flood.  A real Debian machine's PID 1.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from conftest import wait_for

from nsdash.machines import state as st
from nsdash.machines.supervisor import NOTIFY_PER_TICK, NOTIFY_TICK, STATUS_WRITE_INTERVAL

FLOOD_SECONDS = 3.0
FLOOD = ("import os, signal, socket, sys, time\n"
         "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})\n"
         "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
         "path, n = os.environ['NOTIFY_SOCKET'], 0\n"
         "s.sendto(b'STATUS=flooding', path)\n"
         "signal.sigwait({signal.SIGUSR1})\n"  # the test has read the supervisor's counts: go
         "end = time.monotonic() + float(sys.argv[1])\n"
         "while time.monotonic() < end:\n"
         "    s.sendto(b'STATUS=step %d' % n, path)\n"
         "    n += 1\n"
         "s.sendto(b'READY=1', path)\n"
         "s.sendto(b'STATUS=done after %d' % n, path)\n"
         "time.sleep(600)\n")


def _counts(pid: int) -> tuple[int, int]:
    """(CPU ticks, write system calls) of process PID so far."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(stat[11]) + int(stat[12]), int(io["syscw"])


def test_a_status_flood_is_read_at_a_bounded_rate_and_written_coalesced(detached, debian_cache, machine_name):
    detached("--notify-ready=yes", "-q", "-xD", str(debian_cache), "python3", "-c", FLOOD, str(FLOOD_SECONDS))
    d = st.machine_dir(machine_name)
    s = wait_for(lambda: (x := st.read_state(d)) is not None and x.status_text == "flooding" and x, timeout=30)
    assert s.state == "starting"
    ticks0, writes0 = _counts(s.supervisor)
    assert s.leader is not None
    os.kill(s.leader, signal.SIGUSR1)
    done = wait_for(lambda: (x := st.read_state(d)) is not None and (x.status_text or "").startswith("done")
                    and x, timeout=FLOOD_SECONDS + 10)
    ticks1, writes1 = _counts(s.supervisor)
    assert done.state == "running"  # READY=1 after the flood was acted on
    sent = int(done.status_text.split()[-1])
    took = FLOOD_SECONDS + 1  # the flood and a second of slack for the rest
    assert sent <= took * NOTIFY_PER_TICK / NOTIFY_TICK, sent  # the socket was read at the bounded rate
    assert writes1 - writes0 <= took / STATUS_WRITE_INTERVAL + 5, writes1 - writes0  # was thousands
    assert ticks1 - ticks0 <= 0.1 * took * os.sysconf("SC_CLK_TCK"), ticks1 - ticks0  # was ~30% of a CPU
