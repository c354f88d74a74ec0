"""`nsdash systemctl -M` against a real Debian machine booted by nsdash, over the machine's own bus.

One ephemeral boot of the cached Debian tree serves the module; test units are
written into it through its init's root and picked up with daemon-reload.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from nsdash.errors import NsdashError
from nsdash.inside import procs, unitlog, units
from nsdash.inside.bus import BusTimeout, MachineBus, MachineGone
from nsdash.inside.target import Target, resolve
from nsdash.system import cgroupfs
from tests.conftest import REPO, TAG, run_nsdash, wait_for

TEST_UNIT = """\
[Unit]
Description=nsdash test service

[Service]
ExecStart=/bin/sleep infinity
ExecReload=/bin/true

[Install]
WantedBy=multi-user.target
"""
FAILING_UNIT = """\
[Unit]
Description=nsdash failing service

[Service]
Type=oneshot
ExecStart=/bin/false
"""
SLOW_UNIT = """\
[Unit]
Description=nsdash slow service

[Service]
Type=oneshot
ExecStart=/bin/sleep 60
"""


def system_state(name: str) -> str | None:
    """The machine's Manager.SystemState over its bus, or None while the bus is not up yet."""
    async def get(sd: units.Systemd) -> str:
        (value,) = await sd.bus.call(units.SYSTEMD, units.MANAGER_PATH, units.PROPERTIES, "Get", "ss",
                                     [units.MANAGER, "SystemState"])
        return str(value.value)

    try:
        return units.run(resolve(name), get, timeout=2)
    except Exception:
        return None


def boot(tree: Path, name: str, *extra: str) -> Target:
    r = run_nsdash("spawn", "--detach", *extra, "-bD", str(tree), "-M", name)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: system_state(name) in ("running", "degraded"))
    return resolve(name)


def power_off(name: str) -> None:
    r = run_nsdash("poweroff", name, timeout=60)
    if r.returncode != 0:
        run_nsdash("terminate", name, timeout=30)


def install_units(target: Target, **files: str) -> None:
    unit_dir = target.root / "etc/systemd/system"
    for fname, text in files.items():
        (unit_dir / fname).write_text(text)
    units.run(target, lambda sd: sd.daemon_reload())


@pytest.fixture(scope="module")
def machine(debian_cache):
    name = f"{TAG}-inside"
    target = boot(debian_cache, name, "-x")
    try:
        install_units(target, **{"nsdash-test.service": TEST_UNIT, "nsdash-fail.service": FAILING_UNIT,
                                 "nsdash-slow.service": SLOW_UNIT})
        yield target
    finally:
        power_off(name)


def systemctl(target: Target, *args: str, timeout: float = 60):
    return run_nsdash("systemctl", "-M", target.name, *args, timeout=timeout)


def unit_cgroup_pids(target: Target, unit: str) -> list[int]:
    """Host PIDs in the unit's cgroup, read straight from the host's cgroup2 hierarchy."""
    layout = cgroupfs.detect()
    assert target.cgroup and layout.unified is not None
    path = layout.unified_path(f"{target.cgroup}/system.slice/{unit}")
    try:
        return [int(p) for p in (path / "cgroup.procs").read_text().split()]
    except FileNotFoundError:
        return []


# ---------------------------------------------------------------- listing

def test_list_units_over_the_machines_bus(machine):
    r = systemctl(machine, "list-units", "--type=service")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["UNIT", "LOAD", "ACTIVE", "SUB", "DESCRIPTION"]
    dbus = next(line for line in lines if line.split()[:1] == ["dbus.service"])
    assert dbus.split()[1:4] == ["loaded", "active", "running"]
    assert "Pass --all to see loaded but inactive units, too." in r.stdout
    assert not any("nsdash-test.service" in line for line in lines)  # inactive: only with --all

    r = systemctl(machine, "list-units", "--all", "-o", "json", "dbus*")
    rows = {row["unit"]: row for row in json.loads(r.stdout)}
    assert set(rows) == {"dbus.service", "dbus.socket"}
    assert rows["dbus.socket"]["active"] == "active"
    assert rows["dbus.service"]["description"] == "D-Bus System Message Bus"

    r = systemctl(machine, "status", "-n", "0", "dbus*")
    assert r.returncode == 0, r.stderr
    assert [line for line in r.stdout.splitlines() if line.startswith("●")] == [
        "● dbus.service - D-Bus System Message Bus", "● dbus.socket - D-Bus System Message Bus Socket"]


