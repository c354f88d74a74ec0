"""A scope's limits from systemd's unit files (nsdash/machines/unitfiles.py), on hand-written files.

The truth they are checked against on a real systemd is in
tests/integration/test_systemd_host.py (the D-Bus GetAll answer)."""

import os

import pytest

from nsdash.machines import unitfiles as uf

HEADER = "# This is a transient unit file, created programmatically via the systemd API. Do not edit.\n"
SCOPE = HEADER + "[Unit]\nDescription=Container x\n\n[Scope]\nSlice=machine.slice\nDelegate=yes\nTasksMax=16384\n"


def test_a_transient_scope_with_nspawns_defaults():
    assert uf.limits_of([SCOPE]) == {"TasksMax": "16384"}


def test_sizes_with_units_and_infinity():
    text = SCOPE + "MemoryMax=512M\nMemoryHigh=2G\n"
    assert uf.limits_of([text]) == {"MemoryMax": str(512 << 20), "MemoryHigh": str(2 << 30), "TasksMax": "16384"}
    assert uf.limits_of([SCOPE + "MemoryMax=1K\nMemoryHigh=3T\n"]) == {
        "MemoryMax": "1024", "MemoryHigh": str(3 << 40), "TasksMax": "16384"}
    assert uf.limits_of([SCOPE + "MemoryMax=104857600\nMemoryHigh=infinity\nTasksMax=infinity\n"]) == {
        "MemoryMax": "104857600"}


def test_drop_ins_in_order_later_wins_and_empty_resets():
    dropin = "# drop-in\n[Scope]\nMemoryMax=100M\n"
    later = "[Scope]\nMemoryMax=\nTasksMax=55\n"
    assert uf.limits_of([SCOPE + "MemoryMax=1G\n", dropin]) == {"MemoryMax": str(100 << 20), "TasksMax": "16384"}
    assert uf.limits_of([SCOPE + "MemoryMax=1G\n", dropin, later]) == {"TasksMax": "55"}


def test_other_sections_comments_and_spaces():
    text = SCOPE + "; MemoryMax=1\n# TasksMax=2\n  MemoryHigh = 8M  \n[Service]\nMemoryMax=9G\n"
    assert uf.limits_of([text]) == {"MemoryHigh": str(8 << 20), "TasksMax": "16384"}


@pytest.mark.parametrize("line", ["CPUQuota=150%", "CPUQuota=30%", "MemoryMax=50%", "TasksMax=10%",
                                  "MemoryMax=1.5G", "MemoryMax=0", "TasksMax=0", "TasksMax=", "MemoryHigh=7 M",
                                  "MemoryMax=5k", "MemoryMax=99999999999999999999G", "MemoryMax=1G \\"])
def test_what_systemd_does_not_hold_as_written_is_inexact(line):
    with pytest.raises(uf.Inexact):
        uf.limits_of([SCOPE + line + "\n"])


def test_a_quota_reset_is_exact_and_no_tasks_max_is_the_managers_default():
    assert uf.limits_of([SCOPE + "CPUQuota=150%\n", "[Scope]\nCPUQuota=\n"]) == {"TasksMax": "16384"}
    with pytest.raises(uf.Inexact):
        uf.limits_of([SCOPE.replace("TasksMax=16384\n", "")])


def test_drop_in_directories_most_specific_first():
    assert uf.dropin_dirs("machine-a-b.scope") == ["machine-a-b.scope.d", "machine-a-.scope.d", "machine-.scope.d",
                                                   "scope.d"]
    assert uf.dropin_dirs("x.scope") == ["x.scope.d", "scope.d"]


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """UNIT_DIRS and TRANSIENT under TMP_PATH: control (system.control), transient, etc."""
    dirs = {name: tmp_path / name for name in ("etc.control", "control", "transient", "etc", "lib")}
    for d in dirs.values():
        d.mkdir()
    monkeypatch.setattr(uf, "UNIT_DIRS", tuple(str(d) for d in dirs.values()))
    monkeypatch.setattr(uf, "TRANSIENT", str(dirs["transient"]))
    return dirs


def _dropin(base, unit, name, text):
    d = base / f"{unit}.d"
    d.mkdir(exist_ok=True)
    (d / name).write_text(text)
    return d / name


def test_files_found_sorted_by_name_higher_priority_hiding_lower(tree):
    unit = "machine-x.scope"
    assert uf.scope_limits(unit) is None  # no transient file: not a unit systemd made
    (tree["transient"] / unit).write_text(SCOPE + "MemoryMax=1G\n")
    assert uf.scope_limits(unit) == {"MemoryMax": str(1 << 30), "TasksMax": "16384"}
    _dropin(tree["control"], unit, "50-MemoryMax.conf", "[Scope]\nMemoryMax=100M\n")
    _dropin(tree["lib"], unit, "50-MemoryMax.conf", "[Scope]\nMemoryMax=7M\n")  # hidden by control's
    _dropin(tree["etc"], "machine-.scope", "60-tasks.conf", "[Scope]\nTasksMax=9\n")  # a prefix's, after 50-
    _dropin(tree["etc"], unit, "not-a-dropin.txt", "[Scope]\nTasksMax=1\n")
    assert uf.scope_limits(unit) == {"MemoryMax": str(100 << 20), "TasksMax": "9"}
    _dropin(tree["etc.control"], unit, "70-TasksMax.conf", "[Scope]\nTasksMax=44\n")
    assert uf.scope_limits(unit) == {"MemoryMax": str(100 << 20), "TasksMax": "44"}
    # a drop-in masked with /dev/null hides the lower one of its name
    masked = tree["etc.control"] / f"{unit}.d" / "50-MemoryMax.conf"
    os.symlink("/dev/null", masked)
    assert uf.scope_limits(unit) == {"MemoryMax": str(1 << 30), "TasksMax": "44"}
    masked.unlink()
    _dropin(tree["control"], unit, "80-cpu.conf", "[Scope]\nCPUQuota=50%\n")
    assert uf.scope_limits(unit) is None  # ask systemd


def test_reads_are_bounded_and_never_block(tree):
    unit = "machine-y.scope"
    (tree["transient"] / unit).write_text(SCOPE)
    big = _dropin(tree["control"], unit, "10-big.conf", "[Scope]\n" + "#" * uf.LIMIT)
    assert uf.scope_limits(unit) is None
    big.unlink()
    os.mkfifo(tree["control"] / f"{unit}.d" / "10-fifo.conf")
    assert uf.scope_limits(unit) is None
