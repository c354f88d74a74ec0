"""A real BusyBox machine floods its console (`yes > /dev/console`) while the console pane is
attached through the real supervisor: the pane holds a bounded amount (unparsed bytes,
history lines), is never dropped as a slow attacher (not even one stalled through the whole
flood: the supervisor skips ahead for it), and ends showing what the machine printed after
the flood."""

from __future__ import annotations

import os
import threading
import time

import pytest
from _consolekit import PaneApp
from tuikit import wait_for

from nsdash.machines import state as st
from nsdash.tui.console.connection import BEHIND
from nsdash.tui.widgets.console_pane import ConsolePane

pytestmark = pytest.mark.integration
FLOOD = 8_000_000  # bytes of "y\n" (a PTY makes them "y\r\n"): more than the pane parses in the time
PAYLOAD = (f"while [ ! -e /go ]; do sleep 0.05; done; yes | head -c {FLOOD} > /dev/console; "
           "echo; echo FLOOD-DONE > /dev/console; exec sleep 600")


async def test_a_flooding_machine_costs_the_pane_bounded_memory(busybox_tree, detached, machine_name):
    go = busybox_tree / "go"
    detached("-D", str(busybox_tree), "/bin/sh", "-c", PAYLOAD)
    ended: list[str] = []
    async with PaneApp().run_test(size=(120, 40)) as pilot:
        pane = pilot.app.query_one(ConsolePane)
        pane.focus()
        pane.attach(machine_name)
        conn = pane.connection
        assert conn is not None
        conn.on_end = ended.append
        await wait_for(pilot, lambda: conn._session is not None, what="the console to attach")
        go.touch()
        held: list[int] = []

        def done() -> bool:
            held.append(pane.model.history_length)
            return any("FLOOD-DONE" in line for line in pane.screen_text()) or bool(ended)

        await wait_for(pilot, done, timeout=180, what="the line after the flood")
        assert not ended, ended  # never dropped as a slow attacher
        assert pane.attached == machine_name
        assert pane.model.bytes_fed >= FLOOD  # every byte consumed: parsed, or skipped unseen
        # What the pane holds stays bounded the whole time: unparsed bytes and history lines.
        assert conn.max_backlog <= BEHIND
        assert max(held) <= pane.model.history_limit
        # Whether it had to skip to keep up depends on how fast this machine parses (1 run in
        # ~60 it kept up without): the skip itself is proven in test_console_pane.py.
        pane.detach()


def _logged(name: str, text: bytes, timeout: float) -> bool:
    """TEXT is in the tail of machine NAME's console log (the supervisor has read it), within TIMEOUT s."""
    path = st.machine_dir(name) / st.CONSOLE_LOG
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
                if text in f.read():
                    return True
        except FileNotFoundError:  # (rotating)
            pass
        time.sleep(0.05)
    return False


async def test_a_pane_stalled_through_a_flood_is_skipped_ahead_not_dropped(busybox_tree, detached, machine_name):
    """The pane's reader is held up for the whole flood (what a loaded host does to it for a
    while): the supervisor, which never waits for an attacher, falls far more than its 1 MiB
    limit behind for it.  It skips ahead rather than dropping it, and says how much; the pane
    counts that as skipped (its border says so), stays attached, and shows the line after."""
    go = busybox_tree / "go"
    detached("-D", str(busybox_tree), "/bin/sh", "-c", PAYLOAD)
    ended: list[str] = []
    async with PaneApp().run_test(size=(120, 40)) as pilot:
        pane = pilot.app.query_one(ConsolePane)
        pane.attach(machine_name)
        conn = pane.connection
        assert conn is not None
        conn.on_end = ended.append
        await wait_for(pilot, lambda: conn._session is not None, what="the console to attach")
        logged: list[bool] = []

        def stall() -> None:
            with conn.lock:  # the reader takes at most BEHIND from the socket, then waits here
                go.touch()
                logged.append(_logged(machine_name, b"FLOOD-DONE", timeout=180))

        holder = threading.Thread(target=stall)
        holder.start()
        await wait_for(pilot, lambda: not holder.is_alive(), timeout=200, what="the flood to end")
        holder.join()
        assert logged == [True], "the guest's flood did not end"
        await wait_for(pilot, lambda: any("FLOOD-DONE" in line for line in pane.screen_text()) or bool(ended),
                       timeout=60, what="the line after the flood")
        assert not ended, ended  # a slow attacher is not taken for a stopped machine
        assert pane.attached == machine_name
        assert pane.model.bytes_fed >= FLOOD  # the supervisor's gap is counted, with the rest
        # Far more than the supervisor holds for an attacher (1 MiB, and the socket's buffers)
        # went by while the reader was held: skipped, and said so.
        assert pane.model.bytes_skipped >= FLOOD // 2, pane.model.bytes_skipped
        await wait_for(pilot, lambda: "MB of a flood skipped" in str(pane.border_subtitle),
                       what="the border to say what was skipped")
        assert conn.max_backlog <= BEHIND
        pane.detach()


def test_login_keeps_up_with_a_flood_on_a_slow_terminal(busybox_tree, detached, machine_name):
    """`nsdash login` on a terminal that takes 80 kB/s while the machine floods: it is not
    dropped as a slow attacher, ^] three times still detaches, and it says what it skipped."""
    import os
    import pty
    import select
    import sys
    import time

    detached("-D", str(busybox_tree), "/bin/sh", "-c", "exec yes > /dev/console")
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(sys.executable, [sys.executable, "-m", "nsdash", "login", machine_name], dict(os.environ))
    seen = bytearray()

    def read_slowly(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if select.select([fd], [], [], 0.05)[0]:
                try:
                    seen.extend(os.read(fd, 4096)[-200:])  # keep only a little: this is a flood
                except OSError:
                    return
            time.sleep(0.05)

    try:
        read_slowly(6)  # several megabytes written meanwhile, far more than this terminal took
        os.write(fd, b"\x1d\x1d\x1d")
        deadline = time.monotonic() + 30
        status = None
        while status is None and time.monotonic() < deadline:
            read_slowly(0.2)
            done, st = os.waitpid(pid, os.WNOHANG)
            status = os.waitstatus_to_exitcode(st) if done else None
        assert status == 0, bytes(seen[-400:])
        pid = 0
        while select.select([fd], [], [], 0.2)[0]:
            try:
                seen.extend(os.read(fd, 4096))
            except OSError:
                break
    finally:
        if pid:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)
    tail = bytes(seen[-600:]).decode("utf-8", "replace")
    assert f"Connection to machine {machine_name} terminated." in tail, tail  # detached by ^], not dropped
    assert "MB of console output skipped" in tail, tail