def test_list_unit_files_shows_state_and_preset(machine):
    r = systemctl(machine, "list-unit-files", "nsdash-test.service")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1].split() == ["nsdash-test.service", "disabled", "enabled"]
    assert r.stdout.splitlines()[-1] == "1 unit files listed."


# ---------------------------------------------------------------- a unit's life

def test_start_and_stop_a_unit_its_processes_come_and_go(machine):
    r = systemctl(machine, "is-active", "nsdash-test")
    assert (r.returncode, r.stdout) == (3, "inactive\n")
    assert unit_cgroup_pids(machine, "nsdash-test.service") == []

    r = systemctl(machine, "start", "nsdash-test")
    assert r.returncode == 0, r.stderr
    r = systemctl(machine, "is-active", "nsdash-test")
    assert (r.returncode, r.stdout) == (0, "active\n")
    pids = unit_cgroup_pids(machine, "nsdash-test.service")
    assert len(pids) == 1
    assert Path(f"/proc/{pids[0]}/cmdline").read_bytes() == b"/bin/sleep\0infinity\0"

    r = systemctl(machine, "status", "nsdash-test")
    assert r.returncode == 0, r.stderr
    text = r.stdout
    inner = procs.parse_nspid(Path(f"/proc/{pids[0]}/status").read_text())
    assert text.startswith("● nsdash-test.service - nsdash test service\n")
    assert "     Active: active (running) since " in text
    assert f"   Main PID: {inner} (sleep)\n" in text
    assert "     CGroup: /system.slice/nsdash-test.service\n" in text
    assert f"             └─{inner} /bin/sleep infinity\n" in text
    journal = wait_for(lambda: [line.message for line in unitlog.unit_lines(machine, "nsdash-test.service")
                                if line.message.startswith("Started nsdash-test.service")])
    assert journal and "Started nsdash-test.service - nsdash test service." in r.stdout + journal[-1]

    r = systemctl(machine, "stop", "nsdash-test")
    assert r.returncode == 0, r.stderr
    assert unit_cgroup_pids(machine, "nsdash-test.service") == []
    assert not Path(f"/proc/{pids[0]}").exists()
    r = systemctl(machine, "is-active", "nsdash-test")
    assert (r.returncode, r.stdout) == (3, "inactive\n")


def test_restart_through_the_async_api_and_find_the_unit_of_a_process(machine):
    async def flow(sd: units.Systemd):
        await sd.job("start", "nsdash-test")
        before = await sd.status("nsdash-test")
        job = await sd.job("restart", "nsdash-test.service")
        after = await sd.status("nsdash-test")
        owner = await sd.find_unit_of_pid(after.main_pid or 0)
        await sd.job("stop", "nsdash-test")
        return before, job, after, owner

    before, job, after, owner = units.run(machine, flow)
    assert job.result == "done" and job.kind == "restart"
    assert before.main_pid and after.main_pid and before.main_pid != after.main_pid
    assert owner == "nsdash-test.service"
    assert after.control_group == "/system.slice/nsdash-test.service"


