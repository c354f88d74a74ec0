"""A flooding guest and an attacher that never reads (issue 15; the console tick, review21).

The supervisor reads a flooding console a tick at a time, up to CONSOLE_BATCH a look, and
sends each attacher its share; an attacher CLIENT_BUFFER_LIMIT behind gets no more until it
has taken what it holds, then a `skipped` event and the console's tail (it is not dropped: a
pane on a loaded host is a slow attacher, and must not read that as the machine stopping).
A guest that floods while one attacher never reads must not grow the supervisor's memory,
hold up its control socket or starve an attacher that does read.  Counted, not timed
(bounds of seconds only where the test must end)."""

from __future__ import annotations

import shlex
import subprocess
import time

from conftest import NSDASH, REPO, wait_for

from nsdash.machines import client, consolelog
from nsdash.machines import state as st
from nsdash.machines.supervisor import CLIENT_BUFFER_LIMIT


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_an_attacher_that_never_reads_is_skipped_ahead_and_holds_up_nothing(busybox_tree, machine_name, detached):
    detached("-q", "-D", str(busybox_tree), "/bin/sh", "-c", "yes flood-line-of-the-guest > /dev/console")
    state = wait_for(lambda: (s := st.read_state(st.machine_dir(machine_name))) and s.leader and s)
    supervisor = state.supervisor
    stalled = client.attach(machine_name)  # never read from here on
    start_rss = _rss_kib(supervisor)
    reading = client.attach(machine_name)
    try:
        got = 0
        deadline = time.monotonic() + 60
        reading.sock.settimeout(10)
        while got < 8 * CLIENT_BUFFER_LIMIT and time.monotonic() < deadline:
            data = reading.sock.recv(1 << 20)  # (frames counted, not parsed: this reader keeps up)
            assert data, f"the reading attacher was dropped after {got} bytes"
            got += len(data)
        assert got >= 8 * CLIENT_BUFFER_LIMIT, f"the reading attacher got {got} bytes in 60 s"
        # The control socket answers while the guest floods and one attacher stalls.
        assert client.status(machine_name)["state"] == "running"
        grown = _rss_kib(supervisor) - start_rss
        assert grown < 32 * 1024, f"the supervisor grew by {grown} KiB"
        # The stalled one was held to its limit: what it holds, then the gap, said, then the
        # console's tail and live output again; still attached.
        held, gap, after = 0, 0, 0
        while not after:
            got_stalled = stalled.read(timeout=10)
            assert got_stalled is not None, f"the stalled attacher was dropped after {held} bytes"
            data, events = got_stalled
            skipped = [e for e in events if e["event"] == "skipped"]
            if gap or skipped:
                after += len(data) - (skipped[0]["at"] if skipped and not gap else 0)
            if skipped and not gap:
                held += skipped[0]["at"]
                gap = skipped[0]["bytes"]
            elif not gap:
                held += len(data)
            assert held < 4 * CLIENT_BUFFER_LIMIT, "the stalled attacher is sent more than its limit"
        assert gap >= 4 * CLIENT_BUFFER_LIMIT, (held, gap)  # the reader took 8 MiB meanwhile
    finally:
        reading.close()
        stalled.close()


