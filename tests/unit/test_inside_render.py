"""systemctl's layouts and the pure unit logic behind `nsdash systemctl` (no root, no bus)."""

from __future__ import annotations

import pytest
from dbus_fast import Variant

from nsdash.errors import UsageError
from nsdash.inside import presets, render
from nsdash.inside.procs import UnitProcess
from nsdash.inside.unitlog import LogLine
from nsdash.inside.units import UnitFile, UnitInfo, UnitStatus, filter_unit_files, filter_units, mangle

NOW = 1_795_930_000_000_000  # µs


def unit(name, active="active", sub="running", load="loaded", job=None, following="", desc=None):
    return UnitInfo(name, desc or f"{name} desc", load, active, sub, following,
                    1 if job else None, job)


def status(**kw):
    props = {"Id": "web.service", "Description": "Web", "LoadState": "loaded", "ActiveState": "active",
             "SubState": "running", "FragmentPath": "/etc/systemd/system/web.service",
             "UnitFileState": "disabled", "UnitFilePreset": "enabled", "MainPID": 35, "ExecMainPID": 35,
             "ExecMainCode": 0, "ExecMainStatus": 0, "Result": "success", "ControlGroup": "/system.slice/web.service",
             "ActiveEnterTimestamp": NOW - 70_000_000, "InactiveEnterTimestamp": 0,
             "TasksCurrent": 2**64 - 1, "MemoryCurrent": 2**64 - 1, "CPUUsageNSec": 2**64 - 1,
             "Documentation": [], "TriggeredBy": []}
    props.update(kw)
    sig = {str: "s", int: "t", list: "as"}
    return UnitStatus.from_properties("web.service", {k: Variant(sig[type(v)], v) for k, v in props.items()})


# ---------------------------------------------------------------- names and filters

def test_mangle_adds_service_suffix_like_systemctl():
    assert mangle("sshd") == "sshd.service"
    assert mangle("dbus.socket") == "dbus.socket"
    assert mangle("getty@tty1") == "getty@tty1.service"
    assert mangle("ng*") == "ng*"
    with pytest.raises(UsageError):
        mangle("/etc/passwd")


def test_filter_hides_inactive_without_all_and_filters_by_type_state_pattern():
    rows = [unit("a.service"), unit("b.service", "inactive", "dead"), unit("c.socket"),
            unit("d.service", "failed", "failed"), unit("e.service", "inactive", "dead", job="start")]
    assert [u.name for u in filter_units(rows)] == ["a.service", "c.socket", "d.service", "e.service"]
    assert [u.name for u in filter_units(rows, all_units=True)] == [u.name for u in rows]
    assert [u.name for u in filter_units(rows, types=["socket"])] == ["c.socket"]
    assert [u.name for u in filter_units(rows, states=["failed"])] == ["d.service"]
    assert [u.name for u in filter_units(rows, states=["inactive"])] == ["b.service", "e.service"]
    assert [u.name for u in filter_units(rows, patterns=["[ab]*"], all_units=True)] == ["a.service", "b.service"]


def test_filter_unit_files():
    files = [UnitFile("a.service", "/x/a.service", "enabled"), UnitFile("b.timer", "/x/b.timer", "static")]
    assert [f.name for f in filter_unit_files(files, types=["timer"])] == ["b.timer"]
    assert [f.name for f in filter_unit_files(files, states=["enabled"])] == ["a.service"]


def test_status_from_properties_maps_unset_to_none():
    st = status()
    assert st.main_pid == 35 and st.control_group == "/system.slice/web.service"
    assert st.tasks_current is None and st.memory_current is None and st.cpu_usage_ns is None
    assert st.inactive_enter_us is None and st.exec_main_status is None


# ---------------------------------------------------------------- list-units

