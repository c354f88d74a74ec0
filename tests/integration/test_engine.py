"""The one boot engine, for real: sd_notify, the guest's state, --wait, init-aware stops,
the console's last words, the machine ID, and a terminal-run machine reachable by the verbs."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import socket
import sys
import time

import pytest
from conftest import console_log, run_nsdash, teardown_machine, wait_for

from nsdash.machines import state as st

# 200 sd_notify messages with blocking sends: if nobody drained the socket, the 11th
# would block for good (net.unix.max_dgram_qlen is 10 here), and "flood-done" never comes.
FLOOD = ("import os, socket, sys, time\n"
         "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
         "path = os.environ['NOTIFY_SOCKET']\n"
         "for i in range(200):\n"
         "    s.sendto(b'STATUS=step %d\\nX_NEWER_SYSTEMD_KEY=%d' % (i, i), path)\n"
         "s.sendto(b'READY=1', path)\n"
         "print('flood-done', flush=True)\n"
         "time.sleep(float(sys.argv[1]))\n")

HANG = ("import os, socket, time\n"
        "socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'STATUS=waiting for the \\x1b[31mgodot unit',"
        " os.environ['NOTIFY_SOCKET'])\n"
        "print('hang-started', flush=True)\n"
        "time.sleep(600)\n")


def state_of(name: str) -> st.MachineState:
    s = st.read_state(st.machine_dir(name))
    assert s is not None, f"no state.json for {name}"
    return s


@pytest.fixture
def cleanup():
    names: list[str] = []
    yield names.append
    for name in names:
        teardown_machine(name)


# ---------------------------------------------------------------- sd_notify


def test_notify_flood_does_not_block_detached(debian_cache, machine_name, cleanup):
    cleanup(machine_name)
    r = run_nsdash("spawn", "--detach", "--wait", "--wait-timeout=30", "--notify-ready=yes", "-q",
                   "-xD", str(debian_cache), "-M", machine_name, "python3", "-c", FLOOD, "600")
    assert r.returncode == 0, r.stderr
    s = wait_for(lambda: (x := state_of(machine_name)).status_text == "step 199" and x, timeout=20)
    assert s.state == "running"
    assert "flood-done" in wait_for(lambda: "flood-done" in console_log(machine_name) and console_log(machine_name))


def test_notify_flood_does_not_block_in_the_foreground(debian_cache, machine_name):
    r = run_nsdash("spawn", "-q", "-P", "-xD", str(debian_cache), "-M", machine_name,
                   "python3", "-c", FLOOD, "0", timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "flood-done"


# ---------------------------------------------------------------- the guest's state and --wait


def test_starting_until_ready_with_status_and_wait_fails_leaving_it_running(debian_cache, machine_name, cleanup):
    cleanup(machine_name)
    r = run_nsdash("spawn", "--detach", "--wait", "--wait-timeout=3", "--notify-ready=yes", "-q",
                   "-xD", str(debian_cache), "-M", machine_name, "python3", "-c", HANG)
    assert r.returncode != 0
    assert f"machine '{machine_name}' is not up after 3 s (state: starting)" in r.stderr
    assert "last status: waiting for the \\x1b[31mgodot unit" in r.stderr  # escaped, never raw
    assert "\x1b" not in r.stderr
    assert "hang-started" in r.stderr  # the console's last lines
    assert "left running for inspection" in r.stderr
    # Left running, visibly starting, with its STATUS line, in list, status and state.json.
    assert st.supervisor_alive(st.machine_dir(machine_name))
    s = state_of(machine_name)
    assert s.state == "starting" and s.status_text == "waiting for the \x1b[31mgodot unit"
    listed = run_nsdash("list", "--no-legend").stdout
    row = next(line for line in listed.splitlines() if line.split()[0] == machine_name)
    assert row.endswith("starting (waiting for the \\x1b[31mgodot unit)"), row
    status = run_nsdash("status", machine_name).stdout
    assert "State: starting, boot 1" in status and "Status: waiting for the \\x1b[31mgodot unit" in status
    as_json = json.loads(run_nsdash("list", "-o", "json").stdout)
    mine = next(m for m in as_json if m["machine"] == machine_name)
    assert mine["state"] == "starting" and mine["status_text"] == "waiting for the \x1b[31mgodot unit"


HUNG_UNIT = """[Unit]
Description=nsdash never finishes
DefaultDependencies=no
Before=multi-user.target

