"""An unprivileged guest user's PRIORITY= of 5,000 digits stops no journal reader of the host.

journald keeps the PRIORITY= a client sends as it came (it reads one digit for its rate limit
and stores the rest), and util-linux's `logger --journald=FILE` sends any fields.  nsdash read
every all-digit value with int(): past Python's 4,300 digits that raised ValueError, where the
host reads an entry's priority: `nsdash journal` on a terminal (its colour) died with a
traceback, and in the dashboard the poller's thread (the journal pane's reader is its) ended,
so no snapshot came again: a frozen dashboard.  A priority is one digit now, as journalctl
reads it; any other value is none (shown as info).  A real booted Debian guest, user nobody.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess

from conftest import NSDASH, REPO, wait_for

from nsdash.machines import registry
from nsdash.tui.poller import _HostJournal
from tests.integration.test_inside_systemctl import boot, power_off

DIGITS = 5000  # past sys.get_int_max_str_digits() (4,300)
SCRIPT = (f"P=$(head -c {DIGITS} /dev/zero | tr '\\0' 9); "
          "printf 'MESSAGE=huge-priority-line\\nPRIORITY=%s\\nSYSLOG_IDENTIFIER=hostile\\n' \"$P\" > /tmp/fields; "
          "setpriv --reuid=65534 --regid=65534 --clear-groups logger --journald=/tmp/fields")


def _on_a_terminal(*args: str) -> tuple[int, bytes]:
    """Run `nsdash ARGS` with a PTY as its standard output and error (colour on); status, output."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([*NSDASH, *args], stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=REPO)
        os.close(slave)
        out = bytearray()
        while True:
            ready, _, _ = select.select([master], [], [], 30)
            assert ready, "no output within 30 s"
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                break
            if not chunk:
                break
            out += chunk
        return proc.wait(timeout=30), bytes(out)
    finally:
        os.close(master)


def test_a_users_priority_of_5000_digits_is_no_priority(debian_cache, machine_name):
    name = machine_name
    boot(debian_cache, name, "-x")
    try:
        leader = registry.lookup(name).leader
        subprocess.run(["nsenter", "-t", str(leader), "-m", "-u", "-p", "-i", "-n", "--", "/bin/sh", "-c", SCRIPT],
                       check=True, timeout=10)
        reader = _HostJournal((name,))  # the dashboard poller's reader of the journal pane
        try:
            lines = wait_for(lambda: [x for x in reader.tail(50) if x.message == "huge-priority-line"],
                             timeout=30, what="the user's line in the guest's journal")
        finally:
            reader.close()
        assert lines[0].priority is None and lines[0].identifier == "hostile"
        status, out = _on_a_terminal("journal", "-M", name, "-n", "20")
        assert status == 0 and b"Traceback" not in out, out[-1500:]
        assert b"hostile" in out and b"huge-priority-line" in out
    finally:
        power_off(name)
