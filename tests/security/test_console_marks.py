"""A console of combining marks on one cell costs the dashboard's console pane linear time.

Whoever writes to a machine's console (its root, or a user logged in on it) may draw 20,000
combining accents (U+0301, 40 KB) onto one character.  pyte, the console pane's terminal
model, NFC-normalises the cell's whole text at each mark: O(N^2), about 9 s of CPU in the
reader thread for these 40 KB (the thread shares the GIL with the UI), growing with every
mark after, and a cell of 20,480 characters kept and painted.  A cell now holds at most CELL_MAX characters, the extra marks
dropped.  Not timed: the test counts the characters in the cell and the normalisations made.
A real BusyBox machine's console, read through the supervisor as the pane reads it.
"""

from __future__ import annotations

import time
import unicodedata

from nsdash.machines import client
from nsdash.tui.console import terminal
from nsdash.tui.console.terminal import CELL_MAX, TerminalModel

# 2**14 + 2**12 = 20,480 marks after an 'a', built by doubling (BusyBox sh has no repetition), once
# the host has attached
SCRIPT = r"""
while [ ! -e /tmp/go ]; do usleep 20000; done
m=$(printf '\314\201'); s=$m; i=0; while [ $i -lt 14 ]; do s=$s$s; i=$((i+1)); done
t=$m; i=0; while [ $i -lt 12 ]; do t=$t$t; i=$((i+1)); done
printf 'a%s%s\n' "$s" "$t"; echo marks-done; exec sleep 1000
"""


def test_a_cell_of_20000_marks_is_bounded(detached, busybox_tree, machine_name, monkeypatch):
    calls = []
    real = unicodedata.normalize

    def counted(form: str, text: str) -> str:
        calls.append(len(text))
        return real(form, text)

    monkeypatch.setattr(terminal.pyte.screens.unicodedata, "normalize", counted)
    detached("-D", str(busybox_tree), "/bin/sh", "-c", SCRIPT)
    model = TerminalModel(80, 24)
    session = client.attach(machine_name, rows=24, cols=80)
    leader = client.status(machine_name)["leader"]
    open(f"/proc/{leader}/root/tmp/go", "w").close()  # once attached: a replay is not the whole line
    try:
        deadline = time.monotonic() + 60
        while not any("marks-done" in line for line in model.display()):
            assert time.monotonic() < deadline, model.display()
            got = session.read(timeout=0.5)
            if got is not None:
                model.feed(got[0])
    finally:
        session.close()
    cells = [cell.data for line in model.screen.buffer.values() for cell in line.values()]
    assert max(len(c) for c in cells) <= CELL_MAX
    assert any(c.startswith("\u00e1") for c in cells), [c for c in cells if len(c) > 1][:5]  # the a, accented
    assert len(calls) < 2 * CELL_MAX and sum(calls) < CELL_MAX ** 2  # (20,000 calls, 200 M characters before)
