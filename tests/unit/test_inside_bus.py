"""Reaching a machine's bus: symlinks cannot lead out of its root, slow or dead buses fail fast and clearly.

These use fixture roots under tmp_path (a Target's /proc is a parameter) and real
unix sockets; no root and no machine needed.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from nsdash.inside import procs
from nsdash.inside.bus import BusTimeout, BusUnreachable, MachineBus, MachineGone, open_bus_socket
from nsdash.inside.target import Target
from nsdash.system import cgroupfs


def fake_machine(tmp_path: Path, pid: int = 4242) -> tuple[Target, Path]:
    root = tmp_path / "proc" / str(pid) / "root"
    (root / "run/dbus").mkdir(parents=True)
    return Target("m1", pid, proc=tmp_path / "proc"), root


def listen(path: Path) -> socket.socket:
    """A listening unix socket at PATH, however long (bound relative to its directory)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cwd = os.open(".", os.O_RDONLY)
    try:
        os.chdir(path.parent)
        s.bind(path.name)
    finally:
        os.fchdir(cwd)
        os.close(cwd)
    s.listen(4)
    return s


def test_missing_bus_without_systemd_says_so(tmp_path):
    target, _ = fake_machine(tmp_path)
    with pytest.raises(BusUnreachable, match="does not run systemd"):
        open_bus_socket(target)


def test_missing_bus_with_systemd_points_at_dbus(tmp_path):
    target, root = fake_machine(tmp_path)
    (root / "run/systemd/system").mkdir(parents=True)
    with pytest.raises(BusUnreachable, match="runs systemd but has no system bus") as e:
        open_bus_socket(target)
    assert "install dbus" in (e.value.hint or "")


def test_absolute_symlink_resolves_inside_the_machine_not_on_the_host(tmp_path):
    """A machine's socket symlinked to an absolute path must not reach the host's file of that name."""
    target, root = fake_machine(tmp_path)
    host_side = tmp_path / "host-bus"
    server = listen(host_side)
    try:
        os.symlink(str(host_side), root / "run/dbus/system_bus_socket")
        with pytest.raises(BusUnreachable):
            open_bus_socket(target)
        # ...while the same path inside the machine's root is what it reaches.
        inside = root / str(host_side).lstrip("/")
        inside.parent.mkdir(parents=True)
        inner = listen(inside)
        try:
            fd = open_bus_socket(target)
            assert os.path.samestat(os.stat(f"/proc/self/fd/{fd}"), os.stat(inside))
            assert len(str(inside)) > 108  # beyond AF_UNIX's limit, yet reachable through the fd
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(f"/proc/self/fd/{fd}")
                inner.accept()[0].close()
            os.close(fd)
        finally:
            inner.close()
    finally:
        server.close()


def test_a_silent_bus_times_out_with_a_clear_error(tmp_path):
    target, root = fake_machine(tmp_path)
    server = listen(root / "run/dbus/system_bus_socket")
    (tmp_path / "proc" / str(target.leader) / "stat").write_text("4242 (systemd) S 0 1 1\n")  # "alive"
    try:
        start = time.monotonic()
        with pytest.raises(BusTimeout, match="did not answer within 0.5s"):
            asyncio.run(MachineBus(target, timeout=0.5).connect())
        assert time.monotonic() - start < 3
    finally:
        server.close()


def test_a_bus_that_hangs_up_is_reported_as_lost(tmp_path):
    target, root = fake_machine(tmp_path)
    server = listen(root / "run/dbus/system_bus_socket")

    def hang_up():
        conn, _ = server.accept()
        conn.recv(1)
        conn.close()

    t = threading.Thread(target=hang_up, daemon=True)
    t.start()
    try:
        with pytest.raises((BusUnreachable, MachineGone)):
            asyncio.run(MachineBus(target, timeout=5).connect())
    finally:
        t.join(5)
        server.close()


def test_a_zombie_init_is_not_alive(tmp_path):
    target, _ = fake_machine(tmp_path)
    stat = tmp_path / "proc" / str(target.leader) / "stat"
    stat.write_text("4242 (systemd (x)) S 0 1 1\n")
    assert target.alive()
    stat.write_text("4242 (systemd (x)) Z 0 1 1\n")
    assert not target.alive()