def test_a_failing_start_reports_systemds_result_and_points_to_the_journal(machine):
    r = systemctl(machine, "start", "nsdash-fail")
    assert r.returncode == 1
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1
    assert "job for nsdash-fail.service failed" in err and "exit-code" in err
    assert f"nsdash journal -M {machine.name} -u nsdash-fail.service" in err
    assert "Traceback" not in r.stderr

    r = systemctl(machine, "is-failed", "nsdash-fail")
    assert (r.returncode, r.stdout) == (0, "failed\n")
    r = systemctl(machine, "is-active", "nsdash-fail")
    assert r.returncode == 3
    r = systemctl(machine, "status", "nsdash-fail")
    assert r.returncode == 3
    assert r.stdout.startswith("× nsdash-fail.service")
    assert "Active: failed (Result: exit-code)" in r.stdout
    assert "(code=exited, status=1/FAILURE)" in r.stdout
    assert "Failed with result 'exit-code'." in r.stdout  # from the machine's journal
    r = systemctl(machine, "reset-failed", "nsdash-fail")
    assert r.returncode == 0
    assert systemctl(machine, "is-failed", "nsdash-fail").returncode == 1


def test_unknown_units(machine):
    r = systemctl(machine, "start", "no-such-unit")
    assert r.returncode == 5
    assert r.stderr.count("\n") == 1 and "no-such-unit.service not found" in r.stderr
    r = systemctl(machine, "status", "no-such-unit")
    assert r.returncode == 4 and "could not be found" in r.stderr
    r = systemctl(machine, "is-active", "no-such-unit")
    assert (r.returncode, r.stdout) == (3, "inactive\n")


def test_enable_and_disable_change_the_machines_tree(machine):
    link = machine.root / "etc/systemd/system/multi-user.target.wants/nsdash-test.service"
    r = systemctl(machine, "enable", "nsdash-test")
    assert r.returncode == 0, r.stderr
    assert "Created symlink /etc/systemd/system/multi-user.target.wants/nsdash-test.service" in r.stderr
    assert link.is_symlink()
    assert systemctl(machine, "is-enabled", "nsdash-test").stdout == "enabled\n"
    r = systemctl(machine, "disable", "nsdash-test")
    assert r.returncode == 0, r.stderr
    assert not link.exists() and not link.is_symlink()
    r = systemctl(machine, "is-enabled", "nsdash-test")
    assert (r.returncode, r.stdout) == (1, "disabled\n")


def test_no_block_only_queues(machine):
    r = systemctl(machine, "start", "--no-block", "-o", "json", "nsdash-test")
    assert r.returncode == 0, r.stderr
    (job,) = json.loads(r.stdout)
    assert job["unit"] == "nsdash-test.service" and job["result"] is None and job["job"] > 0
    wait_for(lambda: systemctl(machine, "is-active", "nsdash-test").returncode == 0)
    assert systemctl(machine, "stop", "nsdash-test").returncode == 0


# ---------------------------------------------------------------- a bus that does not answer

def test_a_frozen_bus_times_out_clearly(machine):
    """Stop the machine's dbus-daemon: every call must give up at the deadline, not hang."""
    layout = cgroupfs.detect()
    bus_pids = [int(p) for p in (layout.unified_path(f"{machine.cgroup}/system.slice/dbus.service")
                                 / "cgroup.procs").read_text().split()]
    assert bus_pids
    for pid in bus_pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        r = systemctl(machine, "--timeout", "1", "list-units")
        elapsed = time.monotonic() - start
        assert r.returncode == 1
        assert "did not answer within 1s" in r.stderr and "NSDASH_BUS_TIMEOUT" in r.stderr
        assert r.stderr.count("\n") == 1
        assert elapsed < 5
        with pytest.raises(BusTimeout):
            units.run(machine, lambda sd: sd.list_units(), timeout=0.5)
    finally:
        for pid in bus_pids:
            os.kill(pid, signal.SIGCONT)
    assert systemctl(machine, "is-active", "dbus").returncode == 0


# ---------------------------------------------------------------- other machines

def test_a_machine_without_systemd_gets_one_clear_error(busybox_tree, machine_name):
    r = run_nsdash("spawn", "--detach", "-bD", str(busybox_tree), "-M", machine_name)
    assert r.returncode == 0, r.stderr
    try:
        r = run_nsdash("systemctl", "-M", machine_name, "list-units")
        assert r.returncode == 1
        assert r.stderr == (f"nsdash: machine '{machine_name}' does not run systemd (no /run/systemd/system "
                            "inside); units can only be managed in machines booted with systemd "
                            "(nsdash spawn -b)\n")
    finally:
        power_off(machine_name)