[Service]
Type=oneshot
ExecStart=/bin/sleep infinity
"""


def test_a_systemd_boot_hung_on_a_unit_stays_starting_and_wait_fails(debian_cache, machine_name, cleanup,
                                                                       tmp_path):
    """The acceptance's hung guest: a real systemd whose boot waits for a unit that never
    finishes never sends READY=1; `--wait` gives up with systemd's own STATUS= line (it
    names the job it waits for) and the console's tail, and leaves the machine up,
    visibly `starting` with that line in `list` and `status`."""
    unit = tmp_path / "nsdash-hang.service"
    unit.write_text(HUNG_UNIT)
    cleanup(machine_name)
    r = run_nsdash("spawn", "--detach", "--wait", "--wait-timeout=15", "-xbD", str(debian_cache), "-M", machine_name,
                   f"--bind-ro={unit}:/etc/systemd/system/nsdash-hang.service", "systemd.wants=nsdash-hang.service",
                   timeout=90)
    assert r.returncode != 0
    assert f"machine '{machine_name}' is not up after 15 s (state: starting)" in r.stderr, r.stderr
    assert "last status: User job nsdash-hang.service/start running" in r.stderr, r.stderr  # systemd's STATUS=
    assert "console, last lines:" in r.stderr and "debian login: " in r.stderr, r.stderr
    assert "left running for inspection" in r.stderr
    assert st.supervisor_alive(st.machine_dir(machine_name))
    s = state_of(machine_name)
    assert s.state == "starting" and (s.status_text or "").startswith("User job nsdash-hang.service/start"), s
    row = next(line for line in run_nsdash("list", "--no-legend").stdout.splitlines()
               if line.split()[0] == machine_name)
    assert "starting (User job nsdash-hang.service/start running" in row, row
    status = run_nsdash("status", machine_name).stdout
    assert "State: starting, boot 1" in status and "Status: User job nsdash-hang.service/start" in status, status
    jobs = run_nsdash("shell", machine_name, "/bin/systemctl", "list-jobs", "--no-legend", "--no-pager").stdout
    assert "nsdash-hang.service" in jobs, jobs  # the guest itself agrees: its boot is still running


def test_wait_succeeds_on_a_booted_debian_and_machine_id_is_the_guests(debian_cache, machine_name, cleanup):
    cleanup(machine_name)
    r = run_nsdash("spawn", "--detach", "--wait", "-xbD", str(debian_cache), "-M", machine_name)
    assert r.returncode == 0, r.stderr
    assert "and it is up" in r.stderr
    s = state_of(machine_name)
    assert s.state in st.UP_STATES  # READY=1 came (degraded if the guest's own bus reports failed units)
    tree_id = (debian_cache / "etc/machine-id").read_text().strip()
    inside = run_nsdash("shell", machine_name, "/bin/cat", "/etc/machine-id", "/run/host/container-uuid").stdout
    assert s.uuid == tree_id
    assert inside.split() == [tree_id, f"{tree_id[:8]}-{tree_id[8:12]}-{tree_id[12:16]}-{tree_id[16:20]}-{tree_id[20:]}"]
    listed = json.loads(run_nsdash("list", "-o", "json").stdout)
    assert next(m for m in listed if m["machine"] == machine_name)["uuid"] == tree_id
    virt = run_nsdash("shell", machine_name, "/usr/bin/systemd-detect-virt").stdout.strip()
    assert virt == "systemd-nspawn"
    assert os.path.islink(f"/proc/{s.leader}/root/dev/char/1:3")
    r = run_nsdash("poweroff", machine_name)
    assert r.returncode == 0, r.stderr
    assert not st.machine_dir(machine_name).exists()


def test_a_tree_without_machine_id_keeps_one_uuid_across_reboots(busybox_tree, machine_name, cleanup):
    cleanup(machine_name)
    (busybox_tree / "etc/machine-id").unlink(missing_ok=True)
    assert run_nsdash("spawn", "--detach", "-bD", str(busybox_tree), "-M", machine_name).returncode == 0
    first = state_of(machine_name).uuid
    inside = run_nsdash("shell", machine_name, "/bin/cat", "/run/host/container-uuid").stdout.strip()
    assert first and inside.replace("-", "") == first
    assert run_nsdash("reboot", machine_name).returncode == 0
    assert state_of(machine_name).boot == 2 and state_of(machine_name).uuid == first


def test_a_reboot_makes_its_run_files_anew_and_a_poweroff_leaves_no_entry(busybox_tree, machine_name, cleanup):
    # The last boot's run files (seccomp filter, notify socket) go with the entry's own files at
    # once (system/unlink.py); a reboot's close still removes them for its next boot to make.
    cleanup(machine_name)
    assert run_nsdash("spawn", "--detach", "-bD", str(busybox_tree), "-M", machine_name).returncode == 0
    entry = st.machine_dir(machine_name)
    assert (entry / "seccomp").exists()
    assert run_nsdash("reboot", machine_name).returncode == 0
    wait_for(lambda: state_of(machine_name).boot == 2 and state_of(machine_name).state == "running",
             what="the second boot running")
    assert (entry / "seccomp").exists() and (entry / "notify").exists()
    inside = run_nsdash("shell", machine_name, "/bin/echo", "filtered-shell")
    assert inside.returncode == 0 and "filtered-shell" in inside.stdout, inside.stderr
    assert run_nsdash("poweroff", machine_name).returncode == 0
    wait_for(lambda: not entry.exists(), what="the machine's entry removed")


# ---------------------------------------------------------------- stops


def test_busybox_poweroff_is_clean_and_the_console_is_drained(busybox_tree, machine_name, cleanup):
    cleanup(machine_name)
    assert run_nsdash("spawn", "--detach", "--wait", "-bD", str(busybox_tree), "-M", machine_name).returncode == 0
    assert state_of(machine_name).state == "running"  # BusyBox init never says READY=1: up once it runs
    log = st.machine_dir(machine_name) / st.CONSOLE_LOG
    fd = os.open(log, os.O_RDONLY)  # kept open: the entry is removed when the machine is gone
    try:
        r = run_nsdash("poweroff", machine_name)
        assert r.returncode == 0, r.stderr
        text = os.read(fd, 4 << 20).decode(errors="replace")
    finally:
        os.close(fd)
    # inittab's ::shutdown line, printed just before init powers off, reaches the log before the separator
    assert "nsdash-demo: shutting down" in text
    assert text.index("nsdash-demo: shutting down") < text.rindex("-- nsdash: poweroff")


def test_poweroff_of_a_payload_ignoring_sigterm_kills_it_and_says_so(busybox_tree, machine_name, cleanup):
    cleanup(machine_name)
    script = "trap '' TERM; echo ignoring; while :; do sleep 1; done"
    assert run_nsdash("spawn", "--detach", "-D", str(busybox_tree), "-M", machine_name,
                      "/bin/sh", "-c", script).returncode == 0
    wait_for(lambda: "ignoring" in console_log(machine_name))
    r = run_nsdash("poweroff", machine_name, timeout=60)
    assert r.returncode != 0
    assert f"machine '{machine_name}' did not power off within 15 s: killed" in r.stderr
    assert "Traceback" not in r.stderr
    wait_for(lambda: not st.machine_dir(machine_name).exists())


# ---------------------------------------------------------------- a machine run in the terminal


class Terminal:
    """`nsdash spawn` under a real pseudo-terminal."""

    def __init__(self, *args: str) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execv(sys.executable, [sys.executable, "-m", "nsdash", "spawn", *args])
        self.out = b""
        self.code: int | None = None

    def pump(self, timeout: float = 0.05) -> None:
        if select.select([self.fd], [], [], timeout)[0]:
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                return
            if b"\x1b[6n" in data:  # BusyBox's line editor asks where the cursor is
                os.write(self.fd, b"\x1b[1;1R")
            self.out += data

    def wait(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.code = os.waitstatus_to_exitcode(status)
                before = -1
                while before != len(self.out):  # what it wrote before exiting is still in the PTY
                    before = len(self.out)
                    self.pump(0.2)
                return self.code
            self.pump()
        raise AssertionError(f"nsdash spawn did not exit; output {self.out[-1500:]!r}")


def test_a_terminal_run_machine_is_reachable_by_the_verbs(busybox_tree, machine_name, cleanup):
    cleanup(machine_name)
    t = Terminal("-bD", str(busybox_tree), "-M", machine_name)
    try:
        deadline = time.monotonic() + 30
        while b"login:" not in t.out and time.monotonic() < deadline:
            t.pump()
        assert b"login:" in t.out, t.out[-1500:]
        status = run_nsdash("status", "-o", "json", machine_name)
        assert status.returncode == 0, status.stderr
        data = json.loads(status.stdout)
        assert data["state"] == "running" and data["foreground"] is True and data["leader"] > 1
        listed = run_nsdash("list", "--no-legend").stdout
        assert any(line.split()[0] == machine_name for line in listed.splitlines())
        assert run_nsdash("shell", machine_name, "/bin/echo", "inside").stdout.strip() == "inside"
        r = run_nsdash("poweroff", machine_name)
        assert r.returncode == 0, r.stderr
        assert t.wait() == 0
    finally:
        if t.code is None:
            os.kill(t.pid, signal.SIGKILL)
            os.waitpid(t.pid, 0)
        os.close(t.fd)
    assert b"nsdash-demo: shutting down" in t.out  # the last words reached the terminal too
    assert b"Container " + machine_name.encode() + b" has been shut down." in t.out


def test_a_systemd_guest_with_a_failed_unit_is_degraded(debian_cache, machine_name, cleanup):
    """Asked over the guest's own bus after READY=1 (and again when someone asks for the status)."""
    from nsdash.machines import client

    cleanup(machine_name)
    assert run_nsdash("spawn", "--detach", "--wait", "-xbD", str(debian_cache), "-M", machine_name).returncode == 0
    wait_for(lambda: client.status(machine_name)["state"] == "running", timeout=30, what="running")
    r = run_nsdash("shell", machine_name, "/usr/bin/systemd-run", "--unit=engine-fails", "/bin/false")
    assert r.returncode == 0, r.stderr
    # the health check runs after READY and again when a status finds its answer older than 5 s
    wait_for(lambda: client.status(machine_name)["state"] == "degraded", timeout=90, step=0.5, what="degraded")
    row = next(line for line in run_nsdash("list", "--no-legend").stdout.splitlines()
               if line.split()[0] == machine_name)
    assert "degraded" in row.split()[-2:]