def test_list_units_layout_matches_systemctl():
    text = render.list_units([unit("dbus.service", desc="D-Bus"), unit("x.service", "failed", "failed", desc="X"),
                              unit("-.mount", sub="mounted", desc="Root Mount")])
    lines = text.splitlines()
    assert lines[0] == "  UNIT         LOAD   ACTIVE SUB     DESCRIPTION"
    assert lines[1] == "  -.mount      loaded active mounted Root Mount"  # .mount sorts before .service
    assert lines[2] == "  dbus.service loaded active running D-Bus"
    assert lines[3] == "● x.service    loaded failed failed  X"
    assert lines[4] == ""
    assert lines[5].startswith("LOAD   = Reflects")
    assert lines[8] == "3 loaded units listed. Pass --all to see loaded but inactive units, too."
    assert lines[9] == "To show all installed unit files use 'systemctl list-unit-files'."


def test_list_units_counts_with_all_with_state_and_empty_and_jobs():
    assert render.list_units([unit("a.service")], all_units=True).splitlines()[-2] == "1 loaded units listed."
    assert render.list_units([unit("a.service")], states=["failed"]).splitlines()[-1] == "1 loaded units listed."
    empty = render.list_units([], states=["failed"])
    assert empty == "  UNIT LOAD ACTIVE SUB DESCRIPTION\n0 loaded units listed.\n"
    jobs = render.list_units([unit("a.service", "inactive", "dead", job="start")])
    assert jobs.splitlines()[0] == "  UNIT      LOAD   ACTIVE   SUB  JOB   DESCRIPTION"
    assert "JOB    = Pending job for the unit." in jobs
    assert render.list_units([unit("a.service")], legend=False) == "  a.service loaded active running a.service desc\n"


def test_list_unit_files_with_presets():
    files = [UnitFile("b.service", "/p/b.service", "disabled"), UnitFile("a.timer", "/p/a.timer", "static")]
    text = render.list_unit_files(files, {"b.service": "enabled", "a.timer": "enabled"})
    assert text.splitlines() == ["UNIT FILE STATE    PRESET", "b.service disabled enabled",
                                 "a.timer   static   -", "", "2 unit files listed."]


def test_presets_first_match_wins_default_enabled():
    rules = presets.parse_rules(["# comment\nenable getty@.service\ndisable *\n", "enable late.service\n"])
    assert presets.preset_of("getty@.service", rules) == "enabled"
    assert presets.preset_of("late.service", rules) == "disabled"
    assert presets.preset_of("x", []) == "enabled"


def test_presets_read_rules_from_tree(tmp_path):
    for d, name, text in (("etc/systemd/system-preset", "90-a.preset", "disable a.service\n"),
                          ("usr/lib/systemd/system-preset", "90-a.preset", "enable a.service\n"),
                          ("usr/lib/systemd/system-preset", "10-b.preset", "enable b.service\n")):
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
        (tmp_path / d / name).write_text(text)
    rules = presets.read_rules(tmp_path)
    assert presets.preset_of("a.service", rules) == "disabled"  # /etc overrides the same-named file
    assert rules[0] == ("enable", "b.service")  # 10-b before 90-a


# ---------------------------------------------------------------- status

def test_status_active_with_processes_and_journal():
    procs = [UnitProcess(35, 9035, "/system.slice/web.service", "/usr/sbin/web -f", "web"),
             UnitProcess(40, 9040, "/system.slice/web.service/worker", "/usr/sbin/web --worker", "web")]
    log = [LogLine(NOW - 70_000_000, "deb", "systemd", "1", "Started web.service - Web.", 6,
                   "Nov 29 05:26:00 deb systemd[1]: Started web.service - Web.")]
    text = render.status(status(Documentation=["man:web(8)", "https://x"]), processes=procs, log=log,
                         triggers=[("web.socket", "active")], now_us=NOW)
    lines = text.splitlines()
    assert lines[0] == "● web.service - Web"
    assert lines[1] == "     Loaded: loaded (/etc/systemd/system/web.service; disabled; preset: enabled)"
    assert lines[2].startswith("     Active: active (running) since ") and lines[2].endswith("; 1min 10s ago")
    assert lines[3] == "TriggeredBy: ● web.socket"
    assert lines[4:6] == ["       Docs: man:web(8)", "             https://x"]
    assert lines[6] == "   Main PID: 35 (web)"
    assert lines[7:11] == ["     CGroup: /system.slice/web.service", "             ├─35 /usr/sbin/web -f",
                           "             └─worker", "               └─40 /usr/sbin/web --worker"]
    assert lines[11] == ""
    assert lines[12].endswith(" deb systemd[1]: Started web.service - Web.")


