"""--property, --slice and unit names: parsing, systemd's typed values, cgroupfs files (pure logic)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from nsdash.errors import UsageError
from nsdash.launcher import properties as props
from nsdash.launcher.cgroup import MachineCgroup, scope_path
from nsdash.launcher.options import build_spec, parse_args
from nsdash.launcher.spec import ContainerSpec
from nsdash.machines import limits, units
from nsdash.system import cgroupfs, unitname


def dbus(text: str):
    return props.dbus_value(props.parse(text))


def test_dbus_values_follow_systemds_types():
    assert dbus("CPUQuota=50%") == ("CPUQuotaPerSecUSec", "t", 500_000)
    assert dbus("CPUQuota=") == ("CPUQuotaPerSecUSec", "t", props.UINT64_MAX)
    assert dbus("MemoryMax=1G") == ("MemoryMax", "t", 1 << 30)
    assert dbus("MemoryHigh=512K") == ("MemoryHigh", "t", 512 << 10)
    assert dbus("MemoryMax=infinity") == ("MemoryMax", "t", props.UINT64_MAX)
    assert dbus("MemoryMax=50%") == ("MemoryMaxScale", "u", round(props.UINT32_MAX / 2))
    assert dbus("TasksMax=77") == ("TasksMax", "t", 77)
    assert dbus("TasksMax=10%")[:2] == ("TasksMaxScale", "u")
    assert dbus("CPUWeight=200") == ("CPUWeight", "t", 200)
    assert dbus("Delegate=no") == ("Delegate", "b", False)
    assert dbus("KillSignal=SIGTERM") == ("KillSignal", "i", int(signal.SIGTERM))
    assert dbus("TimeoutStopSec=1min 30s") == ("TimeoutStopUSec", "t", 90_000_000)
    assert dbus("DeviceAllow=/dev/fuse rw") == ("DeviceAllow", "a(ss)", [["/dev/fuse", "rw"]])
    assert dbus("Frobnicate=yes") == ("Frobnicate", "s", "yes")  # systemd judges what nsdash does not know


@pytest.mark.parametrize("text, message", [
    ("TasksMax", "Not an assignment"), ("=5", "Not an assignment"), ("Tasks-Max=5", "Not an assignment"),
    ("TasksMax=lots", "Failed to parse TasksMax= value 'lots'"), ("TasksMax=0", "Failed to parse TasksMax="),
    ("CPUQuota=50", "Failed to parse CPUQuota="), ("CPUQuota=0%", "Failed to parse CPUQuota="),
    ("MemoryMax=12X", "Failed to parse MemoryMax="), ("MemoryMax=101%", "percentage above 100%"),
    ("MemoryMax=99999999999999999999999", "too large"), ("MemoryHigh=17E", "too large"),
    ("CPUWeight=0", "between 1 and 10000"), ("IOWeight=10001", "between 1 and 10000"),
    ("Delegate=maybe", "not a boolean"), ("TimeoutStopSec=5 fortnights", "not a time span"),
])
def test_bad_assignments_are_one_line_errors(text, message):
    with pytest.raises(UsageError) as e:
        props.parse(text)
    assert message in e.value.oneline() and "\n" not in e.value.oneline()


@pytest.mark.parametrize("text, hierarchy, filename, writes", [
    ("CPUQuota=50%", "", "cpu.max", [("cpu.max", "50000 100000")]),
    ("CPUQuota=250%", "cpu", "cpu.cfs_quota_us", [("cpu.cfs_period_us", "100000"), ("cpu.cfs_quota_us", "250000")]),
    ("CPUQuota=0.1%", "", "cpu.max", [("cpu.max", "1000 100000")]),  # systemd's 1 ms floor
    ("CPUWeight=200", "", "cpu.weight", [("cpu.weight", "200")]),
    ("CPUWeight=200", "cpu", "cpu.shares", [("cpu.shares", "2048")]),
    ("IOWeight=50", "", "io.weight", [("io.weight", "default 50")]),
    ("IOWeight=1", "blkio", "blkio.weight", [("blkio.weight", "10")]),
    ("MemoryMax=64M", "memory", "memory.limit_in_bytes", [("memory.limit_in_bytes", str(64 << 20))]),
    ("MemoryMax=infinity", "", "memory.max", [("memory.max", "max")]),
    ("MemoryMax=infinity", "memory", "memory.limit_in_bytes", [("memory.limit_in_bytes", "-1")]),
    ("TasksMax=infinity", "pids", "pids.max", [("pids.max", "max")]),
])
def test_cgroup_file_values(text, hierarchy, filename, writes):
    assert props.file_value(props.parse(text), hierarchy, filename) == writes


def test_refusal_names_the_first_unmappable_property():
    assert props.refusal([props.parse("TasksMax=5"), props.parse("MemoryHigh=1G")]) is None
    refused = props.refusal([props.parse("TasksMax=5"), props.parse("KillMode=mixed")])
    assert refused is not None and "--property=KillMode=mixed" in refused.message


def test_unit_names_and_slices():
    assert unitname.escape("my-box.x") == r"my\x2dbox.x"
    assert unitname.unescape(r"my\x2dbox") == "my-box"
    assert unitname.machine_scope("a-b") == r"machine-a\x2db.scope"
    assert unitname.supervisor_service("a-b") == r"nsdash@a\x2db.service"
    assert unitname.slice_path("machine.slice") == "/machine.slice"
    assert unitname.slice_path("a-b-c.slice") == "/a.slice/a-b.slice/a-b-c.slice"
    assert unitname.slice_path("-.slice") == ""
    assert props.parse_slice("web") == "web.slice" and props.parse_slice("a-b.slice") == "a-b.slice"
    for bad in ("-web", "web-", "a--b", "", "a b", "a/b"):
        with pytest.raises(UsageError):
            props.parse_slice(bad)
    assert scope_path("m", "a-b.slice") == "/a.slice/a-b.slice/machine-m.scope"


def test_options_reach_the_spec(tmp_path):
    spec = build_spec(parse_args(["-D", str(tmp_path), "-S", "web", "--property=TasksMax=7",
                                  "--property", "MemoryMax=1G", "--keep-unit"]))
    assert (spec.slice, spec.properties, spec.keep_unit) == ("web.slice", ("TasksMax=7", "MemoryMax=1G"), True)
    with pytest.raises(UsageError):
        parse_args(["-D", str(tmp_path), "--property=TasksMax=x"])


def test_scope_properties_put_the_users_after_nspawns_defaults():
    spec = ContainerSpec(directory=Path("/srv/x"), machine="x", slice="web.slice",
                         properties=("TasksMax=77", "Frobnicate=1"))
    made = units.scope_properties(spec, 1234)
    names = [n for n, _, _ in made]
    assert ("Slice", "s", "web.slice") in made and ("Delegate", "b", True) in made
    assert ("DevicePolicy", "s", "closed") in made
    assert names.index("TasksMax") < names.index("TasksMax", names.index("TasksMax") + 1)  # the user's wins
    assert made[-1] == ("PIDs", "au", [1234]) and ("Frobnicate", "s", "1") in made


def test_cgroupfs_apply_prefers_cgroup2_files_then_v1(tmp_path):
    v2, mem = tmp_path / "unified", tmp_path / "memory"
    scope = "machine.slice/machine-m.scope"
    for d in (v2 / scope, mem / scope):
        d.mkdir(parents=True)
    (v2 / scope / "pids.max").write_text("max\n")
    (mem / scope / "memory.limit_in_bytes").write_text("0\n")
    layout = cgroupfs.Layout("hybrid", tmp_path, v2, {"memory": mem})
    cg = MachineCgroup("m", layout, properties=("TasksMax=9", "MemoryMax=2M"))
    for p in cg.properties:
        cg.apply(p)
    assert (v2 / scope / "pids.max").read_text() == "9"
    assert (mem / scope / "memory.limit_in_bytes").read_text() == str(2 << 20)
    assert limits.cgroupfs_limits("/" + scope, layout) == {"MemoryMax": str(2 << 20), "TasksMax": "9"}


def test_limits_come_from_cgroup2_files_where_they_hold_them_all(tmp_path, monkeypatch):
    """A scope systemd made: its limits are read from cgroup2 where the cpu, memory and pids
    controllers are enabled for it (systemd wrote them there), from systemd only where not."""
    v2 = tmp_path / "unified"
    scope = "machine.slice/machine-m.scope"
    d = v2 / scope
    d.mkdir(parents=True)
    for name, text in (("cpu.max", "30000 100000"), ("memory.max", str(100 << 20)), ("memory.high", "max"),
                       ("pids.max", "77")):
        (d / name).write_text(text + "\n")
    layout = cgroupfs.Layout("unified", v2, v2, {})
    asked: list[str] = []
    monkeypatch.setattr(limits, "systemd_scope", lambda unit: True)
    monkeypatch.setattr(limits, "unit_limits", lambda unit: asked.append(unit) or {"TasksMax": "from systemd"})

    (d / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    assert limits.limits("m", "/" + scope, layout) == {"CPUQuota": "30%", "MemoryMax": str(100 << 20),
                                                       "TasksMax": "77"}
    assert asked == []  # on disk: no D-Bus round trip
    (d / "cgroup.controllers").write_text("cpu memory\n")  # no pids controller: pids.max is not systemd's
    assert limits.limits("m", "/" + scope, layout) == {"TasksMax": "from systemd"}
    (d / "cgroup.controllers").write_text("")  # a nested host's cgroup2 without controllers
    assert limits.limits("m", "/" + scope, layout) == {"TasksMax": "from systemd"}
    assert asked == ["machine-m.scope", "machine-m.scope"]
