"""nsdash on a host booted with systemd: machines as real units (issue 14).

The host here runs no systemd, so the systemd host is a Debian tree booted by
nsdash (systemd PID 1, machined and the system bus inside) with this checkout
and the venv's packages bound in read-only, as test_machines.py does; nsdash
runs inside it and boots the same tree again (-xbD /) as the inner machine.
Inside, cgroup2 has no controllers (they stay bound to this host's v1
hierarchies), so properties are checked with `systemctl show`, not by effect.
"""

from __future__ import annotations

import contextlib
import json
import sysconfig

import pytest
from conftest import REPO, run_nsdash, teardown_machine, wait_for

from nsdash.machines import state as st

NO_UNITS = "systemctl list-units --no-legend --plain 'machine-*' 'nsdash*'"


@contextlib.contextmanager
def booted_host(debian_cache, name: str, *options: str):
    """Boot the Debian tree as NAME (with OPTIONS) and yield inside(script), which runs a shell
    script there (the repo and the venv's packages on PYTHONPATH) and returns its stdout."""
    site = sysconfig.get_paths()["purelib"]
    r = run_nsdash("spawn", "--detach", "-M", name, *options, "-xbD", str(debian_cache),
                   f"--bind-ro={REPO}:/opt/nsdash", f"--bind-ro={site}:/opt/site")
    assert r.returncode == 0, r.stderr

    def inside(script: str, timeout: float = 90, check: bool = True):
        r = run_nsdash("shell", name, "/bin/sh", "-c",
                       "export PYTHONPATH=/opt/nsdash:/opt/site; cd /; " + script, timeout=timeout)
        if check:
            assert r.returncode == 0, (script, r.stdout, r.stderr)
            return r.stdout
        return r

    try:
        log = st.machine_dir(name) / st.CONSOLE_LOG
        wait_for(lambda: "login:" in log.read_text(errors="replace"), timeout=60, what="the host's getty")
        assert inside("systemctl is-system-running --wait").strip() in ("running", "degraded")
        yield inside
    finally:
        teardown_machine(name)


@pytest.fixture
def host(debian_cache, machine_name):
    """The booted Debian tree: inside(script) runs a shell script there and returns stdout."""
    with booted_host(debian_cache, machine_name) as inside:
        yield inside


def _spawn(inside, name: str, *options: str) -> None:
    inside(f"python3 -m nsdash spawn --detach -q {' '.join(options)} -xbD / -M {name}")


def _leader(inside, name: str) -> int:
    """The leader machined knows for NAME, or 0 while it knows none (between two boots)."""
    r = inside(f"machinectl show -p Leader --value {name}", check=False)
    return int(r.stdout) if r.returncode == 0 and r.stdout.strip().isdigit() else 0


def _gone(inside, name: str) -> None:
    inside(f"for i in $(seq 100); do [ -e /run/nsdash/machines/{name} ] || break; sleep 0.1; done; "
           f"test ! -e /run/nsdash/machines/{name}")
    inside(f"for i in $(seq 100); do [ -z \"$({NO_UNITS})\" ] && exit 0; sleep 0.1; done; {NO_UNITS}; exit 1")


def test_scope_and_service_are_units_with_nspawns_defaults_and_live_properties(host):
    _spawn(host, "inner", "--property=TasksMax=77")
    active = host("systemctl is-active machine-inner.scope nsdash@inner.service")
    assert active.split() == ["active", "active"]
    show = host("systemctl show -p Delegate,DevicePolicy,TasksMax,Slice,ControlGroup machine-inner.scope")
    assert set(show.split()) == {"Delegate=yes", "DevicePolicy=closed", "TasksMax=77", "Slice=machine.slice",
                                 "ControlGroup=/machine.slice/machine-inner.scope"}
    status = host("machinectl --no-pager status inner")
    assert "Unit: machine-inner.scope" in status and "Service: nsdash; class container" in status
    leader = _leader(host, "inner")
    assert leader > 0
    assert host(f"grep ^0:: /proc/{leader}/cgroup").strip() == "0::/machine.slice/machine-inner.scope/init.scope"
    supervisor = json.loads(host("python3 -m nsdash status -o json inner"))["supervisor"]
    assert host(f"grep ^0:: /proc/{supervisor}/cgroup").strip() == "0::/machine.slice/nsdash@inner.service"

    # systemd's own tools change the limits, and nsdash reports what systemd holds
    host("systemctl set-property --runtime machine-inner.scope MemoryMax=100M")
    limits = json.loads(host("python3 -m nsdash status -o json inner"))["limits"]
    assert limits == {"MemoryMax": str(100 << 20), "TasksMax": "77"}
    assert "Limits: MemoryMax=104857600 TasksMax=77" in host("python3 -m nsdash status inner")
    host("python3 -m nsdash set-property inner TasksMax=55 CPUQuota=30%")
    assert set(host("systemctl show -p TasksMax,CPUQuotaPerSecUSec machine-inner.scope").split()) == {
        "TasksMax=55", "CPUQuotaPerSecUSec=300ms"}
    r = host("python3 -m nsdash set-property inner Bogus=1", check=False)
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "Cannot set property Bogus" in r.stderr

    # machined's verbs work on nsdash's machines: reboot (a new leader, the same unit) ...
    host("machinectl reboot inner")
    wait_for(lambda: _leader(host, "inner") not in (0, leader), timeout=30, what="a new leader after machinectl reboot")
    host("for i in $(seq 100); do systemctl is-active -q machine-inner.scope && break; sleep 0.1; done")
    assert "Unit: machine-inner.scope" in host("machinectl --no-pager status inner")
    assert json.loads(host("python3 -m nsdash status -o json inner"))["boot"] == 2
    # ... and poweroff, which leaves no unit behind
    host("machinectl poweroff inner")
    _gone(host, "inner")
    assert host("machinectl list --no-legend").strip() == ""


