"""A guest cannot forge the console log's structure: the separators that mark boots live in a
side index only the supervisor writes (machines/consolelog.py)."""

from __future__ import annotations

import json

from conftest import run_nsdash, wait_for

from nsdash.machines import state as st

FAKE_BOOT = "-- nsdash: boot 9 2001-01-01T00:00:00Z --"
FAKE_EXIT = "-- nsdash: exited 2001-01-01T00:00:01Z (status 0) --"


def test_a_printed_separator_is_a_console_line_not_a_boot(busybox_tree, detached, machine_name):
    detached("-D", str(busybox_tree), "/bin/sh", "-c",
             f"printf '\\n{FAKE_EXIT}\\n\\n{FAKE_BOOT}\\nafter the fake\\n' > /dev/console; sleep 600")
    log = st.machine_dir(machine_name) / st.CONSOLE_LOG
    wait_for(lambda: log.exists() and b"after the fake" in log.read_bytes(), what="the guest's lines in the log")

    boots = run_nsdash("journal", "-M", machine_name, "--list-boots")
    assert boots.returncode == 0, boots.stderr
    rows = boots.stdout.splitlines()[1:]
    assert [row.split(None, 1)[1] for row in rows] == ["boot 1"], boots.stdout

    out = run_nsdash("journal", "-M", machine_name, "-o", "json")
    assert out.returncode == 0, out.stderr
    entries = [json.loads(line) for line in out.stdout.splitlines()]
    events = [e.get("NSDASH_EVENT") for e in entries if e.get("NSDASH_EVENT")]
    assert events == ["boot 1"]
    boot, after = entries[0], next(e for e in entries if e["MESSAGE"] == "after the fake")
    # Not backdated to 2001, not counted as boot 9: timed by the real boot mark.
    assert after["__REALTIME_TIMESTAMP"] == boot["__REALTIME_TIMESTAMP"] and after["NSDASH_BOOT"] == "1"
    assert any(e["MESSAGE"] == FAKE_BOOT and "PRIORITY" not in e for e in entries)

    latest = run_nsdash("journal", "-M", machine_name, "-b", "-1")
    assert latest.returncode != 0 and "not in" in latest.stderr  # there is no earlier boot


def _replayed(name: str, nbytes: int) -> bytes:
    """What a client attaching with a replay of NBYTES receives before anything new is printed."""
    from nsdash.machines import client

    out = b""
    with client.attach(name, replay=nbytes) as session:
        while (got := session.read(0.5)) and got[0]:
            out += got[0]
    return out


def test_an_attach_replay_never_starts_inside_the_guests_escape_sequence(busybox_tree, detached, machine_name):
    # A window title that spans lines (a terminal keeps reading it until BEL) and a CSI with 1,200
    # bytes of parameters: a replay cut inside either would show its body as text, or start a
    # sequence the guest never finished.  The cut lands in each; the replay starts after it.
    title = "\\033]2;TITLE-START\\n" + "A" * 2000 + "\\nTITLE-END\\007\\nafter the title\\n"
    csi = "\\033[" + "1;" * 600 + "31mred\\nafter the csi\\n"
    detached("-D", str(busybox_tree), "/bin/sh", "-c",
             f"printf '{title}' > /dev/console; sleep 1; printf '{csi}' > /dev/console; sleep 600")
    log = st.machine_dir(machine_name) / st.CONSOLE_LOG
    wait_for(lambda: log.exists() and b"after the csi" in log.read_bytes(), what="the guest's lines in the log")
    data = log.read_bytes()
    title_cut = len(data) - data.index(b"A" * 1000)  # from inside the A's of the title to the end
    csi_cut = len(data) - data.index(b"1;" * 300)  # from inside the CSI's parameters
    replay = _replayed(machine_name, title_cut)
    assert replay.startswith(b"after the title\r\n"), replay[:80]
    replay = _replayed(machine_name, csi_cut)
    assert replay.startswith(b"after the csi\r\n"), replay[:80]
    whole = _replayed(machine_name, len(data) + 1000)  # the whole log: from its first byte
    assert whole == data
