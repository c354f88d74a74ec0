"""What a guest or a far host writes is kept and shown bounded in the dashboard (issue 15, review21).

A guest's process may carry megabytes of arguments (ARG_MAX: 128 KiB each, about 2 MB in
all), and the dashboard read each process's command line whole every REREAD walks and kept
it for the process's life: a thousand such processes, gigabytes.  A guest's os-release ID
and VERSION_ID may be 64 KiB each, and a far host's `list -o json` says what it likes: the
machine list fits its columns to their widest cell, so one such cell made every row that
wide.  Counted, not timed."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from nsdash.system.text import SHOWN_FIELD_MAX
from nsdash.tui.screens.machine import describe


@pytest.fixture
def long_process():
    """A process of this host whose command line is 1.5 MB (its arguments: 15 of 100 KB)."""
    args = [("\x1b]0;owned\x07" + "a" * 100_000) for _ in range(15)]
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *args])
    try:
        # (the interpreter may exec again as it starts, its command line empty meanwhile)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
                if len(f.read()) > 1_500_000:
                    break
            time.sleep(0.01)
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_a_command_line_of_megabytes_is_read_and_kept_bounded(long_process, monkeypatch):
    from nsdash.monitor import host, procs
    from nsdash.monitor.tree import CgroupNode

    with open(f"/proc/{long_process}/cmdline", "rb") as f:
        assert len(f.read()) > 1_500_000  # what the process carries
    read = os.read
    got: list[int] = []

    def counted(fd: int, n: int) -> bytes:
        data = read(fd, n)
        got.append(len(data))
        return data

    snapshots = host.HostSnapshots.__new__(host.HostSnapshots)  # (its readers are not needed here)
    snapshots._commands, snapshots._round = {}, 0
    monkeypatch.setattr(procs.posix, "read", counted)
    commands = snapshots._command_lines(CgroupNode("/", pids=(long_process,)))
    monkeypatch.undo()
    text = commands[long_process]
    assert sum(got) <= host.COMMAND_BYTES + 4096, f"{sum(got)} bytes read"  # (its comm at most besides)
    assert len(text) == host.COMMAND_COLUMNS and text.endswith("…"), len(text)
    assert text.startswith(f"{sys.executable} -c import time; time.sleep(60) \\x1b]0;owned\\x07aaa")
    assert "\x1b" not in text


def test_cgls_still_shows_a_whole_command_line_when_asked_for_it(long_process):
    from nsdash.monitor.procs import cmdline

    text = cmdline(long_process)  # (no columns: cgls -l, a pipe)
    assert text is not None and len(text) > 1_500_000 and "\x1b" not in text


def test_a_machine_list_cell_is_bounded_whatever_the_guest_or_far_host_wrote():
    from nsdash.tui.widgets.machine_list import text_cell

    cell = text_cell("\x1b]0;owned\x07[@click=app.quit]" + "d" * (1 << 20))
    assert cell.cell_len <= 4 * SHOWN_FIELD_MAX and "\x1b" not in cell.plain
    assert cell.plain.startswith("\\x1b]0;owned\\x07[@click=app.quit]ddd")
    assert text_cell("debian 12").plain == "debian 12"


def test_a_far_machine_is_bounded_or_refused():
    from nsdash.tui.remote import machine_info

    for name in ("m" * 65, "x[@click=app.quit]y", "x[/b]", "a_b", "\x1b]0;t\x07", "-x", "", 7):
        assert machine_info("far", {"machine": name, "state": "running"}) is None, name
    huge = "\x1b[2J" + "o" * (1 << 20)
    info = machine_info("far", {"machine": "m" * 64, "state": "running", "os": huge, "version": huge,
                                "addresses": [huge]})
    assert info is not None and info.name == "far/" + "m" * 64
    assert len(info.os) <= 2 * 4 * SHOWN_FIELD_MAX + 1 and len(info.address) <= 4 * SHOWN_FIELD_MAX, len(info.os)
    assert info.os.startswith("\\x1b[2Jooo") and "\x1b" not in info.os
    assert len(describe(info, info.name, 0.0)) < 3000  # the machine view's header line


def test_a_guests_os_release_is_shown_bounded(monkeypatch):
    from nsdash.machines.registry import Machine
    from nsdash.monitor import host

    huge = "\x1b]0;owned\x07" + "i" * 60_000  # os-release is read up to 64 KiB
    snapshots = host.HostSnapshots.__new__(host.HostSnapshots)  # (its readers are not needed here)
    monkeypatch.setattr(snapshots, "_list_registry", lambda errors: [Machine("g", os_release={"ID": huge,
                                                                                          "VERSION_ID": huge})],
                        raising=False)
    (info,) = snapshots._read_machines([])
    assert len(info.os) <= 2 * SHOWN_FIELD_MAX + 1, len(info.os)
    assert len(describe(info, "g", 0.0)) < 3000  # (escaped there: a few times that at most)


def test_machine_names_in_titles_are_never_markup():
    """A str border title or Static is read as markup: '[@click=app.quit]' in a machine's name
    was a link to an action there, '[/b]' a MarkupError.  Far names are refused above; the
    console's title (and the limits form's) take Text as well (review21)."""
    from nsdash.tui.widgets.console_pane import ConsolePane

    pane = ConsolePane()
    for name in ("far/x[@click=app.quit]y", "far/x[/b]y"):
        pane.watch_attached(name)
        title = pane._border_title
        assert title is not None and title.plain == f"Console: {name}", title
        assert not [s for s in title.spans if "@click" in str(s.style)], title.spans
