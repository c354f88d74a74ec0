"""`nsdash login` on a real terminal (tmux) across a gap in the console's stream.

The guest switches its console to the alternate screen, a small scroll region, reverse
video and DEC line drawing (and the terminal shows it), floods, then undoes all of that
and prints a last line.  `nsdash login` is stopped meanwhile, so the supervisor skips it ahead: it shows the
start of the flood, then (after the gap, which held the undoing) the console's tail.
The terminal must show that last line as the guest's own terminal does: on the normal
screen, scrolling the whole of it, plain text.  (Before, login wrote the tail into the
state the skipped bytes had undone: reverse line-drawing in a 4-row alternate screen.)"""

from __future__ import annotations

import os
import shutil
import signal

import pytest
from _tmux import Tmux
from conftest import NSDASH, wait_for

from nsdash.machines import client, consolelog
from nsdash.machines import state as st

pytestmark = [pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]

ROWS = 30
MARK = "tail-marker-qx"  # q and x are a line and a bar in DEC line drawing


def _login_pid(pane_pid: int) -> int:
    """The `nsdash login` process, a child of the pane's shell."""
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if ppid == pane_pid and b"login" in argv:
            return pid
    raise AssertionError(f"no nsdash login under the pane's process {pane_pid}")


def test_login_resets_the_terminal_where_the_supervisor_skipped_ahead(busybox_tree, machine_name, detached):
    script = (
        "while [ ! -e /go ]; do usleep 20000; done; {"
        r" printf '\033[?1049h\033[3;6r\033[7m\033(0\033)0\016';"  # a full-screen program's state
        " while [ ! -e /flood ]; do usleep 20000; done;"
        " yes flood-line-of-the-guest | head -c 4000000;"
        r" printf '\033[m\017\033(B\033[r\033[?1049l';"  # ... undone, in the gap
        f" yes calm-line | head -c 50000; echo {MARK};"
        " } > /dev/console; exec sleep 1000")
    detached("-q", "-D", str(busybox_tree), "/bin/sh", "-c", script)
    wait_for(lambda: (s := st.read_state(st.machine_dir(machine_name))) and s.leader)
    tmux = Tmux(machine_name)
    login = 0
    try:
        # Under the pane's shell, not tmux itself: tmux continues a child of its own that stops.
        tmux.start([*NSDASH, "login", machine_name, "; true"], cols=100, rows=ROWS)
        tmux.wait("Connected to machine")
        wait_for(lambda: client.status(machine_name)["attached"] >= 1, what="login attached")
        login = _login_pid(int(tmux.run("display-message", "-p", "-t", tmux.session, "#{pane_pid}")))
        (busybox_tree / "go").touch()
        wait_for(lambda: tmux.run("display-message", "-p", "-t", tmux.session, "#{alternate_on}").strip() == "1",
                 what="the program's state on the terminal")
        os.kill(login, signal.SIGSTOP)  # a terminal that cannot keep up, at its most
        (busybox_tree / "flood").touch()
        log = st.machine_dir(machine_name) / "console.log"  # (tail: across a rotation under way)
        wait_for(lambda: MARK.encode() in consolelog.tail(log, 4096), timeout=60, what="the guest's last line")
        os.kill(login, signal.SIGCONT)
        screen = tmux.wait("tail-marker")
        flags = tmux.run("display-message", "-p", "-t", tmux.session,
                         "#{alternate_on} #{scroll_region_upper} #{scroll_region_lower} #{insert_flag} "
                         "#{wrap_flag} #{cursor_flag}").split()
        styled = tmux.run("capture-pane", "-p", "-e", "-t", tmux.session)
    finally:
        if login:
            os.kill(login, signal.SIGCONT)
        tmux.kill()
    assert MARK in screen, screen  # ASCII, not line drawing
    assert flags == ["0", "0", str(ROWS - 1), "0", "1", "1"], (flags, screen)
    line = next(line for line in styled.splitlines() if "tail-marker" in line)
    assert "\x1b[7m" not in line and line.startswith(MARK), repr(line)