def test_machine_outlives_the_unit_that_started_it_and_terminate_kills_it(host):
    host("systemd-run --wait -q --unit=starter -E PYTHONPATH=$PYTHONPATH "
         "python3 -m nsdash spawn --detach -q -xbD / -M survivor")
    r = host("systemctl is-active starter.service", check=False)
    assert r.stdout.strip() == "inactive"  # the starter's unit has ended, its cgroup is gone
    assert host("sleep 1; systemctl is-active machine-survivor.scope nsdash@survivor.service").split() == [
        "active", "active"]
    assert json.loads(host("python3 -m nsdash status -o json survivor"))["state"] == "running"
    host("machinectl terminate survivor")
    _gone(host, "survivor")


def test_slice_keep_unit_and_a_property_systemd_refuses(host):
    _spawn(host, "sliced", "-S", "web")
    assert host("systemctl show -p ControlGroup --value machine-sliced.scope").strip() == \
        "/web.slice/machine-sliced.scope"
    assert "Unit: machine-sliced.scope" in host("python3 -m nsdash status sliced")
    host("python3 -m nsdash poweroff sliced")
    _gone(host, "sliced")

    # --keep-unit: today's way, no unit of its own (the caller's own cgroup holds the supervisor)
    _spawn(host, "kept", "--keep-unit")
    assert host("systemctl list-units --no-legend --plain 'nsdash*'").strip() == ""
    assert host("machinectl list --no-legend").split()[:3] == ["kept", "container", "nsdash"]
    host("python3 -m nsdash poweroff kept")
    host("for i in $(seq 100); do [ -e /run/nsdash/machines/kept ] || break; sleep 0.1; done")

    r = host("python3 -m nsdash spawn --detach -q --property=Bogus=1 -xbD / -M refused", check=False)
    assert r.returncode != 0 and r.stderr.count("\n") == 1, r.stderr
    assert "Cannot set property Bogus, or unknown property" in r.stderr
    _gone(host, "refused")
    assert host("machinectl list --no-legend").strip() == ""


def test_foreground_run_gets_a_scope_and_stopping_the_service_powers_off(host):
    # a run in the terminal (no supervisor): the payload in its own scope, gone with the run
    out = host("python3 -m nsdash spawn -q --property=TasksMax=33 -xD / -M fg sleep 3 </dev/null & pid=$!; "
               "for i in $(seq 50); do systemctl is-active -q machine-fg.scope && break; sleep 0.1; done; "
               "systemctl show -p TasksMax,ActiveState machine-fg.scope; wait $pid; echo rc=$?")
    assert {"TasksMax=33", "ActiveState=active", "rc=0"} <= set(out.split()), out
    _gone(host, "fg")

    # systemctl stop on the supervisor's service (as at the host's shutdown) powers the machine off
    _spawn(host, "stopped")
    host("systemctl stop nsdash@stopped.service")
    _gone(host, "stopped")
    # a clean poweroff: the supervisor exited 0, so systemd did not mark its service failed
    log = host("journalctl -q -u nsdash@stopped.service --no-pager -o cat")
    assert "Deactivated successfully" in log and "Failed with result" not in log, log


_COMPARE = ("python3 -c 'import json; from nsdash.machines import limits, unitfiles; "
            "u = \"machine-filed.scope\"; "
            "print(json.dumps([unitfiles.scope_limits(u), limits.unit_limits(u)]))'")


def test_limits_read_from_systemds_unit_files_are_what_it_answers_over_dbus(host):
    """status reads a scope's limits from the transient unit file and set-property's drop-ins
    (machines/unitfiles.py); systemd's own GetAll answer is the truth they must equal."""
    _spawn(host, "filed", "--property=TasksMax=77", "--property=MemoryMax=300M", "--property=MemoryHigh=2G")
    files, bus = json.loads(host(_COMPARE))
    assert files == bus == {"MemoryMax": str(300 << 20), "MemoryHigh": str(2 << 30), "TasksMax": "77"}

    # runtime drop-ins (later names win), a reset, infinity, then nsdash's own set-property
    host("systemctl set-property --runtime machine-filed.scope MemoryMax=100M TasksMax=infinity")
    host("systemctl set-property --runtime machine-filed.scope MemoryHigh=")
    files, bus = json.loads(host(_COMPARE))
    assert files == bus == {"MemoryMax": str(100 << 20)}
    host("python3 -m nsdash set-property filed TasksMax=55 MemoryHigh=64M")
    files, bus = json.loads(host(_COMPARE))
    assert files == bus == {"MemoryMax": str(100 << 20), "MemoryHigh": str(64 << 20), "TasksMax": "55"}
    assert json.loads(host("python3 -m nsdash status -o json filed"))["limits"] == bus
    assert "Limits: MemoryMax=104857600 MemoryHigh=67108864 TasksMax=55" in host("python3 -m nsdash status filed")

    # a percentage and a CPU quota: the files do not say them exactly, so status asks systemd
    host("systemctl set-property --runtime machine-filed.scope MemoryMax=50% CPUQuota=30%")
    files, bus = json.loads(host(_COMPARE))
    assert files is None and bus["CPUQuota"] == "30%" and int(bus["MemoryMax"]) > 0
    assert json.loads(host("python3 -m nsdash status -o json filed"))["limits"] == bus
    host("python3 -m nsdash poweroff filed")
    _gone(host, "filed")
