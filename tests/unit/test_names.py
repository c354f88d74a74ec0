"""The one machine-name rule and systemd's unit-name escaping, both ways."""

from __future__ import annotations

import pytest

from nsdash.errors import UsageError
from nsdash.launcher import names
from nsdash.machines.registry import validate_name
from nsdash.system import unitname


@pytest.mark.parametrize("name", ["box", "web-1", "a.b", "x" * 64, "1", "A-b.c-D"])
def test_hostname_like_names_are_valid(name):
    assert names.check_machine_name(name) == name == validate_name(name)


@pytest.mark.parametrize("name", ["", "my_box", "a..b", "x-", "-x", ".a", "a.", "x" * 65, "a b", "ü", "a/b"])
def test_names_machinectl_refuses_are_refused_by_every_rule(name):
    with pytest.raises(UsageError, match="invalid machine name"):
        names.check_machine_name(name)
    with pytest.raises(UsageError, match="invalid machine name"):
        validate_name(name)


@pytest.mark.parametrize("machine,unit", [
    ("box", "machine-box.scope"),
    ("web-1", "machine-web\\x2d1.scope"),
    ("a.b", "machine-a.b.scope"),
])
def test_scope_names_escape_as_systemd_does(machine, unit):
    assert names.scope_name(machine) == unit
    assert names.scope_path(machine) == f"/machine.slice/{unit}"
    assert names.machine_from_unit(unit) == machine
    assert names.machine_from_scope(f"/machine.slice/{unit}/init.scope") == machine


def test_unit_escape_round_trips_odd_text():
    for text in ("a-b", "x\\y", ".dot", "sp ace", "ü", "a:b_c"):
        assert unitname.unescape(unitname.escape(text)) == text.replace("/", "-")
    assert unitname.escape("/a/b") == "-a-b" and unitname.escape(".x") == "\\x2ex"


def test_non_machine_units_are_not_machines():
    for unit in ("init.scope", "machine-.scope", "machine-x.service", "session-1.scope"):
        assert names.machine_from_unit(unit) is None
    assert names.machine_from_scope("/system.slice/machine-x.scope") is None


@pytest.mark.parametrize(("unit", "path"), [
    ("machine-inner.scope", "machine_2dinner_2escope"),
    ("nsdash@inner.service", "nsdash_40inner_2eservice"),
    ("sys-fs-fuse\\x2dconnections.mount", "sys_2dfs_2dfuse_5cx2dconnections_2emount"),
    ("0foo.service", "_30foo_2eservice"),
    ("a9.slice", "a9_2eslice"),
])
def test_unit_bus_path_is_what_systemd_answers(unit, path):
    """Object paths as systemd 252's GetUnit/LoadUnit answered them in a booted Debian tree."""
    assert unitname.bus_path(unit) == f"/org/freedesktop/systemd1/unit/{path}"