def test_a_machine_whose_init_is_gone(tmp_path):
    target = Target("gone", 999_999_999, proc=tmp_path)
    with pytest.raises(MachineGone, match="is not running"):
        open_bus_socket(target)


# ---------------------------------------------------------------- processes, host view

def test_parsers():
    assert procs.parse_nspid("Name:\tsleep\nNSpid:\t9035\t35\n") == 35
    assert procs.parse_nspid("Name:\tx\n") is None
    assert procs.parse_cmdline(b"/bin/sleep\0infinity\0") == "/bin/sleep infinity"
    assert procs.parse_cmdline(b"", "kworker") == "[kworker]"
    assert procs.strip_suffix("/machine.slice/m1/init.scope", "/init.scope") == "/machine.slice/m1"
    assert procs.strip_suffix("/init.scope", "/init.scope") == ""
    assert procs.strip_suffix("/machine.slice/m1/xinit.scope", "/init.scope") is None


def test_unit_processes_from_a_fixture_cgroup_tree(tmp_path):
    proc = tmp_path / "proc"
    cg = tmp_path / "cgroup"
    for pid, inner, comm, argv, group in ((9001, 1, "init", b"/sbin/init\0", "init.scope"),
                                          (9035, 35, "web", b"/usr/sbin/web\0-f\0", "system.slice/web.service"),
                                          (9040, 40, "web", b"/usr/sbin/web\0--worker\0",
                                           "system.slice/web.service/w")):
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "status").write_text(f"Name:\t{comm}\nNSpid:\t{pid}\t{inner}\n")
        (proc / str(pid) / "cmdline").write_bytes(argv)
        (cg / "machine.slice/m1" / group).mkdir(parents=True, exist_ok=True)
        (cg / "machine.slice/m1" / group / "cgroup.procs").write_text(f"{pid}\n")
    (cg / "machine.slice/m1/system.slice/cgroup.procs").write_text("")
    (proc / "9001" / "cgroup").write_text("0::/machine.slice/m1/init.scope\n")
    layout = cgroupfs.Layout("unified", cg, cg, {})
    target = Target("m1", 9001, proc=proc)
    found = procs.unit_processes(target, "/system.slice/web.service", layout, proc=proc)
    assert found == [procs.UnitProcess(35, 9035, "/system.slice/web.service", "/usr/sbin/web -f", "web"),
                     procs.UnitProcess(40, 9040, "/system.slice/web.service/w", "/usr/sbin/web --worker", "web")]
    # A recorded machine cgroup wins over the derivation from init's place.
    recorded = Target("m1", 9001, cgroup="/machine.slice/m1", proc=proc)
    assert procs.unit_processes(recorded, "/init.scope", layout, proc=proc)[0].pid == 1
    assert procs.unit_processes(target, "/system.slice/gone.service", layout, proc=proc) == []
    assert procs.unit_processes(target, "/x", cgroupfs.Layout("legacy", cg, None, {}), proc=proc) is None


def test_unit_of_a_cgroup_without_the_bus():
    assert procs.unit_of_cgroup("/system.slice/nginx.service/worker") == "nginx.service"
    assert procs.unit_of_cgroup("/init.scope") == "init.scope"
    assert procs.unit_of_cgroup("/user.slice/user-0.slice/session-1.scope") == "session-1.scope"
    assert procs.unit_of_cgroup("/user.slice") == "user.slice"
    assert procs.unit_of_cgroup("/") is None
    assert procs.machine_relative("/machine.slice/m1/system.slice/a.service", "/machine.slice/m1") \
        == "/system.slice/a.service"
    assert procs.machine_relative("/machine.slice/m10/x", "/machine.slice/m1") is None


def test_unit_object_paths_are_escaped_as_systemd_serves_them():
    from nsdash.inside.units import unit_object_path

    assert unit_object_path("dbus.service") == "/org/freedesktop/systemd1/unit/dbus_2eservice"
    assert unit_object_path("systemd-logind.service") == "/org/freedesktop/systemd1/unit/systemd_2dlogind_2eservice"
    assert unit_object_path("1a@b\\x2d.service") == "/org/freedesktop/systemd1/unit/_31a_40b_5cx2d_2eservice"
    assert unit_object_path("é.service") == "/org/freedesktop/systemd1/unit/_c3_a9_2eservice"
    assert unit_object_path("") == "/org/freedesktop/systemd1/unit/_"