# Only PID 1 is heard (systemd-nspawn hears only its inner child): a child of PID 1 sends
# READY=1 with a forged status, PID 1 one datagram longer than the bound, then a status of its own.
OTHERS = ("import os, signal, socket, time\n"
          "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})\n"
          "path = os.environ['NOTIFY_SOCKET']\n"
          "if os.fork() == 0:\n"
          "    socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'READY=1\\nSTATUS=forged by a child', path)\n"
          "    os._exit(0)\n"
          "os.wait()\n"
          "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
          "s.sendto(b'STATUS=too long\\nREADY=1\\n' + b'x' * 5000, path)\n"
          "s.sendto(b'STATUS=from PID 1', path)\n"
          "signal.sigwait({signal.SIGUSR1})\n"  # the host's forgeries are sent meanwhile
          "s.sendto(b'STATUS=again from PID 1', path)\n"
          "time.sleep(600)\n")


@pytest.mark.parametrize("users", [[], ["-U"], ["--private-users=pick"]], ids=["root", "U", "pick"])
def test_notify_is_heard_from_pid_1_alone(debian_cache, machine_name, cleanup, users):
    cleanup(machine_name)
    r = run_nsdash("spawn", "--detach", "--notify-ready=yes", "-q", *users,
                   "-xD", str(debian_cache), "-M", machine_name, "python3", "-c", OTHERS)
    assert r.returncode == 0, r.stderr
    s = wait_for(lambda: (x := state_of(machine_name)).status_text == "from PID 1" and x, timeout=20)
    assert s.state == "starting"  # neither the child's READY=1 nor the long datagram's counted
    # A host process that reaches the socket (root here) is not the guest either.
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.sendto(b"READY=1\nSTATUS=forged by the host", str(st.machine_dir(machine_name) / "notify"))
    sock.sendto(b"READY=1", str(st.machine_dir(machine_name) / "notify"))
    sock.close()
    assert s.leader is not None
    os.kill(s.leader, signal.SIGUSR1)  # PID 1's last word, after ours
    s = wait_for(lambda: (x := state_of(machine_name)).status_text == "again from PID 1" and x, timeout=20)
    assert s.state == "starting"