def test_an_unknown_machine(machine_name):
    r = run_nsdash("systemctl", "-M", machine_name, "list-units")
    assert r.returncode == 1 and r.stderr.startswith(f"nsdash: no machine named '{machine_name}'")


@pytest.mark.parametrize("how", ["poweroff", "kill"])
def test_the_machine_going_away_during_a_job_wait(debian_cache, machine_name, how):
    """A job still waited for when the machine powers off (or is killed) ends with a clear error, not a hang."""
    target = boot(debian_cache, machine_name, "-x")
    try:
        install_units(target, **{"nsdash-slow.service": SLOW_UNIT})

        async def wait_while_going_away(sd: units.Systemd):
            await sd.subscribe()
            job = await sd.enqueue("start", "nsdash-slow")
            # SIGRTMIN+4 is systemd's "power off now", as machinectl sends it; SIGKILL ends the PID namespace.
            os.kill(target.leader, signal.SIGRTMIN + 4 if how == "poweroff" else signal.SIGKILL)
            return await sd.finish(job, job_timeout=30)

        start = time.monotonic()
        with pytest.raises(NsdashError) as e:
            units.run(target, wait_while_going_away, timeout=10)
        assert time.monotonic() - start < 15
        if how == "poweroff":
            assert e.value.oneline().startswith("job for nsdash-slow.service was canceled: machine "
                                                f"'{machine_name}' is shutting down")
        else:
            assert isinstance(e.value, MachineGone)
            assert e.value.oneline().startswith(f"machine '{machine_name}' powered off during the call")
        wait_for(lambda: not target.alive())
    finally:
        power_off(machine_name)


def test_bus_connections_are_reused_for_many_calls(machine):
    """One connection answers a burst of calls (what the dashboard's poller does)."""
    async def many(sd: units.Systemd):
        return [len(await sd.list_units()) for _ in range(20)]

    counts = units.run(machine, many)
    assert len(counts) == 20 and min(counts) > 10

    async def raw():
        async with MachineBus(machine, timeout=5) as b:
            return await b.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetId")

    (machine_id,) = asyncio.run(raw())
    assert len(machine_id) == 32


def test_many_jobs_on_one_connection(machine):
    """Waiting for one job must not spoil the connection for the next (the dashboard keeps acting)."""
    async def cycle(sd: units.Systemd):
        results = []
        for kind in ("start", "reload", "restart", "stop", "start", "stop"):
            results.append((await sd.job(kind, "nsdash-test")).result)
        return results

    assert units.run(machine, cycle) == ["done"] * 6


def test_list_jobs_and_show(machine):
    r = systemctl(machine, "start", "--no-block", "nsdash-slow")
    assert r.returncode == 0, r.stderr
    try:
        r = systemctl(machine, "list-jobs")
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[0].split() == ["JOB", "UNIT", "TYPE", "STATE"]
        row = next(line.split() for line in r.stdout.splitlines() if "nsdash-slow.service" in line)
        assert row[2:] == ["start", "running"]
        assert r.stdout.endswith("jobs listed.\n")
        r = systemctl(machine, "show", "-p", "ActiveState,SubState", "-p", "Description", "nsdash-slow")
        assert sorted(r.stdout.splitlines()) == ["ActiveState=activating", "Description=nsdash slow service",
                                                 "SubState=start"]
    finally:
        assert systemctl(machine, "stop", "nsdash-slow").returncode == 0
    assert systemctl(machine, "list-jobs").stdout == "No jobs running.\n"
    main = units.run(machine, lambda sd: sd.status("dbus")).main_pid
    r = systemctl(machine, "show", "--value", "-p", "MainPID", "dbus")
    assert r.stdout == f"{main}\n"
    (props,) = json.loads(systemctl(machine, "show", "-o", "json", "-p", "Id,MainPID", "dbus").stdout)
    assert props == {"Id": "dbus.service", "MainPID": main}


