"""The dashboard's table over remote hosts, with fixed snapshots (no ssh): the Host column, escaped
far text, and the keys that do not work over -H yet answering in one notification, not a crash."""

from __future__ import annotations

from tuikit import sample_app, wait_for, wait_for_screen

from nsdash.remote.target import Target
from nsdash.tui.messages import JournalLines, Snapshot, SnapshotReady
from nsdash.tui.remote import machine_info
from nsdash.tui.screens.dashboard import DashboardScreen
from nsdash.tui.screens.machine import MachineScreen
from nsdash.tui.screens.units import UnitsScreen
from nsdash.tui.widgets.machine_list import MachineList

SIZE = (160, 40)


def _snapshot(unreachable: tuple[str, ...] = ()) -> Snapshot:
    machines = [machine_info("far1", {"machine": "bb", "state": "running", "os": "busybox"}),
                machine_info("far2", {"machine": "bb", "state": "running", "os": "[@click=app.quit]x"},
                             reachable="far2" not in unreachable)]
    return Snapshot(1.0, tuple(m for m in machines if m is not None), unreachable=unreachable,
                    errors=tuple(f"{h} is unreachable: gone" for h in unreachable))


async def test_host_column_and_keys_not_over_h_yet(monkeypatch):
    # (no far side here: an "ssh" that fails as for a host that is down)
    monkeypatch.setenv("NSDASH_SSH_COMMAND", "sh -c 'echo ssh: connect to host: No route to host >&2; exit 255'")
    app = sample_app(hosts=[Target("far1"), Target("far2")])
    async with app.run_test(size=SIZE) as pilot:
        app.post_message(SnapshotReady(_snapshot()))
        ml = app.screen.query_one(MachineList)
        await wait_for(pilot, lambda: len(ml._rows) == 2, what="two rows")
        assert [c.label.plain for c in ml.columns.values()][:3] == ["Host", "Machine", "State"]
        assert ml._rows["far1/bb"][:3] == ("far1", "bb", "running")
        assert ml._rows["far2/bb"][:4] == ("far2", "bb", "running", "[@click=app.quit]x")
        ml.select("far2/bb")
        await wait_for(pilot, lambda: app.selected == "far2/bb", what="selection")
        # a machine appearing later on far1 joins far1's rows (grouped by host), the selection stays
        snap = _snapshot()
        extra = machine_info("far1", {"machine": "late", "state": "running"})
        assert extra is not None
        app.post_message(SnapshotReady(Snapshot(2.0, (*snap.machines, extra))))
        await wait_for(pilot, lambda: len(ml._rows) == 3, what="three rows")
        assert ml.row_keys() == ["far1/bb", "far1/late", "far2/bb"]
        assert app.selected == "far2/bb" and ml._current() == "far2/bb"
        app.post_message(SnapshotReady(snap))
        await wait_for(pilot, lambda: len(ml._rows) == 2, what="two rows again")
        assert "on 2 hosts" in app.status_text()
        # a note about a remote machine's journal in the pane: no crash
        app.post_message(JournalLines(("far2/bb",), (), reset=True, note="far2: journal unreachable"))
        # what reads this host (profile, gdb) is off over -H: no screen opens (the console, trace,
        # machine view, units, images and spawn go to the far host: tests/tui/test_tui_multihost.py)
        for key in ("P", "D"):
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, DashboardScreen), (key, app.screen)
        # the machine view and the units screen ask the far side (tests/tui/test_tui_multihost.py):
        # an unreachable one is a notification, and back is back
        for key, screen in (("enter", MachineScreen), ("u", UnitsScreen)):
            await pilot.press(key)
            await wait_for(pilot, lambda screen=screen: isinstance(app.screen, screen), what=f"{key}'s screen")
            assert app.screen.machine == "far2/bb"
            if screen is UnitsScreen:
                await wait_for(pilot, lambda: any("cannot reach far2" in str(n.message) for n in app._notifications),
                               what="the units screen's note")
            await pilot.press("escape")
            await wait_for_screen(pilot, DashboardScreen, what="back")
        assert not any("invalid machine name" in str(n.message) for n in app._notifications)
        app.post_message(SnapshotReady(_snapshot(unreachable=("far2",))))
        await wait_for(pilot, lambda: "unreachable: far2" in app.status_text(), what="status")
        await wait_for(pilot, lambda: ml._rows["far2/bb"][2] == "unreachable", what="far2's row")
        assert ml._rows["far1/bb"][2] == "running"


async def test_the_images_panel_over_h_keeps_one_session_per_host_and_closes_it(monkeypatch, tmp_path):
    """The panel lists every REFRESH over the session it opened, and ends it as it closes, the app's
    exit included (a stand-in ssh runs this checkout's far side here and notes each connection)."""
    import sys
    from pathlib import Path

    from nsdash.tui.messages import ImagesReady
    from nsdash.tui.screens import images as images_screen

    count, far = tmp_path / "connections", tmp_path / "ssh"
    repo = Path(__file__).resolve().parents[2]
    far.write_text(f"#!/bin/sh\necho $$ >> {count}\ncd {repo} && exec {sys.executable} -m nsdash _remote\n")
    far.chmod(0o755)
    monkeypatch.setenv("NSDASH_SSH_COMMAND", str(far))
    monkeypatch.setenv("NSDASH_IMAGE_PATH", str(tmp_path / "machines"))
    (tmp_path / "machines" / "img").mkdir(parents=True)
    monkeypatch.setattr(images_screen, "REFRESH", 0.1)
    listed: dict[int, ImagesReady] = {}  # (by id: the hook sees a message again as it bubbles up)

    def hook(message) -> None:
        if isinstance(message, ImagesReady):
            listed[id(message)] = message

    def ssh() -> list[str]:
        return count.read_text().split() if count.exists() else []

    def alive() -> list[str]:
        return [pid for pid in ssh() if Path(f"/proc/{pid}").exists()]

    app = sample_app(hosts=[Target("far")])
    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        await pilot.press("I")
        await wait_for(pilot, lambda: len(listed) >= 4, what="four listings")
        assert all(m.rows and m.rows[0].name == "far/img" and m.error is None for m in listed.values())
        assert len(ssh()) == 1 and len(alive()) == 1  # one session for every refresh
        await pilot.press("escape")
        await wait_for(pilot, lambda: not alive(), what="the panel's session ended with it")
        await pilot.press("I")  # opened again: a session of its own, ended with the app
        await wait_for(pilot, lambda: len(ssh()) == 2 and len(listed) >= 6, what="listings again")
    assert not alive()