def test_status_failed_and_inactive():
    failed = render.status(status(ActiveState="failed", SubState="failed", Result="exit-code", MainPID=0,
                                  ExecMainCode=1, ExecMainStatus=1, InactiveEnterTimestamp=NOW - 3_000_000,
                                  UnitFileState="static"), processes=[], now_us=NOW)
    lines = failed.splitlines()
    assert lines[0] == "× web.service - Web"
    assert lines[1] == "     Loaded: loaded (/etc/systemd/system/web.service; static)"
    assert lines[2].startswith("     Active: failed (Result: exit-code) since ") and lines[2].endswith("; 3s ago")
    assert lines[3] == "   Main PID: 35 (code=exited, status=1/FAILURE)"
    inactive = render.status(status(ActiveState="inactive", SubState="dead", MainPID=0, ExecMainPID=0,
                                    ControlGroup=""), processes=[], now_us=NOW)
    assert inactive.splitlines()[0] == "○ web.service - Web"
    assert inactive.splitlines()[2] == "     Active: inactive (dead)"


@pytest.mark.parametrize("delta_s,text", [(0.002, "2ms ago"), (5, "5s ago"), (70, "1min 10s ago"),
                                          (480, "8min ago"), (3 * 3600 + 120, "3h 2min ago"),
                                          (7 * 3600, "7h ago"), (26 * 3600, "1 day 2h ago"),
                                          (3 * 86400, "3 days ago")])
def test_relative_times_like_systemd(delta_s, text):
    assert render.format_relative(NOW - int(delta_s * 1e6), NOW) == text


def test_sizes_cpu_and_exit_statuses():
    assert render.format_bytes(204800) == "200.0K"
    assert render.format_bytes(512) == "512B"
    assert render.format_cpu(3_000_000) == "3ms"
    assert render.format_cpu(1_352_000_000) == "1.352s"
    assert render.format_cpu(123_400_000_000) == "2min 3.4s"
    assert render.exit_description(1, 1) == "code=exited, status=1/FAILURE"
    assert render.exit_description(2, 15) == "code=killed, signal=TERM"


def test_json_records():
    assert render.units_json([unit("a.service")])[0] == {"unit": "a.service", "load": "loaded", "active": "active",
                                                        "sub": "running", "job": None, "description": "a.service desc"}
    data = render.status_json(status(), None, [])
    assert data["main_pid"] == 35 and data["processes"] is None and data["journal"] == []


def test_show_and_list_jobs():
    from nsdash.inside.units import JobInfo

    assert render.property_value("TasksMax", 2**64 - 1) == "infinity"
    assert render.property_value("MemoryCurrent", 2**64 - 1) == "[not set]"
    assert render.property_value("ActiveExitTimestamp", 0) == ""
    assert render.property_value("RemainAfterExit", False) == "no"
    assert render.property_value("Documentation", ["man:x(1)", "https://a"]) == '"man:x(1)" https://a'
    props = {"Id": "a.service", "MainPID": 0, "Wants": [], "ExecStart": [("/bin/x", ["x"], False)]}
    assert render.show(props) == "Id=a.service\nMainPID=0\n"
    assert render.show(props, all_props=True).count("\n") == 4
    assert render.show(props, ["MainPID"], value_only=True) == "0\n"
    assert render.list_jobs([]) == "No jobs running.\n"
    assert render.list_jobs([JobInfo(7, "a.service", "start", "running")]).splitlines() == [
        "JOB UNIT      TYPE  STATE", "7   a.service start running", "", "1 jobs listed."]


def test_colour_only_when_asked():
    text = render.status(status(), processes=[], now_us=NOW, color=True)
    assert text.startswith("\x1b[0;1;32m●\x1b[0m web.service - Web\n")
    assert "Active: \x1b[0;1;32mactive (running)\x1b[0m since" in text
    table = render.list_units([unit("x.service", "failed", "failed", desc="X")], color=True)
    assert table.splitlines()[1] == "\x1b[0;1;31m● x.service loaded failed failed X\x1b[0m"
    assert "\x1b" not in render.list_units([unit("x.service", "failed", "failed")])