def test_status_shows_only_the_current_boots_journal(debian_tree, machine_name):
    """After a reboot of a persistent tree, the unit's lines of the previous boot are not shown."""
    unit_file = debian_tree / "etc/systemd/system/nsdash-boots.service"
    unit_file.write_text(TEST_UNIT.replace("nsdash test service", "nsdash boots service"))
    try:
        target = boot(debian_tree, machine_name)
        try:
            assert systemctl(target, "start", "nsdash-boots").returncode == 0
            assert systemctl(target, "stop", "nsdash-boots").returncode == 0
            wait_for(lambda: "Stopped nsdash-boots.service" in systemctl(target, "status", "nsdash-boots").stdout)
            r = run_nsdash("reboot", machine_name, timeout=60)
            assert r.returncode == 0, r.stderr
            wait_for(lambda: system_state(machine_name) in ("running", "degraded")
                     and resolve(machine_name).leader != target.leader)
            target = resolve(machine_name)
            text = systemctl(target, "status", "nsdash-boots").stdout
            assert "Started" not in text and "Stopped" not in text, text
            assert systemctl(target, "start", "nsdash-boots").returncode == 0
            r = wait_for(lambda: (out := systemctl(target, "status", "nsdash-boots").stdout).count("Started ") and out)
            assert r.count("Started nsdash-boots.service") == 1 and "Stopped" not in r
            assert systemctl(target, "stop", "nsdash-boots").returncode == 0
        finally:
            power_off(machine_name)
    finally:
        unit_file.unlink()


def test_the_dashboard_facade_caches_unit_files(machine, monkeypatch):
    """ListUnitFiles costs the machine's systemd about a second: refreshes reuse it for a while.
    Counted, not timed (a second snapshot under 0.5 s was a loaded host's coin toss)."""
    from nsdash.inside import units
    from nsdash.inside.view import MachineUnits

    calls: list[str] = []
    real = units.Systemd.list_unit_files

    async def counted(self: units.Systemd) -> list[units.UnitFile]:
        calls.append(machine.name)
        return await real(self)

    monkeypatch.setattr(units.Systemd, "list_unit_files", counted)
    mu = MachineUnits(machine.name)
    first = mu.snapshot(with_files=True)
    assert any(f.name == "nsdash-test.service" for f in first.files) and len(calls) == 1
    second = mu.snapshot(with_files=True)
    assert len(calls) == 1  # the files of the first snapshot, not asked for again
    assert second.files == first.files
    assert "nsdash-test.service" in {u.name for u in second.with_unloaded()}
    assert mu.snapshot().files == ()
    detail = mu.detail("dbus")
    assert detail.status.name == "dbus.service" and detail.processes
    assert detail.text().startswith("● dbus.service")


def test_a_booted_machine_whose_bus_socket_is_gone(debian_cache, machine_name):
    """systemd runs but its bus cannot be reached: one line naming that, and what to do."""
    target = boot(debian_cache, machine_name, "-x")
    try:
        (target.root / "run/dbus/system_bus_socket").unlink()
        r = systemctl(target, "list-units")
        assert r.returncode == 1
        assert r.stderr == (f"nsdash: machine '{machine_name}' runs systemd but has no system bus at "
                            "/run/dbus/system_bus_socket; install dbus in the machine's tree, or wait until "
                            "its boot has started dbus.service\n")
    finally:
        power_off(machine_name)


def test_a_machine_with_its_own_user_namespace(debian_cache, tmp_path, machine_name):
    """Under -U host root is "nobody" to the machine's bus: nsdash connects as the machine's root."""
    tree = tmp_path / machine_name
    subprocess.run(["cp", "-a", str(debian_cache), str(tree)], check=True)
    (tree / "etc/systemd/system/nsdash-test.service").write_text(TEST_UNIT)
    target = boot(tree, machine_name, "-U")
    try:
        assert Path(f"/proc/{target.leader}/uid_map").read_text().split()[1] != "0"  # really mapped
        r = systemctl(target, "start", "nsdash-test")
        assert r.returncode == 0, r.stderr
        r = systemctl(target, "status", "nsdash-test")
        assert r.returncode == 0, r.stderr
        assert "└─" in r.stdout and "/bin/sleep infinity" in r.stdout
        assert systemctl(target, "stop", "nsdash-test").returncode == 0
    finally:
        power_off(machine_name)