def test_nsdash_login_stays_attached_through_a_flood(busybox_tree, machine_name, detached):
    """`nsdash login` on a terminal (script(1)'s PTY) while the guest floods its console:
    it takes 8 MiB and is still attached.  (Before, a look at the console read up to 1 MiB
    and login was dropped within 0.3-6 s, saying the machine had terminated.)"""
    detached("-q", "-D", str(busybox_tree), "/bin/sh", "-c", "yes flood-line-of-the-guest > /dev/console")
    wait_for(lambda: (s := st.read_state(st.machine_dir(machine_name))) and s.leader)
    command = shlex.join([*NSDASH, "login", machine_name])
    login = subprocess.Popen(["script", "-qfec", command, "/dev/null"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO)
    got, tail = 0, b""
    try:
        deadline = time.monotonic() + 60
        while got < 8 * CLIENT_BUFFER_LIMIT and time.monotonic() < deadline:
            data = login.stdout.read1(1 << 20)
            if not data:
                break
            got += len(data)
            tail = (tail + data)[-4096:]
        assert got >= 8 * CLIENT_BUFFER_LIMIT and login.poll() is None, (got, tail[-300:])
        assert b"terminated" not in tail
    finally:
        login.kill()
        login.communicate(timeout=10)


def _stream(session, until, once: bool = False) -> list[tuple[str, object]]:
    """What SESSION receives, in order, as ("O", bytes) and ("E", event) items, read until
    UNTIL(event) holds for an event (with ONCE, one read)."""
    items: list[tuple[str, object]] = []
    while True:
        got = session.read(timeout=10)
        assert got is not None, f"the attacher was dropped; it got {items[-3:]}"
        data, events = got
        at = 0
        for e in events:
            if e["at"] > at:
                items.append(("O", data[at:e["at"]]))
                at = e["at"]
            items.append(("E", e))
        if data[at:]:
            items.append(("O", data[at:]))
        if once or any(until(e) for e in events):
            return items


def test_a_skipped_attacher_hears_of_its_gap_before_the_reboot_that_followed_it(busybox_tree, machine_name, detached):
    """An attacher that fell behind a flood the guest then rebooted after: the stream keeps the
    true order.  What it missed before the reboot is said (a `skipped` event, then the tail: the
    flood's last lines and the reboot's separator) before the `reboot` event, and nothing from
    before the reboot comes after it.  (Before, events went out at once while the gap was said
    only once the attacher had drained: `reboot`, `boot 2`, then the gap and the first boot's
    flood.)"""
    script = ("while [ ! -e /go ]; do usleep 20000; done; "  # the test has attached
              "[ -e /flooded ] || { touch /flooded; yes flood-line-of-the-guest | head -c 4000000 > /dev/console; "
              "reboot -f; }; exec sleep 1000")
    detached("-q", "-D", str(busybox_tree), "/bin/sh", "-c", script)
    wait_for(lambda: (s := st.read_state(st.machine_dir(machine_name))) and s.leader)
    stalled = client.attach(machine_name, replay=0)  # read only once the machine has rebooted
    try:
        (busybox_tree / "go").touch()
        wait_for(lambda: client.status(machine_name)["boot"] >= 2, timeout=60, what="the reboot")
        items = _stream(stalled, until=lambda e: e["event"] == "boot 2")
    finally:
        stalled.close()
    kinds = [v["event"] if k == "E" else k for k, v in items]
    reboot = kinds.index("reboot")
    gap = kinds.index("skipped")
    assert gap < reboot and items[gap][1]["bytes"] > 0, kinds
    assert kinds[gap + 1:reboot] == ["O"], kinds  # the tail, then the event
    tail = items[reboot - 1][1]
    assert tail.startswith(b"flood-line") and b"\n-- nsdash: reboot " in tail[-100:], tail[-300:]
    late = b"".join(v for k, v in items[reboot + 1:] if k == "O")
    assert b"flood-line" not in late and b"-- nsdash: reboot" not in late, (kinds, late[-300:])


def test_a_skipped_attacher_is_shown_a_small_gap_after_an_event_whole(busybox_tree, machine_name, detached):
    """An attacher that fell behind a flood, then the guest rebooted and printed two lines while
    the attacher still held the first boot's flood: what it missed after the `boot 2` event
    is less than a replay, so it comes whole, from its first byte.  The point where the
    attacher's stream left off is a boundary the supervisor knows (the event's place): no
    gap, nothing cut.  (Before, that tail was cut at its first line feed, as a tail that
    starts at an unknown place must be: the first line after the event was lost.)"""
    script = ("while [ ! -e /go ]; do usleep 20000; done; "
              "if [ -e /flooded ]; then while [ ! -e /go2 ]; do usleep 20000; done; "
              "echo first-line-after-the-event > /dev/console; echo last-line-after-the-event > /dev/console; "
              "exec sleep 1000; fi; "
              "touch /flooded; yes flood-line-of-the-guest | head -c 4000000 > /dev/console; reboot -f")
    detached("-q", "-D", str(busybox_tree), "/bin/sh", "-c", script)
    wait_for(lambda: (s := st.read_state(st.machine_dir(machine_name))) and s.leader)
    stalled = client.attach(machine_name, replay=0)  # read only once boot 2 has printed
    log = st.machine_dir(machine_name) / st.CONSOLE_LOG
    try:
        (busybox_tree / "go").touch()
        wait_for(lambda: client.status(machine_name)["boot"] >= 2, timeout=60, what="the reboot")
        (busybox_tree / "go2").touch()  # the `boot 2` event went out with the status's boot
        wait_for(lambda: b"last-line-after-the-event" in consolelog.tail(log, 4096), what="boot 2's lines")
        items = _stream(stalled, until=lambda e: e["event"] == "boot 2")
        boot2 = len(items) - next(i for i, (k, v) in enumerate(reversed(items)) if k == "E" and v["event"] == "boot 2") - 1
        while b"last-line-after-the-event" not in (late := b"".join(v for k, v in items[boot2 + 1:] if k == "O")):
            items += _stream(stalled, until=lambda e: False, once=True)
    finally:
        stalled.close()
    kinds = [v["event"] if k == "E" else k for k, v in items]
    assert late.startswith(b"first-line-after-the-event"), (kinds[boot2:], late[:300])
    assert "skipped" in kinds[:kinds.index("reboot")], kinds  # the attacher was skipped ahead
    # Nothing was left out after the reboot: boot 2's separator whole, no gap said.
    assert "skipped" not in kinds[kinds.index("reboot"):], kinds[kinds.index("reboot"):]
    assert items[boot2 - 1][1].startswith(b"\n-- nsdash: boot 2 "), items[boot2 - 1][1]
