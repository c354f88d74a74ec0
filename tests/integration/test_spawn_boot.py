"""Booting real trees (BusyBox init, Debian's systemd) and the terminal bridge of `nsdash spawn`."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import time
from pathlib import Path

import pytest
from _spawnhelp import leader_of, run_spec
from conftest import NSDASH, REPO, wait_for

from nsdash.launcher.container import Container
from nsdash.launcher.spec import ContainerSpec

SIGRTMIN = signal.SIGRTMIN


def boot_spec(tree: Path, name: str, **kw) -> ContainerSpec:
    return ContainerSpec(directory=tree, machine=name, boot=True, **kw)


# ---------------------------------------------------------------- BusyBox init

def test_busybox_boot_to_login_then_poweroff(busybox_tree, machine_name):
    mounts: list[str] = []

    def poweroff_at_login(c: Container, out: bytes) -> None:
        if b"login:" in out and not getattr(c, "_sent", False):
            c._sent = True  # type: ignore[attr-defined]
            mounts.append(Path(f"/proc/{c.leader}/mounts").read_text())
            c.signal(signal.SIGUSR2)  # BusyBox init: SIGUSR2 = poweroff

    outcome, text = run_spec(boot_spec(busybox_tree, machine_name), on_output=poweroff_at_login)
    # rcS ran (its tmpfs on /tmp) and said so on the console, but BusyBox's getty starts with
    # tcflush(TCIOFLUSH) on the console, which on a PTY discards what the master has not read
    # yet: a reader not scheduled in time loses rcS's line (seen at load 10).  The machine's
    # name is in getty's own prompt.
    assert any(line.split()[1:3] == ["/tmp", "tmpfs"] for line in mounts[0].splitlines())
    assert f"BusyBox init is up on {machine_name}" in text or "BusyBox init is up" not in text
    assert f"{machine_name} login:" in text
    assert "Requesting system poweroff" in text
    assert outcome.kind == "poweroff"


def test_busybox_reboot_is_reported(busybox_tree, machine_name):
    def reboot_at_login(c: Container, out: bytes) -> None:
        if b"login:" in out and not getattr(c, "_sent", False):
            c._sent = True  # type: ignore[attr-defined]
            c.signal(signal.SIGTERM)  # BusyBox init: SIGTERM = reboot

    outcome, _ = run_spec(boot_spec(busybox_tree, machine_name), on_output=reboot_at_login)
    assert outcome.kind == "reboot"


# ---------------------------------------------------------------- Debian's systemd

def test_debian_boots_reports_ready_and_powers_off(debian_cache, machine_name):
    marks: dict[str, float] = {}

    def poweroff_when_ready(c: Container, out: bytes) -> None:
        if c.ready and "sent" not in marks:
            marks["sent"] = time.monotonic()
            c.signal(SIGRTMIN + 4)  # systemd: SIGRTMIN+4 = poweroff

    spec = boot_spec(debian_cache, machine_name, ephemeral=True)
    with_ready = []

    def hook(c: Container, out: bytes) -> None:
        c.read_notify()
        if c.ready and not with_ready:
            with_ready.append(True)
        poweroff_when_ready(c, out)

    outcome, text = run_spec(spec, on_output=hook, timeout=60)
    assert "Welcome to" in text and "Debian GNU/Linux 12" in text
    assert "Detected virtualization systemd-nspawn" in text
    assert with_ready == [True]
    assert "Powering off." in text or "System Power Off" in text
    assert outcome.kind == "poweroff"


def test_debian_clean_shutdown_with_kill_signal_and_reboot(debian_cache, machine_name):
    spec = boot_spec(debian_cache, machine_name, ephemeral=True)
    state = {"n": 0}

    def hook(c: Container, out: bytes) -> None:
        c.read_notify()
        if c.ready and not state["n"]:
            state["n"] = 1
            c.signal(signal.SIGINT)  # systemd: SIGINT = ctrl-alt-del = reboot

    outcome, _ = run_spec(spec, on_output=hook, timeout=60)
    assert outcome.kind == "reboot"
    # terminate(): SIGRTMIN+3, systemd's orderly halt; inside a container that ends as a poweroff
    state["n"] = 0

    def halt(c: Container, out: bytes) -> None:
        c.read_notify()
        if c.ready and not state["n"]:
            state["n"] = 1
            c.terminate()

    outcome, _ = run_spec(spec, on_output=halt, timeout=60)
    assert outcome.kind == "poweroff"


# ---------------------------------------------------------------- the terminal bridge

class Terminal:
    """`nsdash spawn` running under a real pseudo-terminal, as a user's shell runs it."""

    def __init__(self, *args: str) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.chdir(REPO)
            os.execv(NSDASH[0], [*NSDASH, "spawn", *args])
        self.out = b""
        self.code: int | None = None

    def _pump(self, timeout: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                return
            # BusyBox's line editor asks where the cursor is and waits for the answer.
            if b"\x1b[6n" in data:
                os.write(self.fd, b"\x1b[1;1R")
            self.out += data

    def read_until(self, needle: bytes, timeout: float = 20.0) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.out:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{needle!r} not seen; got {self.out[-1500:]!r}")
            self._pump(0.05)
        return self.out

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def wait(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.code = os.waitstatus_to_exitcode(status)
                self._drain()
                return self.code
            self._pump(0.05)
        raise TimeoutError(f"nsdash did not exit; output {self.out[-1500:]!r}")

    def _drain(self) -> None:
        """What nsdash wrote before it exited and this end has not read yet (its last line:
        'Container ... terminated', seen missing under load): the PTY keeps it after the exit,
        until EIO once no slave is left open."""
        while True:
            before = len(self.out)
            try:
                ready, _, _ = select.select([self.fd], [], [], 0)
                if not ready:
                    return
                self.out += os.read(self.fd, 65536)
            except OSError:
                return
            if len(self.out) == before:
                return

    def close(self) -> None:
        """Stop nsdash the way a user would (SIGTERM, twice), so it tears its container down."""
        if self.fd < 0:
            return
        for _ in range(2):
            if self.code is not None:
                break
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.wait(timeout=10)
            except TimeoutError:
                continue
        if self.code is None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)
        self.fd = -1


@pytest.fixture
def terminal():
    made: list[Terminal] = []

    def start(*args: str) -> Terminal:
        made.append(Terminal(*args))
        return made[-1]

    yield start
    for t in made:
        t.close()


def test_interactive_shell_through_the_pty_bridge(terminal, busybox_tree, machine_name):
    t = terminal("-D", str(busybox_tree), "/bin/sh")
    t.read_until(b"Press ^] three times within 1s to kill container.")
    t.read_until(b"# ")
    t.send(b"echo answer-$((6*7)); tty; exit 3\r")
    out = t.read_until(b"answer-42")
    assert t.wait() == 3
    assert b"/dev/pts/0" in t.out  # the console: pts/0 of the machine's devpts, as under systemd-nspawn
    assert f"Container {machine_name} failed with error code 3.".encode() in t.out
    assert out.count(b"answer-42") >= 1


def test_window_size_reaches_the_container(terminal, busybox_tree):
    import fcntl
    import struct
    import termios

    t = terminal("-q", "-D", str(busybox_tree), "/bin/sh")
    fcntl.ioctl(t.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
    t.read_until(b"# ")
    t.send(b"stty size; exit\r")
    t.read_until(b"33 111")
    assert t.wait() == 0


def test_three_escapes_kill_the_container(terminal, busybox_tree, machine_name):
    t = terminal("-D", str(busybox_tree), "/bin/sleep", "100")
    t.read_until(b"Press ^]")
    wait_for(lambda: leader_of(machine_name))
    started = time.monotonic()
    t.send(b"\x1d\x1d\x1d")
    code = t.wait(timeout=10)
    assert time.monotonic() - started < 5
    assert code == 128 + signal.SIGKILL
    assert f"Container {machine_name} terminated by signal SIGKILL.".encode() in t.out


def test_reboot_restarts_in_the_same_process_then_poweroff(terminal, busybox_tree, machine_name):
    t = terminal("-D", str(busybox_tree), "-b")
    t.read_until(b"login:")
    first = leader_of(machine_name)
    uuid_before = _env_of(first)["container_uuid"]
    os.kill(first, signal.SIGTERM)  # BusyBox init reboots on SIGTERM
    t.read_until(f"Container {machine_name} is being rebooted.".encode())
    second = wait_for(lambda: (p := leader_of(machine_name)) and p != first and p)
    deadline = time.monotonic() + 20
    while t.out.count(b"login:") < 2 and time.monotonic() < deadline:
        t._pump(0.05)
    assert t.out.count(b"login:") == 2
    assert _env_of(second)["container_uuid"] == uuid_before  # the same machine after its reboot
    os.kill(second, signal.SIGUSR2)  # and powers off on SIGUSR2
    assert t.wait() == 0
    assert f"Container {machine_name} has been shut down.".encode() in t.out


def test_each_boot_gets_its_own_boot_id(terminal, busybox_tree, machine_name):
    host_boot_id = Path("/proc/sys/kernel/random/boot_id").read_text()
    t = terminal("-D", str(busybox_tree), "-b")
    t.read_until(b"login:")
    first = leader_of(machine_name)
    first_id = _boot_id_of(first)
    os.kill(first, signal.SIGTERM)  # BusyBox init reboots on SIGTERM: the same nsdash starts it again
    t.read_until(f"Container {machine_name} is being rebooted.".encode())
    second = wait_for(lambda: (p := leader_of(machine_name)) and p != first and p)
    deadline = time.monotonic() + 20
    while t.out.count(b"login:") < 2 and time.monotonic() < deadline:
        t._pump(0.05)  # its mounts are made: PID 1 is in the cgroup before it sets them up
    assert t.out.count(b"login:") == 2
    second_id = _boot_id_of(second)
    for boot_id in (first_id, second_id):
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\n", boot_id)
        assert boot_id != host_boot_id
    assert first_id != second_id
    # read-only inside, like the kernel's own file
    mountinfo = Path(f"/proc/{second}/mountinfo").read_text()
    assert re.search(r" /proc/sys/kernel/random/boot_id ro,", mountinfo)
    os.kill(second, signal.SIGUSR2)
    assert t.wait() == 0


def _boot_id_of(pid: int) -> str:
    """The boot ID the container sees (its own /proc, reached through its root)."""
    return Path(f"/proc/{pid}/root/proc/sys/kernel/random/boot_id").read_text()


def _env_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_reboot_exit_returns_133(terminal, busybox_tree, machine_name):
    t = terminal("-D", str(busybox_tree), "-b", "--reboot=exit")
    t.read_until(b"login:")
    os.kill(leader_of(machine_name), signal.SIGTERM)
    assert t.wait() == 133


def test_sigterm_to_nsdash_stops_the_container_with_its_kill_signal(terminal, busybox_tree, machine_name):
    t = terminal("-D", str(busybox_tree), "/bin/sleep", "100")
    t.read_until(b"Press ^]")
    wait_for(lambda: leader_of(machine_name))
    os.kill(t.pid, signal.SIGTERM)
    assert t.wait() == 128 + signal.SIGKILL  # no --boot: the default kill signal is SIGKILL


def test_read_only_console_shows_output_but_sends_no_input(terminal, busybox_tree):
    t = terminal("-q", "--console=read-only", "-D", str(busybox_tree), "/bin/sh", "-c",
                 "echo shown-$((1+1)); read line; echo got-$line")
    t.read_until(b"shown-2")
    t.send(b"forty$((40+2))\r")
    time.sleep(0.5)
    assert b"got-forty42" not in t.out  # nothing typed reached the container
    t.close()


def test_passive_console_shows_nothing(terminal, busybox_tree):
    t = terminal("--console=passive", "-D", str(busybox_tree), "/bin/sh", "-c", "echo hidden-$((2+3))")
    assert t.wait() == 0
    assert b"hidden-5" not in t.out
