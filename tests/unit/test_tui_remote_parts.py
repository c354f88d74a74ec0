"""The pure parts of the dashboard's consoles, images and spawn over -H (issue 20).

A far host's answers are another host's text: list-images entries that are
not plain images are dropped, names and paths are escaped where shown, and a
failed far login's last line (guest text, maybe control sequences) becomes
one escaped line.  The spawn form sends a far host the same options it
would build here (spawnform.to_argv), after the same checks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nsdash.errors import NsdashError
from nsdash.remote.target import Target
from nsdash.tui.messages import ImageRow, MachineInfo
from nsdash.tui.remote import RemoteActions, RemoteHosts
from nsdash.tui.remote_console import failure_line
from nsdash.tui.remote_images import image_row, parse
from nsdash.tui.screens.machine import limits_cgroup
from nsdash.tui.spawnform import FormError, SpawnForm, to_argv, to_far_argv
from nsdash.tui.widgets.image_list import cells_of

GOOD = {"name": "fedora", "type": "directory", "ro": False, "path": "/var/lib/machines/fedora", "mtime": 1700000000}


def test_a_far_image_becomes_a_row_keyed_by_its_host():
    row = image_row("far1", GOOD)
    assert row == ImageRow(name="far1/fedora", host="far1", type="directory", read_only=False, size=None,
                           mtime=1700000000.0, path="/var/lib/machines/fedora")
    assert cells_of(row, hosts=True)[:4] == ("far1", "fedora", "directory", "no")
    assert cells_of(row, hosts=True)[4] == "-"  # the size is not in list-images' answer: unknown


@pytest.mark.parametrize("entry", [
    "fedora", None, [], {**GOOD, "name": ""}, {**GOOD, "name": "a/b"}, {**GOOD, "name": 7},
    {**GOOD, "name": "x" * 300}, {**GOOD, "path": "relative"}, {**GOOD, "path": None},
    {**GOOD, "path": "/" + "p" * 5000},
])
def test_far_entries_that_are_no_plain_image_are_dropped(entry):
    assert image_row("far1", entry) is None


def test_odd_fields_of_a_far_image_are_made_harmless():
    row = image_row("far1", {**GOOD, "type": "\x1b[31mevil", "ro": "yes", "mtime": True})
    assert row is not None and row.type == "?" and row.read_only is False and row.mtime == 0.0
    hostile = image_row("far1", {**GOOD, "name": "ev\x1b]0;t\x07il", "path": "/x\x1b[2J"})
    assert hostile is not None
    cells = cells_of(hostile, hosts=True)
    assert all("\x1b" not in cell and "\x07" not in cell for cell in cells)
    assert cells[1] == "ev\\x1b]0;t\\x07il"


def test_a_far_answer_that_is_not_the_image_list_is_one_error():
    assert [r.name for r in parse("far2", json.dumps([GOOD, {"name": 1}]).encode())] == ["far2/fedora"]
    for answer in (b"not json", b'{"name": "x"}', b"\xff\xfe"):
        with pytest.raises(NsdashError) as e:
            parse("far2", answer)
        assert "far2" in e.value.oneline() and "\n" not in e.value.oneline()


def test_a_failed_far_login_gives_its_last_line_escaped():
    tail = b"Connected...\r\nnsdash: no machine 'nosuch' \x1b[31mhere\x1b[0m\r\n"
    assert failure_line(tail, 1) == "no machine 'nosuch' \\x1b[31mhere\\x1b[0m"
    assert failure_line(b"", 3) == "login exited 3"
    assert failure_line(b"\r\n  \r\n", 3) == "login exited 3"


def test_the_form_sends_a_far_host_the_same_options_after_the_same_checks():
    images = {"fedora": Path("/var/lib/machines/fedora")}  # the far host's image and path there
    form = SpawnForm("fedora", name="web-1", network="veth", link_journal="try-guest")
    name, argv = to_far_argv(form, images, {"other"})
    assert name == "web-1"
    assert argv == ["spawn", "--detach", *to_argv(form, images["fedora"], ())]
    assert "--directory=/var/lib/machines/fedora" in argv and "--network-veth" in argv
    # no image or tree on this host is looked at: a far path that does not exist here is fine
    name, argv = to_far_argv(SpawnForm("/srv/far-only/bb", boot=False, command="/bin/sh -c 'echo hi'"), {}, set())
    assert name == "bb" and argv[-4:] == ["--", "/bin/sh", "-c", "echo hi"]
    with pytest.raises(FormError) as e:
        to_far_argv(SpawnForm("fedora"), images, {"fedora"})  # running there already
    assert e.value.field == "name"
    with pytest.raises(FormError) as e:
        to_far_argv(SpawnForm("relative"), images, set())
    assert e.value.field == "tree"


def test_a_spawn_goes_to_the_host_of_the_selection_else_the_first():
    actions = RemoteActions(RemoteHosts([Target("far1"), Target("far2")]))  # (no watch started)
    assert actions.spawn_host("far2/bb") == "far2"
    assert actions.spawn_host("far2/bbimg") == "far2"
    assert actions.spawn_host(None) == "far1"
    assert actions.spawn_host("gone/bb") == "far1"  # a host no longer watched: not sent there


@pytest.mark.parametrize("call", [
    lambda a: a.clone_image("far1/x", "y"), lambda a: a.rename_image("far1/x", "y"),
    lambda a: a.remove_image("far1/x"), lambda a: a.boot_image("far1/x", ephemeral=True),
    lambda a: a.create_plan("x", "debian", "", ""),
])
def test_what_is_not_over_h_yet_is_one_line_and_never_this_host(call):
    actions = RemoteActions(RemoteHosts([Target("far1")]))
    with pytest.raises(NsdashError) as e:
        call(actions)
    assert "over -H is not in the dashboard yet" in e.value.oneline()


def test_limits_are_read_where_the_machine_is():
    local = MachineInfo(name="bb", state="running", cgroup="/machine.slice/bb")
    far = MachineInfo(name="far1/bb", host="far1", state="running", cgroup="/machine.slice/x")
    assert limits_cgroup(local) == "/machine.slice/bb"
    assert limits_cgroup(far) == ""  # its host's: the path means nothing here
    assert limits_cgroup(MachineInfo(name="far1/bb", host="far1", state="unreachable")) is None
    assert limits_cgroup(MachineInfo(name="far1/sd", host="far1", state="degraded")) == ""  # a systemd guest
    assert limits_cgroup(MachineInfo(name="bb", state="running")) is None
    assert limits_cgroup(None) is None


def test_a_host_that_does_not_answer_keeps_its_last_images_and_is_named(monkeypatch):
    from nsdash.tui import remote_images
    from nsdash.tui.messages import PartialImages

    down: set[str] = set()

    def list_images(session):  # (in place of the ssh round trip)
        target = session.target
        if target.host in down:
            raise NsdashError(f"cannot reach {target}")
        return [image_row(target.host, {**GOOD, "name": f"img-{target.host}"})]

    monkeypatch.setattr(remote_images, "list_images", list_images)
    targets, last = {"far1": Target("far1"), "far2": Target("far2")}, {}
    reader = remote_images.FarImages(targets, last)
    assert [r.name for r in reader.rows()] == ["far1/img-far1", "far2/img-far2"]
    down.add("far2")
    with pytest.raises(PartialImages) as e:
        reader.rows()
    assert [r.name for r in e.value.rows] == ["far1/img-far1", "far2/img-far2"]  # far2's last rows stay
    assert e.value.oneline() == "cannot reach far2"
    # a panel opened again starts with the hosts' last answers (kept by the actions)
    with pytest.raises(PartialImages) as e:
        remote_images.FarImages(targets, last).rows()
    assert [r.name for r in e.value.rows] == ["far1/img-far1", "far2/img-far2"]
    down.add("far1")
    with pytest.raises(PartialImages) as e:
        remote_images.FarImages(targets, {}).rows()  # never answered: nothing to keep
    assert e.value.rows == () and "far1" in e.value.oneline() and "far2" in e.value.oneline()
