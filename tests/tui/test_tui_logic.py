"""Pure pieces of the dashboard: the spawn form's rules, formatting, history, journal filters."""

from __future__ import annotations

from pathlib import Path

import pytest

from nsdash.tui import format as fmt
from nsdash.tui import sample_data as sd
from nsdash.tui.history import MetricHistory
from nsdash.tui.messages import JournalLine
from nsdash.tui.spawnform import FormError, SpawnForm, to_spec
from nsdash.tui.widgets.cpu_table import display_order
from nsdash.tui.widgets.journal_pane import JournalFilter, line_text

IMAGES = {"fedora": Path("/var/lib/machines/fedora")}


def test_spawn_form_image_boot_veth(tmp_path):
    (tmp_path / "fedora").mkdir()
    spec = to_spec(SpawnForm("fedora", network="veth", link_journal="try-guest"), {"fedora": tmp_path / "fedora"},
                   set(), trusted_dirs=())
    assert spec.directory == tmp_path / "fedora"
    assert spec.machine == "fedora" and spec.boot
    assert spec.private_network and spec.network_veth and spec.link_journal == "try-guest"


def test_spawn_form_path_command_private_network(tmp_path):
    (tmp_path / "bb").mkdir()
    spec = to_spec(SpawnForm(f"{tmp_path}/bb/", name="web-1", boot=False, command="/bin/sh -c 'echo hi'",
                             network="private"), IMAGES, set(), trusted_dirs=())
    assert spec.machine == "web-1" and spec.command == ("/bin/sh", "-c", "echo hi")
    assert spec.private_network and not spec.network_veth and not spec.boot


def test_spawn_form_reads_the_images_nspawn_file_as_spawn_does(tmp_path):
    """The form goes through spec_from: the image's .nspawn file applies (untrusted: only what
    narrows), unknown keys come back as warnings, and a bad file is the tree's problem."""
    (tmp_path / "box").mkdir()
    (tmp_path / "box.nspawn").write_text("[Exec]\nHostname=fromfile\nLimitNOFILE=99\nFancy=1\n")
    warnings: list[str] = []
    spec = to_spec(SpawnForm(str(tmp_path / "box")), IMAGES, set(), trusted_dirs=(), warnings=warnings)
    assert spec.hostname == "fromfile" and spec.rlimits == ()  # LimitNOFILE= needs a trusted file
    assert any("Fancy=" in w for w in warnings) and any("LimitNOFILE=" in w for w in warnings)
    (tmp_path / "box.nspawn").write_text("[Exec]\nBoot=maybe\n")
    with pytest.raises(FormError) as e:
        to_spec(SpawnForm(str(tmp_path / "box")), IMAGES, set(), trusted_dirs=())
    assert e.value.field == "tree" and "invalid Boot= value" in e.value.message


@pytest.mark.parametrize("name", ["my_box", "a..b", "x-"])
def test_spawn_form_refuses_the_names_spawn_refuses(tmp_path, name):
    with pytest.raises(FormError) as e:
        to_spec(SpawnForm(str(tmp_path), name=name), IMAGES, set(), trusted_dirs=())
    assert e.value.field == "name" and "invalid machine name" in e.value.message


@pytest.mark.parametrize(("form", "field", "words"), [
    (SpawnForm(""), "tree", "choose an image"),
    (SpawnForm("relative/tree"), "tree", "absolute path"),
    (SpawnForm("/srv/x", name="bad name!"), "name", "invalid machine name"),
    (SpawnForm("/srv/busy"), "name", "already running"),
    (SpawnForm("/srv/x", boot=False), "command", "give a command"),
    (SpawnForm("/srv/x", boot=False, command="echo 'unclosed"), "command", "does not parse"),
    (SpawnForm("/srv/x", network="bridge"), "network", "one of"),
])
def test_spawn_form_refuses_with_the_field_named(form, field, words):
    with pytest.raises(FormError) as e:
        to_spec(form, IMAGES, {"busy"})
    assert e.value.field == field and words in e.value.message


def test_sparkline_and_formats():
    assert fmt.sparkline([0, 50, 100], 3, top=100) == "▁▅█"
    assert fmt.sparkline([None, 1.0], 4, top=1.0) == "   █"
    assert fmt.uptime(59) == "59s" and fmt.uptime(3720) == "1h 2m" and fmt.uptime(90000) == "1d 1h"
    assert fmt.uptime(61) == fmt.uptime(119) == "1m"  # a row changes once a minute, not every second
    assert fmt.uptime(None) == "-"
    assert fmt.rate(2048) == "2.0K/s" and fmt.rate(None) == "-"