def test_the_unit_of_a_host_process_without_the_bus(machine):
    """The cgroup tree's "jump to unit": a host PID to its unit from its cgroup alone."""
    inner = units.run(machine, lambda sd: sd.status("dbus")).main_pid
    host_pid = next(p.host_pid for p in procs.unit_processes(machine, "/system.slice/dbus.service") or []
                    if p.pid == inner)
    assert procs.unit_of_process(machine, host_pid) == "dbus.service"
    assert procs.unit_of_process(machine, machine.leader) == "init.scope"
    assert procs.unit_of_process(machine, os.getpid()) is None  # not the machine's


# ---------------------------------------------------------------- what the read-only verbs cost

def _imported_by(target: Target, *args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run `nsdash systemctl -M TARGET ARGS` as users run it (bin/nsdash, python -S) under
    -X importtime; the modules it imported."""
    import sys

    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("NSDASH_DEBUG", None)
    r = subprocess.run([sys.executable, "-S", "-X", "importtime", str(REPO / "bin" / "nsdash"), "systemctl",
                        "-M", target.name, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    names = {line.split("|")[2].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    return r, names


# Nothing that list-units or status pays for without printing it: the event loop and the
# async bus (jobs only), pathlib (string paths to the machine's state and root), json
# encoding (-o json), signal's enums (a killed main process), argparse.
READ_ONLY_NEVER = {"asyncio", "argparse", "dataclasses", "inspect", "signal", "dbus_fast.aio",
                   "dbus_fast.message_bus", "dbus_fast.introspection", "systemd.journal"}


def _among(names: set[str], never: set[str]) -> set[str]:
    """The NAMES that are in NEVER or inside a package in it."""
    return {n for n in names if n in never or any(n.startswith(f"{m}.") for m in never)}


# Through the supervisor (bus-call) the read-only verbs speak no D-Bus themselves: no dbus-fast,
# and none of the stdlib its marshalling needs (re, enum, typing, socket.py), nor json; the
# annotations' collections.abc waits for mypy (it imports collections, 1-2 ms).
THROUGH_SUPERVISOR_NEVER = {"dbus_fast", "nsdash.system.dbuswire", "re", "enum", "typing", "socket", "json",
                            "fnmatch", "pathlib", "collections", "functools"}


def test_list_units_imports_only_its_bus_client(machine):
    r, names = _imported_by(machine, "list-units")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.rstrip().endswith("use 'systemctl list-unit-files'."), r.stdout[-500:]  # all of it flushed
    assert "nsdash.machines.buscall" in names
    never = READ_ONLY_NEVER | THROUGH_SUPERVISOR_NEVER | {
        "urllib", "ipaddress", "datetime", "nsdash.journal", "nsdash.inside.procs", "nsdash.inside.unitlog",
        "nsdash.monitor", "ctypes", "nsdash.system.syscalls"}
    assert _among(names, never) == set()


def test_status_reads_the_journal_without_systemd_journal(machine):
    r, names = _imported_by(machine, "status", "dbus.service")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "● dbus.service - D-Bus System Message Bus" in r.stdout
    assert "TriggeredBy: ● dbus.socket" in r.stdout  # the triggers' states, in one ListUnitsByNames
    assert "systemd._reader" in names  # the C reader, not systemd.journal's Python wrapper
    assert "nsdash.machines.buscall" in names
    assert _among(names, READ_ONLY_NEVER | THROUGH_SUPERVISOR_NEVER | {"ctypes", "nsdash.system.syscalls"}) == set()


def test_list_unit_files_reads_the_presets_without_pathlib(machine):
    """The PRESET column's files are read below the machine's root given as a string, through
    the tree's lib -> usr/lib by the plain walk (no ctypes for openat2), matched without re."""
    r, names = _imported_by(machine, "list-unit-files")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "nsdash.inside.presets" in names and "dbus.service" in r.stdout
    assert _among(names, {"pathlib", "urllib", "ipaddress", "ctypes", "nsdash.system.syscalls", "fnmatch", "re",
                          "enum", "os"}) == set()


# A job verb speaks to the machine's bus itself (dbus-fast's async bus: it waits for the job's
# signal), through a relay that lets no message over BUS_REPLY_MAX through (inside/busrelay.py):
# the limit comes from machines/busguard.py, not with the control protocol's codec.
JOB_NEVER = {"nsdash.machines.busproxy", "nsdash.machines.protocol", "nsdash.machines.buscall"}


def test_a_job_verb_imports_neither_the_bus_call_worker_nor_the_protocol(machine):
    for verb in ("start", "stop"):
        r, names = _imported_by(machine, verb, "nsdash-test")
        assert r.returncode == 0, r.stderr[-2000:]
        assert {"nsdash.machines.busguard", "nsdash.inside.busrelay"} <= names
        assert _among(names, JOB_NEVER) == set(), verb
    assert unit_cgroup_pids(machine, "nsdash-test.service") == []  # started and stopped for real


# Properties that change between two calls a moment apart (counters, the dbus-daemon's own work).
_VOLATILE = {"CPUUsageNSec", "MemoryCurrent", "MemoryAvailable", "TasksCurrent", "IOReadBytes", "IOWriteBytes",
             "IOReadOperations", "IOWriteOperations", "IPIngressBytes", "IPEgressBytes", "IPIngressPackets",
             "IPEgressPackets", "MemoryPeak", "MemorySwapPeak", "MemorySwapCurrent",
             "MemoryZSwapCurrent", "EffectiveMemoryHigh", "EffectiveMemoryMax", "EffectiveTasksMax"}


def test_the_supervisor_and_the_direct_path_answer_alike(machine, monkeypatch, capsys):
    """The same values, and the same text, whether the supervisor makes the calls or the command does."""
    from nsdash.cli import systemctl as cli
    from nsdash.machines.buscall import SupervisorBus

    calls = []
    real_call = SupervisorBus.call

    def counted(self, *args):
        calls.append(args[3])
        return real_call(self, *args)

    monkeypatch.setattr(SupervisorBus, "call", counted)

    def both(action):
        through = units.run_blocking(machine, action, via_supervisor=True)
        direct = units.run_blocking(machine, action)
        return through, direct

    through, direct = both(lambda sd: sd.list_units())
    assert through == direct and len(through) > 10
    assert calls == ["ListUnits"]
    through, direct = both(lambda sd: sd.properties("dbus.service"))
    assert set(through) == set(direct)
    assert {k: type(v) for k, v in through.items()} == {k: type(v) for k, v in direct.items()}  # bytes stay bytes
    assert any(isinstance(v, bytes) for v in through.values())
    assert {k: v for k, v in through.items() if k not in _VOLATILE} == \
        {k: v for k, v in direct.items() if k not in _VOLATILE}

    def text(*args: str) -> tuple[int, str]:
        rc = cli.main(["-M", machine.name, *args])
        out = capsys.readouterr()
        return rc, re.sub(r"; [^;\n]* ago", "; ... ago", out.out + out.err)

    verbs = [("list-units", "--all"), ("list-unit-files",), ("status", "-n", "5", "nsdash-test.service",
             "multi-user.target"), ("show", "multi-user.target"), ("is-enabled", "nsdash-test.service"),
             ("is-active", "dbus.service", "nosuch.service"), ("status", "nosuch.service")]
    calls.clear()
    through_texts = [text(*v) for v in verbs]
    assert len(calls) >= len(verbs)
    monkeypatch.setattr(SupervisorBus, "open", classmethod(lambda cls, name, timeout, *modules: None))  # direct
    calls.clear()
    assert [text(*v) for v in verbs] == through_texts
    assert calls == []
