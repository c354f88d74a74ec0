"""The machine view and units screen of a far machine (issue 20, nsdash.tui.remote_views): the far
side's JSON taken with suspicion, and its failures as one line (real far hosts:
tests/tui/test_tui_multihost.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from nsdash.errors import NsdashError
from nsdash.remote.target import Target
from nsdash.tui.remote_views import RemoteMachine, RemoteMachineUnits, limits_of, unit_file_of, unit_of

REPO = Path(__file__).resolve().parents[2]


def test_unit_rows_of_the_right_shape_only():
    u = unit_of({"unit": "a.service", "load": "loaded", "active": "failed", "sub": "failed", "job": None,
                 "description": "A \x1b[2J thing"})
    assert u is not None and (u.name, u.active_state, u.description, u.job_id) == (
        "a.service", "failed", "A \x1b[2J thing", None)  # (escaped where shown: units.row_cells)
    assert u.failed
    for bad in (None, [], "a.service", {"unit": "a.service"}, {"unit": 5, "load": "l", "active": "a", "sub": "s"},
                {"unit": "", "load": "l", "active": "a", "sub": "s"}):
        assert unit_of(bad) is None
    long = unit_of({"unit": "u" * 10_000, "load": "l", "active": "a", "sub": "s", "description": ["x"]})
    assert long is not None and len(long.name) == 1024 and long.description == ""
    assert unit_file_of({"unit_file": "a.service", "path": "/lib/a.service", "state": "enabled"}) is not None
    assert unit_file_of({"unit_file": "a.service", "state": "enabled"}) is None


def test_limits_are_taken_only_when_they_look_like_limits():
    good = {"limits": {"CPUQuota": "50%", "MemoryMax": "1073741824", "TasksMax": 77, "Other": "x"}}
    assert limits_of(good) == {"CPUQuota": "50%", "MemoryMax": "1073741824", "TasksMax": "77"}
    # the view computes with them: text that is no number would break it, so it is left out
    bad = {"limits": {"CPUQuota": "\x1b[31m50%", "MemoryMax": "lots", "MemoryHigh": True, "TasksMax": "1e9"}}
    assert limits_of(bad) == {}
    for odd in (None, [], {"limits": []}, {"limits": "TasksMax=5"}, {}):
        assert limits_of(odd) == {}


def _local_far(monkeypatch, tmp_path) -> None:
    """A stand-in for ssh that runs this checkout's far side on this host."""
    far = tmp_path / "ssh"
    far.write_text(f"#!/bin/sh\ncd {REPO} && exec {sys.executable} -m nsdash _remote\n")
    far.chmod(0o755)
    monkeypatch.setenv("NSDASH_SSH_COMMAND", str(far))


def _children() -> list[str]:
    import os

    return Path(f"/proc/self/task/{os.getpid()}/children").read_text().split()


def test_a_far_verb_that_fails_is_one_line_and_the_connection_ends_with_close(monkeypatch, tmp_path):
    _local_far(monkeypatch, tmp_path)
    units = RemoteMachineUnits(Target("far"), "no-such-machine-here", "far/no-such-machine-here")
    try:
        with pytest.raises(NsdashError) as e:
            units.snapshot()
        line = e.value.oneline()
        assert line.startswith("far: systemctl list-units: ") and "no-such-machine-here" in line, line
        assert "\n" not in line
        with pytest.raises(NsdashError, match="is not a unit action"):
            units.act("kill", "a.service")
        assert len(_children()) == 1  # one connection kept for the screen's next call
    finally:
        units.close()
    assert _children() == []
    with pytest.raises(NsdashError, match="was closed"):
        units.snapshot()
    machine = RemoteMachine(Target("far"), "no-such-machine-here")
    try:
        with pytest.raises(NsdashError, match="^far: status: "):
            machine.status()
    finally:
        machine.close()
    assert _children() == []


def test_the_machine_views_line_names_a_far_leader_as_the_far_hosts():
    from nsdash.tui.remote import machine_info
    from nsdash.tui.screens.machine import describe

    info = machine_info("far1", {"machine": "bb", "state": "running", "leader": 4242})
    assert info is not None
    assert "leader - on far1" in describe(info, "far1/bb", 0.0)  # not known yet: never this host's PID
    assert "leader 4242 on far1" in describe(info, "far1/bb", 0.0, {"TasksMax": "77"}, far_leader=4242)
    assert "tasks ≤ 77" in describe(info, "far1/bb", 0.0, {"TasksMax": "77"}, far_leader=4242)



def _counting_far(monkeypatch, tmp_path) -> Path:
    """The stand-in for ssh that also notes each connection made: its PID, a line in the file returned."""
    count, far = tmp_path / "connections", tmp_path / "ssh"
    far.write_text(f"#!/bin/sh\necho $$ >> {count}\ncd {REPO} && exec {sys.executable} -m nsdash _remote\n")
    far.chmod(0o755)
    monkeypatch.setenv("NSDASH_SSH_COMMAND", str(far))
    monkeypatch.setenv("NSDASH_IMAGE_PATH", str(tmp_path / "machines"))  # the far side's images: one made here
    (tmp_path / "machines" / "img").mkdir(parents=True)
    return count


def _alive(pid: str) -> bool:
    return Path(f"/proc/{pid}").exists()  # (a child ended but not reaped would still be there)


def test_the_images_panel_keeps_one_connection_per_host_until_closed(monkeypatch, tmp_path):
    from nsdash.tui.remote_images import FarImages

    count = _counting_far(monkeypatch, tmp_path)
    reader = FarImages({"far": Target("far")})
    try:
        for _ in range(3):  # three refreshes of the panel
            assert [r.name for r in reader.rows()] == ["far/img"]
        (ssh,) = count.read_text().split()  # one ssh for all three
        assert _alive(ssh)
    finally:
        reader.close()
    assert not _alive(ssh)
    with pytest.raises(NsdashError, match="closed"):
        reader.rows()
    assert count.read_text().split() == [ssh]  # a closed reader opens nothing again