def test_history_follows_each_machines_cgroup_and_forgets_gone_machines():
    h = MetricHistory()
    for i in range(70):
        h.update(sd.snapshot(i))
    assert h.cpu("demo-busybox") == [3.5] * 60
    assert h.by_machine["demo-debian"].memory[-1] == 150_000_000
    h.update(sd.snapshot(71).__class__(71.0, sd.MACHINES[:1], sd.TREE, sd.ROWS))
    assert "demo-debian" not in h.by_machine


def test_journal_filter_priority_unit_search():
    lines = [JournalLine(0, "m", 3, "sshd", "ssh.service", "Failed password"),
             JournalLine(0, "m", 6, "systemd", "init.scope", "Started thing"),
             JournalLine(0, "m", None, None, None, "console text"),
             JournalLine(0, "m", 6, None, None, "", event="reboot")]
    assert [line.message for line in lines if JournalFilter(max_priority=4).admits(line)] == ["Failed password", ""]
    assert [line.message for line in lines if JournalFilter(unit="ssh").admits(line)] == ["Failed password"]
    assert [line.message for line in lines if JournalFilter(search="START").admits(line)] == ["Started thing"]
    assert "-- reboot --" in line_text(lines[3], merged=False)
    assert line_text(lines[0], merged=True).endswith("m sshd: Failed password")


def test_console_boot_separators_get_their_carriage_return():
    from nsdash.tui.console.connection import fix_separators
    from nsdash.tui.console.terminal import TerminalModel

    data = b"bye\r\n\n-- nsdash: reboot 2026-11-29T06:09:43Z --\nhello\r\n"
    model = TerminalModel(60, 6)
    model.feed(fix_separators(data))
    assert model.line_text(2).startswith("-- nsdash: reboot")
    assert model.line_text(3).startswith("hello")
    assert fix_separators(b"plain\n") == b"plain\n"


def test_dashboard_verb_refuses_without_a_terminal_and_bad_delays_in_one_line():
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    for args, words in (([], "needs a terminal"), (["--delay", "99"], "out of range")):
        r = subprocess.run([sys.executable, "-m", "nsdash", *args], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, cwd=repo, timeout=30)
        assert r.returncode != 0 and words in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_cpu_order_ranks_the_figure_shown():
    """Rows reading the same %CPU (to 0.1) stay in path order; a visible difference still counts."""
    base = sd.ROWS[0]
    rows = [base._replace(path="/b", cpu_percent=0.04), base._replace(path="/a", cpu_percent=0.01),
            base._replace(path="/c", cpu_percent=0.26), base._replace(path="/d", cpu_percent=None)]
    assert display_order(rows, "cpu") == ["/c", "/a", "/b", "/d"]
    assert display_order(rows, "path") == ["/a", "/b", "/c", "/d"]
    # Unrounded, /b (0.04) would go before /a (0.01) although both read 0.0.
    assert display_order([r._replace(cpu_percent=0.5) if r.path == "/a" else r for r in rows], "cpu")[:2] == ["/a", "/c"]


def test_host_readers_walk_the_tree_at_their_cadence():
    """Over the real host: between two walks the same tree object comes again (the pane skips it)."""
    from nsdash.tui.poller import HostReaders

    readers = HostReaders(with_machined=False)
    try:
        first, second, third = (readers.snapshot() for _ in range(3))
        assert first.tree is not None and second.tree is first.tree and third.tree is not first.tree
        assert second.commands is first.commands
        readers.tree_every = 1
        assert readers.snapshot().tree is not third.tree
    finally:
        readers.close()


def test_machine_list_state_cell_shows_a_starting_guests_status_escaped():
    from nsdash.tui.messages import MachineInfo
    from nsdash.tui.widgets.machine_list import state_cell

    hung = MachineInfo("m", "starting", status="Waiting for \x1b]52;c;aGk=\x07 a very long unit name here")
    cell = state_cell(hung)
    assert cell.startswith("starting: Waiting for \\x1b]52;c;") and "\x1b" not in cell and cell.endswith("…")
    assert state_cell(MachineInfo("m", "running", status="Ready.")) == "running"
    assert state_cell(MachineInfo("m", "degraded", status="Ready.")) == "degraded: Ready."
