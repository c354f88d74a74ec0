"""Machines that outlive the terminal: detached supervisors and machinectl's verbs, for real."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import select
import signal
import struct
import termios
import time
from pathlib import Path

from _spawnhelp import leader_of
from conftest import alive, console_log, run_nsdash, teardown_machine, wait_for

from nsdash.launcher import names
from nsdash.machines import client
from nsdash.machines import state as st


def gone(name: str) -> bool:
    return not st.machine_dir(name).exists()


def collect_events(session, until, timeout=20.0):
    """Read an attached console until an event matches UNTIL (or the supervisor closes)."""
    events, out = [], b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = session.read(0.2)
        if got is None:
            return events, out, True
        out += got[0]
        events += got[1]
        if any(until(e) for e in got[1]):
            return events, out, False
    raise AssertionError(f"no matching event; got {events}")


# ---------------------------------------------------------------- BusyBox


def test_busybox_detached_list_status_shell_ps(detached, busybox_tree, machine_name):
    t0 = time.monotonic()
    detached("-bD", str(busybox_tree))
    assert time.monotonic() - t0 < 10
    wait_for(lambda: "login:" in console_log(machine_name), what="the getty prompt")

    r = run_nsdash("list")
    assert r.returncode == 0
    row = next(line for line in r.stdout.splitlines() if line.startswith(machine_name))
    assert row.split() == [machine_name, "container", "nsdash", "busybox", "1", "-", "running"]
    assert r.stdout.rstrip().endswith("machines listed.")
    listed = json.loads(run_nsdash("list", "-o", "json").stdout)
    mine = next(m for m in listed if m["machine"] == machine_name)
    assert mine["class"] == "container" and mine["service"] == "nsdash" and mine["leader"] > 1

    r = run_nsdash("status", machine_name)
    assert r.returncode == 0, r.stderr
    text = r.stdout
    for label in ("Since:", "Leader:", "Root: " + str(busybox_tree), "OS: nsdash BusyBox demo",
                  f"Unit: {names.scope_name(machine_name)}", "getty -L 0 console", "login:"):
        assert label in text, (label, text)
    assert f"{mine['leader']} init" in text  # the cgroup tree lists PID 1 by its host PID
    data = json.loads(run_nsdash("status", machine_name, "-o", "json").stdout)
    assert data["state"] == "running" and data["boot"] == 1 and any("login:" in x for x in data["log"])

    r = run_nsdash("shell", machine_name, "/bin/sh", "-c", "hostname; echo pid=$$; exit 7")
    assert r.returncode == 7, r.stderr
    assert r.stdout.split() == [machine_name, "pid=" + r.stdout.split("pid=")[1].split()[0]]
    assert int(r.stdout.split("pid=")[1]) < 100  # inside the machine's PID namespace
    assert run_nsdash("shell", machine_name, "/no/such/command").returncode == 127
    assert run_nsdash("shell", machine_name, "/bin/sh", "-c", "kill -9 $$").returncode == 128 + 9

    r = run_nsdash("ps", "-M", machine_name)
    lines = r.stdout.splitlines()
    assert lines[0].split()[:2] == ["PID", "MACHINE"]
    assert any("getty" in line and line.split()[1] == machine_name for line in lines[1:])
    procs = json.loads(run_nsdash("ps", "-o", "json").stdout)
    assert {p["machine"] for p in procs if "getty -L 0 console" in p["command"]} >= {machine_name}

    r = run_nsdash("poweroff", machine_name)
    assert r.returncode == 0, r.stderr
    assert gone(machine_name)


def test_login_through_a_real_pty_and_detach_leaves_it_running(detached, busybox_tree, machine_name):
    detached("-bD", str(busybox_tree))
    wait_for(lambda: "login:" in console_log(machine_name), what="the getty prompt")
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(run_nsdash.__globals__["PY"], [run_nsdash.__globals__["PY"], "-m", "nsdash", "login",
                                                   machine_name], dict(os.environ))
    buf = bytearray()

    def until(pattern: bytes, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while pattern not in buf:
            assert time.monotonic() < deadline, (pattern, bytes(buf))
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    buf.extend(os.read(fd, 4096))
                except OSError:
                    break

    try:
        until(b"Connected to machine")
        os.write(fd, b"\r")
        until(f"{machine_name} login:".encode())
        os.write(fd, b"root\r")
        until(b"# ")
        os.write(fd, b"echo answer-$((6*7))\r")
        until(b"answer-42")
        os.write(fd, b"\x1d\x1d\x1d")
        until(b"terminated")
        _, status = os.waitpid(pid, 0)
        pid = 0
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        os.close(fd)
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert client.status(machine_name)["state"] == "running"  # detaching never stops the machine


def test_reboot_keeps_the_name_and_marks_a_new_boot(detached, busybox_tree, machine_name):
    detached("-bD", str(busybox_tree))
    first = client.status(machine_name)
    r = run_nsdash("reboot", machine_name)
    assert r.returncode == 0, r.stderr
    second = client.status(machine_name)
    assert second["boot"] == 2 and second["leader"] != first["leader"]
    assert second["cgroup"] == first["cgroup"] and second["state"] == "running"
    log = console_log(machine_name)
    assert "\n-- nsdash: boot 1 " in log and "\n-- nsdash: reboot " in log and "\n-- nsdash: boot 2 " in log
    assert log.index("boot 1") < log.index("-- nsdash: reboot") < log.index("boot 2")
    assert run_nsdash("poweroff", machine_name).returncode == 0
    assert gone(machine_name)


def test_terminate_and_kill(detached, busybox_tree, machine_name):
    detached("-bD", str(busybox_tree))
    t0 = time.monotonic()
    assert run_nsdash("terminate", machine_name).returncode == 0
    assert gone(machine_name) and time.monotonic() - t0 < 5
    assert "no machine named" in run_nsdash("status", machine_name).stderr

    detached("-bD", str(busybox_tree))
    # BusyBox init takes SIGTERM as "reboot": proof the signal reached the leader.
    r = run_nsdash("kill", "-s", "TERM", "--kill-whom=leader", machine_name)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: client.status(machine_name)["boot"] == 2, what="a reboot after SIGTERM")
    with client.attach(machine_name, replay=0) as session:
        assert run_nsdash("kill", "-s", "KILL", "--kill-whom=all", machine_name).returncode == 0
        events, _, closed = collect_events(session, lambda e: e["event"] == "killed")
    ended = next(e for e in events if e["event"] == "killed")
    assert ended["status"] == signal.SIGKILL and ended["detail"] == "signal SIGKILL"
    wait_for(lambda: gone(machine_name), what="the machine to go away")


def test_init_exit_status_is_reported(detached, busybox_tree, machine_name):
    detached("-D", str(busybox_tree), "/bin/sh", "-c", "read x; exit $x")
    with client.attach(machine_name, replay=0) as session:
        session.send(b"3\n")
        events, _, _ = collect_events(session, lambda e: e["event"] == "exited")
    assert next(e for e in events if e["event"] == "exited")["status"] == 3
    wait_for(lambda: gone(machine_name), what="the machine to go away")


def test_reboot_loop_is_rate_limited_and_reported(detached, busybox_tree, machine_name):
    detached("-D", str(busybox_tree), "/bin/sh", "-c", "sleep 0.2; reboot -f")
    with client.attach(machine_name, replay=0) as session:
        events, _, _ = collect_events(session, lambda e: e["event"] == "exited", timeout=30)
    reboots = [e for e in events if e["event"] == "reboot"]
    final = events[-1]
    assert len(reboots) >= 3  # the ones after we attached; the limit is 5 in 10 s
    assert final["event"] == "exited" and "reboot loop" in final["detail"]
    wait_for(lambda: gone(machine_name), what="the machine to go away")


def test_supervisor_killed_leaves_an_orphan_that_is_reported_and_cleaned(detached, busybox_tree, machine_name):
    detached("-bD", str(busybox_tree))
    s = client.status(machine_name)
    os.kill(s["supervisor"], signal.SIGKILL)
    wait_for(lambda: not st.supervisor_alive(st.machine_dir(machine_name)), what="the supervisor to die")
    r = run_nsdash("list")
    assert "orphaned" in r.stdout  # readers report, never change
    r = run_nsdash("status", machine_name)
    assert r.returncode != 0
    assert "orphaned" in r.stderr and "killed" in r.stderr and "Traceback" not in r.stderr
    assert gone(machine_name)
    assert not alive(s["leader"])  # killed (perhaps a zombie until the host's init reaps it)
    detached("-bD", str(busybox_tree))  # the same name starts again
    assert client.status(machine_name)["boot"] == 1
    assert run_nsdash("poweroff", machine_name).returncode == 0


def test_user_mistakes_get_one_line(detached, busybox_tree, machine_name):
    for args in (("status", "no-such-machine-x"), ("poweroff", "no-such-machine-x"), ("login", "../etc"),
                 ("kill", "-s", "BOGUS", "x"), ("start", "no-such-image-x"), ("status",)):
        r = run_nsdash(*args)
        assert r.returncode != 0 and r.stderr.count("\n") == 1 and r.stderr.startswith("nsdash: "), (args, r.stderr)
    detached("-bD", str(busybox_tree))
    r = detached("-bD", str(busybox_tree), check=False)
    assert r.returncode != 0 and "already running" in r.stderr and r.stderr.count("\n") == 1
    r = run_nsdash("spawn", "--detach", "--register=yes", "-M", machine_name + "-r", "-bD", str(busybox_tree))
    if r.returncode == 0:  # a host with machined: fine, then stop it
        run_nsdash("terminate", machine_name + "-r")
    else:
        assert "machined" in r.stderr and r.stderr.count("\n") == 1
        assert gone(machine_name + "-r")


# ---------------------------------------------------------------- control socket


def _raw(name: str):
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(str(st.machine_dir(name) / st.CONTROL))
    f = s.makefile("rb")
    return s, f


def test_malformed_messages_get_errors_and_the_supervisor_stays_up(detached, busybox_tree, machine_name):
    detached("-bD", str(busybox_tree))
    s, f = _raw(machine_name)

    def ask(data: bytes) -> dict:
        s.sendall(data)
        return json.loads(f.readline())

    assert ask(b'{"op":"status"}\n')["error"] == "out-of-order"
    assert ask(b'{"op":"hello","version":99}\n')["error"] == "version"
    assert ask(b'{"op":"hello","version":1,"id":"h"}\n') == {"ok": True, "id": "h", "version": 1,
                                                              "machine": machine_name, "bus_call": True}
    assert ask(b'{"op":"hello","version":1}\n')["error"] == "out-of-order"
    assert ask(b"\x00\xff garbage\n")["error"] == "malformed"
    assert ask(b"[1,2,3]\n")["error"] == "malformed"
    assert ask(b'{"op":"format"}\n')["error"] == "unknown-op"
    assert ask(b'{"op":"kill","signal":999}\n')["error"] == "malformed"
    assert ask(b"x" * 200_000 + b"\n")["error"] == "oversized"
    assert ask(b'{"op":"status","id":5}\n')["status"]["name"] == machine_name  # still in sync
    s.sendall(b'{"op":"poweroff"')  # truncated: the connection closes mid-request
    s.close()
    s, f = _raw(machine_name)
    assert ask(b'{"op":"hello","version":1}\n')["ok"]
    s.sendall(b'{"op":"attach"}\nZ\0\0\0\0')  # then an unknown frame type
    assert json.loads(f.readline())["ok"]
    rest = f.read()  # the supervisor reports the bad frame and closes this connection only
    assert b"bad-frame" in rest
    s.close()
    assert client.status(machine_name)["state"] == "running"


def test_non_root_peers_are_refused(detached, busybox_tree, machine_name):
    detached("-bD", str(busybox_tree))
    path = st.machine_dir(machine_name) / st.CONTROL
    assert (path.stat().st_mode & 0o777) == 0o600

    def as_nobody() -> str:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                os.setgid(65534)
                os.setuid(65534)
                import socket

                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(5)
                try:
                    s.connect(str(path))
                    s.sendall(b'{"op":"hello","version":1}\n{"op":"terminate"}\n')
                    f = s.makefile("rb")
                    result = f.readline().decode()
                    s.settimeout(0.5)
                    with contextlib.suppress(OSError):
                        result += f.readline().decode()  # nothing more comes: terminate is ignored
                except OSError as e:
                    result = f"oserror {e.errno}"
                os.write(w, result.encode())
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            out = f.read().decode()
        os.waitpid(pid, 0)
        return out

    import errno

    assert as_nobody() == f"oserror {errno.EACCES}"  # the socket's mode keeps others out
    os.chmod(path, 0o666)  # ... and SO_PEERCRED still refuses them if the mode were wrong
    try:
        reply = as_nobody()
    finally:
        os.chmod(path, 0o600)
    assert json.loads(reply.splitlines()[0])["error"] == "permission-denied"
    assert len(reply.splitlines()) == 1  # no answer to terminate: it was never read
    assert client.status(machine_name)["state"] == "running"


def _window_size(pid: int | None) -> tuple[int, int] | None:
    """(rows, columns) of PID's terminal on its stdin: the machine's console as its init sees it."""
    if pid is None:
        return None
    try:
        fd = os.open(f"/proc/{pid}/fd/0", os.O_RDONLY | os.O_NOCTTY)
    except OSError:  # (gone, or not yet set up)
        return None
    try:
        rows, cols = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, bytes(8)))[:2]
    finally:
        os.close(fd)
    return rows, cols


def test_many_attachers_and_window_size(detached, busybox_tree, machine_name):
    detached("-D", str(busybox_tree), "/bin/sh", "-c", "while read l; do stty size; done")
    a = client.attach(machine_name, rows=30, cols=100, replay=0)
    b = client.attach(machine_name, replay=0)
    try:
        a.resize(41, 133)
        # a's resize and b's input come on two sockets, in no set order: the size first
        wait_for(lambda: _window_size(leader_of(machine_name)) == (41, 133), what="the console's new size")
        b.send(b"go\n")
        for session in (a, b):
            out = b""
            deadline = time.monotonic() + 10
            while b"41 133" not in out:
                assert time.monotonic() < deadline, out
                got = session.read(0.2)
                assert got is not None
                out += got[0]
    finally:
        a.close()
    wait_for(lambda: client.status(machine_name)["attached"] == 1, what="a's detach to be seen")
    b.close()
    assert run_nsdash("terminate", machine_name).returncode == 0


# ---------------------------------------------------------------- Debian (systemd as init)


def test_debian_boots_detached_and_powers_off(detached, debian_cache, machine_name):
    detached("-xbD", str(debian_cache))
    wait_for(lambda: "login:" in console_log(machine_name), timeout=60, what="systemd's getty prompt")
    s = client.status(machine_name)
    assert s["init"] == "systemd"
    r = run_nsdash("list", "--no-legend")
    row = next(line for line in r.stdout.splitlines() if line.startswith(machine_name))
    assert row.split()[3:5] == ["debian", "12"]
    r = run_nsdash("shell", machine_name, "/bin/sh", "-c", "systemctl is-system-running --wait; exit 5")
    assert r.returncode == 5
    assert r.stdout.strip() in ("running", "degraded")
    t0 = time.monotonic()
    assert run_nsdash("poweroff", machine_name).returncode == 0
    assert gone(machine_name) and time.monotonic() - t0 < 20


# ---------------------------------------------------------------- the real systemd-machined


def test_nested_machine_is_registered_with_the_real_machined(detached, debian_tree, machine_name):
    """Boot Debian (systemd PID 1, machined on its bus), run nsdash inside, check machinectl."""
    import sysconfig

    from conftest import REPO

    site = sysconfig.get_paths()["purelib"]
    detached("-bD", str(debian_tree), f"--bind-ro={REPO}:/opt/nsdash", f"--bind-ro={site}:/opt/site")
    wait_for(lambda: "login:" in console_log(machine_name), timeout=60, what="the outer machine's getty")

    def inside(script: str, timeout: float = 60) -> str:
        r = run_nsdash("shell", machine_name, "/bin/sh", "-c",
                       "export PYTHONPATH=/opt/nsdash:/opt/site; cd /; " + script, timeout=timeout)
        assert r.returncode == 0, (script, r.stdout, r.stderr)
        return r.stdout

    inside("python3 -m nsdash spawn --detach --register=yes -xbD / -M inner")
    listed = inside("machinectl list --no-legend")
    assert listed.split()[:3] == ["inner", "container", "nsdash"], listed
    status = inside("machinectl --no-pager status inner")
    assert "Service: nsdash; class container" in status and "Root: /" in status
    leader = int(status.split("Leader: ")[1].split()[0])
    ps_shows = ("for i in $(seq 100); do ps -o machine= -p {pid} | grep -qx inner && exit 0; sleep 0.1; done; "
                "ps -eo pid,machine,cgroup,comm; ls -l /run/systemd/machines; exit 1")
    inside(ps_shows.format(pid=leader))  # ps -o machine reads machined's records

    inside("python3 -m nsdash reboot inner")  # re-registers the new leader: no "already exists"
    status = inside("machinectl --no-pager status inner")
    new_leader = int(status.split("Leader: ")[1].split()[0])
    assert new_leader != leader
    inside("sleep 4; " + ps_shows.format(pid=new_leader))  # still registered once the old boot's events settled
    inner = json.loads(inside("python3 -m nsdash status -o json inner"))
    assert inner["state"] == "running" and inner["boot"] == 2 and inner["registered"] is True

    # A run in the terminal (no supervisor) registers too, as systemd-nspawn's does, and unregisters at exit.
    out = inside("python3 -m nsdash spawn -q --register=yes -xD / -M fg sleep 3 </dev/null & pid=$!; "
                 "for i in $(seq 50); do machinectl list --no-legend | grep -q '^fg ' && break; sleep 0.1; done; "
                 "machinectl list --no-legend; wait $pid; echo rc=$?; echo ---; machinectl list --no-legend")
    during, after = out.split("---")
    assert "rc=0" in during and any(line.split()[:3] == ["fg", "container", "nsdash"]
                                    for line in during.splitlines()), out
    assert "fg" not in after.split(), out

    # A machine another manager registered is listed too, marked with its service.
    # (machined wants the leader in a unit of its own, hence systemd-run.)
    out = inside("systemd-run -q --unit=othermgr-leader sleep 60; "
                 "pid=$(systemctl show -p MainPID --value othermgr-leader); "
                 "busctl call org.freedesktop.machine1 /org/freedesktop/machine1 "
                 "org.freedesktop.machine1.Manager RegisterMachine sayssus other 0 othermgr container $pid / >&2; "
                 "python3 -m nsdash list -o json; echo ---; python3 -m nsdash list; "
                 "systemctl stop othermgr-leader")
    listed_json, listed_text = out.split("---")
    others = [m for m in json.loads(listed_json) if m["machine"] == "other"]
    assert others and others[0]["service"] == "othermgr" and others[0]["class"] == "container", out
    assert any(line.split()[:3] == ["other", "container", "othermgr"] for line in listed_text.splitlines()), out

    inside("machinectl poweroff inner")  # machined signals our leader; the supervisor winds down
    inside("for i in $(seq 100); do [ -e /run/nsdash/machines/inner ] || break; sleep 0.1; done; "
           "test ! -e /run/nsdash/machines/inner")
    assert inside("machinectl list --no-legend").strip() == ""
    assert run_nsdash("poweroff", machine_name).returncode == 0


def test_start_boots_an_image_by_name_and_list_images_shows_it(busybox_tree, machine_name):
    link = Path("/var/lib/machines") / machine_name
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(busybox_tree)
    try:
        r = run_nsdash("list-images")
        assert any(line.split()[:2] == [machine_name, "directory"] for line in r.stdout.splitlines())
        r = run_nsdash("start", machine_name)
        assert r.returncode == 0, r.stderr
        s = client.status(machine_name)
        assert s["boot_mode"] is True and s["root"] == str(link)
        assert run_nsdash("poweroff", machine_name).returncode == 0
    finally:
        teardown_machine(machine_name)
        link.unlink()


def test_private_network_shows_interface_and_addresses(detached, busybox_tree, machine_name):
    """-n addresses host0 from nsdash's pool; an address added inside shows as well."""
    from nsdash.launcher import network

    detached("-n", "-bD", str(busybox_tree))
    lease = network.lease_of(machine_name)
    guest, guest6 = str(lease.guest.ip), str(lease.guest6.ip)
    r = run_nsdash("shell", machine_name, "/bin/sh", "-c", "ip addr add 10.77.0.2/24 dev host0")
    assert r.returncode == 0, r.stderr
    iface = client.status(machine_name)["netif"][0]
    assert iface.startswith("ve-") and os.path.exists(f"/sys/class/net/{iface}")
    text = run_nsdash("status", machine_name).stdout
    assert f"Iface: {iface}" in text, text
    assert "Address: " in text and guest in text and "10.77.0.2" in text, text
    assert "Network: nsdash:" in text
    row = next(x for x in run_nsdash("list").stdout.splitlines() if x.startswith(machine_name))
    assert row.split()[5] in (guest + "…", "10.77.0.2…")  # the first of three
    listed = json.loads(run_nsdash("list", "-o", "json").stdout)
    assert set(next(m for m in listed if m["machine"] == machine_name)["addresses"]) == {guest, "10.77.0.2", guest6}
    assert run_nsdash("poweroff", machine_name).returncode == 0
    assert not os.path.exists(f"/sys/class/net/{iface}")
