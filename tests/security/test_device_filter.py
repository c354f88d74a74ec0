"""The device filter on cgroup2 (a BPF_PROG_TYPE_CGROUP_DEVICE program), attacked for real as root.

This host is hybrid: the v1 devices whitelist denies too, so the BPF path is
proved alone by a process in a fresh cgroup2 cgroup whose v1 devices cgroup
allows everything, and by a container started on a pure-cgroup2 layout (no v1
hierarchy at all), where CAP_MKNOD is kept as systemd-nspawn keeps it.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyseccomp
import pytest
from _forked import in_child
from _spawnhelp import run_spec
from conftest import teardown_machine, wait_for

from nsdash.launcher import cgroup as cgmod
from nsdash.launcher import device_filter
from nsdash.launcher.container import Container
from nsdash.launcher.plan import CAPABILITIES
from nsdash.launcher.spec import ContainerSpec
from nsdash.machines import state as st
from nsdash.system import bpf, cgroupfs

HOST = cgroupfs.detect()
pytestmark = pytest.mark.skipif(HOST.unified is None, reason="needs cgroup2 (unified or hybrid host)")

# Nodes the policy refuses, and whose drivers would not say EPERM to root themselves
# (so an EPERM is the filter's): the loop device, /dev/kmsg opened write-only, loop-control.
DENIED = (("loop0", "b", 7, 0, os.O_RDONLY), ("kmsg", "c", 1, 11, os.O_WRONLY),
          ("loopctl", "c", 10, 237, os.O_RDONLY))
ALLOWED = (("null", "c", 1, 3, os.O_RDWR), ("zero", "c", 1, 5, os.O_RDONLY), ("urandom", "c", 1, 9, os.O_RDONLY))


def pure_v2_layout() -> cgroupfs.Layout:
    """This host's cgroup2 hierarchy seen as a unified host: no v1 controllers at all."""
    assert HOST.unified is not None
    layout = cgroupfs.detect(HOST.unified)
    assert layout.kind == "unified" and not layout.v1
    return layout


def program_alive(prog_id: int) -> bool:
    try:
        os.close(bpf.prog_get_fd_by_id(prog_id))
        return True
    except FileNotFoundError:
        return False


def run_container(spec: ContainerSpec, layout: cgroupfs.Layout | None = None, timeout: float = 20.0,
                  on_ready: Callable[[Container], None] | None = None) -> tuple[int | str, str]:
    """run_spec, with how it ended as the exit status or the outcome's kind ("poweroff", ...)."""
    outcome, text = run_spec(spec, cgroup_layout=layout, timeout=timeout, on_ready=on_ready)
    return (outcome.status if outcome.kind == "exited" else outcome.kind), text


# Each line: "WHAT ok" or "WHAT err: MESSAGE".  /dev is the container's own tmpfs (mknod works
# there); /tmp is mounted nodev, so the nodes the host made for the test wait in /root.
# /dev/console is a symlink to pts/0, the console; a new PTY from /dev/ptmx is pts/1.
PROBE = r"""
try() { what=$1; shift; if err=$("$@" 2>&1); then echo "$what ok"; else echo "$what err: $err"; fi; }
try null sh -c 'echo x > /dev/null'
try zero sh -c 'test "$(head -c 4 /dev/zero | wc -c)" = 4'
try urandom sh -c 'test "$(head -c 16 /dev/urandom | wc -c)" = 16'
try tty sh -c 'exec 3<>/dev/tty'
try console sh -c 'exec 3<>/dev/console'
echo "console-major $(stat -L -c %t /dev/console)"
try ptmx sh -c 'exec 3<>/dev/ptmx'
try pts-of-ptmx sh -c 'exec 3<>/dev/ptmx; ls /dev/pts | grep -qx 1 && exec 4<>/dev/pts/1'
try mknod-null mknod /dev/n c 1 3
try open-null sh -c 'echo x > /dev/n && head -c 1 /dev/n'
try mknod-mem mknod /dev/xmem c 1 1
try mknod-loop mknod /dev/xloop b 7 0
try mknod-kmsg mknod /dev/xkmsg c 1 11
try open-mem head -c 1 /root/mem
try open-loop head -c 1 /root/loop0
try open-kmsg sh -c 'echo x > /root/kmsg'
try open-loopctl head -c 1 /root/loopctl
rm -f /dev/n
grep CapBnd /proc/self/status
"""


def make_nodes(directory: Path) -> None:
    """The nodes a hostile tree could bring along, made from the host where nothing filters."""
    for name, kind, major, minor in (("mem", "c", 1, 1), *((n, k, a, b) for n, k, a, b, _ in DENIED)):
        mode = 0o600 | (0o020000 if kind == "c" else 0o060000)
        os.mknod(directory / name, mode, os.makedev(major, minor))


def results(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        m = re.match(r"^(\S+) (ok|err: .*)$", line)
        if m:
            found[m.group(1)] = m.group(2)
    return found


def check_probe(text: str) -> None:
    got = results(text)
    for what in ("null", "zero", "urandom", "tty", "console", "ptmx", "mknod-null", "open-null"):
        assert got.get(what) == "ok", (what, text)
    # a fresh devpts node is locked until unlockpt(): EIO, from the driver, past the filter
    assert "Operation not permitted" not in got["pts-of-ptmx"], text
    assert "console-major 88" in text, text  # the console is a pts (136), and it opened
    for what in ("mknod-mem", "mknod-loop", "mknod-kmsg", "open-mem", "open-loop", "open-kmsg", "open-loopctl"):
        assert got.get(what, "").startswith("err:") and "Operation not permitted" in got[what], (what, text)
    bnd = int(re.search(r"CapBnd:\s+([0-9a-f]+)", text).group(1), 16)
    assert bnd & (1 << CAPABILITIES["CAP_MKNOD"]), "CAP_MKNOD was dropped"


# ---- (a) a real container on this (hybrid) host ------------------------------------

def test_container_uses_its_nodes_and_cannot_make_or_open_others(busybox_tree, machine_name):
    make_nodes(busybox_tree / "root")
    status, text = run_container(ContainerSpec(directory=busybox_tree, machine=machine_name,
                                               command=("/bin/sh", "-c", PROBE)))
    assert status == 0, text
    check_probe(text)


# ---- (b) the BPF program alone ---------------------------------------------------

def test_bpf_program_alone_denies_what_the_v1_cgroup_allows(machine_name, tmp_path):
    for name, kind, major, minor, _ in DENIED + ALLOWED:
        os.mknod(tmp_path / name, (0o600 | (0o020000 if kind == "c" else 0o060000)), os.makedev(major, minor))
    cg = cgmod.MachineCgroup(machine_name, pure_v2_layout())  # cgroup2 only: no v1 whitelist is made
    cg.create()
    try:
        assert len(device_filter.attached(cg.main_dir)) == 1

        def probe() -> dict[str, object]:
            def open_all() -> dict[str, int]:
                out = {}
                for name, _, _, _, flags in DENIED + ALLOWED:
                    try:
                        os.close(os.open(tmp_path / name, flags | os.O_CLOEXEC))
                        out[name] = 0
                    except OSError as e:
                        out[name] = e.errno or -1
                return out

            def mknod_all(tag: str) -> dict[str, int]:
                out = {}
                for name, kind, major, minor, _ in DENIED + ALLOWED:
                    mode = 0o600 | (0o020000 if kind == "c" else 0o060000)
                    try:
                        os.mknod(tmp_path / f"{tag}-{name}", mode, os.makedev(major, minor))
                        out[name] = 0
                    except OSError as e:
                        out[name] = e.errno or -1
                return out

            before, made_before = open_all(), mknod_all("before")
            (cg.main_dir / "cgroup.procs").write_text("0")
            own = cgroupfs.own_cgroup()
            v1_devices = HOST.v1_path("devices", own.get("devices", "/"))
            return {"before": before, "after": open_all(), "own": own,
                    "made_before": made_before, "made_after": mknod_all("after"),
                    "v1": (v1_devices / "devices.list").read_text() if v1_devices else None}

        got = in_child(probe)
    finally:
        cg.remove()
    assert got["own"][""] == cg.path  # in the machine's cgroup2 cgroup ...
    if got["v1"] is not None:
        assert got["v1"].strip() == "a *:* rwm"  # ... while its v1 devices cgroup allows everything
    for name, *_ in DENIED:
        assert got["before"][name] != errno.EPERM, (name, got)  # the driver itself does not refuse root
        assert got["after"][name] == errno.EPERM, (name, got)
        assert got["made_before"][name] == 0 and got["made_after"][name] == errno.EPERM, (name, got)
    for name, *_ in ALLOWED:
        assert got["before"][name] == 0 and got["after"][name] == 0, (name, got)
        assert got["made_before"][name] == 0 and got["made_after"][name] == 0, (name, got)


def test_simulated_pure_v2_host_keeps_cap_mknod_and_the_program_denies(busybox_tree, machine_name):
    layout = pure_v2_layout()
    make_nodes(busybox_tree / "root")
    status, text = run_container(ContainerSpec(directory=busybox_tree, machine=machine_name,
                                               command=("/bin/sh", "-c", PROBE + "cat /proc/self/cgroup")),
                                 layout)
    assert status == 0, text
    check_probe(text)
    # no v1 machine cgroup was made: the container's v1 devices cgroup is the test's own (allow all)
    assert re.search(r"^\d+:devices:/$", text, re.M), text
    assert not (HOST.v1_path("devices", cgmod.scope_path(machine_name)) or Path("/nonexistent")).exists()


def test_debian_boots_on_a_pure_v2_layout_with_only_the_program_filtering(debian_cache, machine_name):
    # systemd 252 as PID 1 opens its console, /dev/null, /dev/urandom, /dev/kmsg (refused: it copes)
    # and makes its own nodes: it must reach READY=1 and power off with the BPF filter alone.
    status, text = run_container(ContainerSpec(directory=debian_cache, machine=machine_name, boot=True,
                                               ephemeral=True), pure_v2_layout(), timeout=60,
                                 on_ready=lambda c: c.signal(signal.SIGRTMIN + 4))  # poweroff
    assert status == "poweroff", text[-3000:]
    assert "Welcome to" in text and ("Powering off" in text or "System Power Off" in text), text[-3000:]


def test_where_bpf_is_refused_a_pure_v2_host_drops_cap_mknod(busybox_tree, machine_name):
    # nsdash inside another container whose seccomp filter refuses bpf(2): no device program can
    # be loaded, so without a v1 whitelist the container must not create device nodes at all.
    def nested() -> dict[str, object]:
        flt = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
        flt.add_rule(pyseccomp.ERRNO(errno.EPERM), "bpf")
        flt.load()
        cgmod._program.clear()  # forget the program this test process may have loaded already
        with tempfile.TemporaryFile() as err:
            saved = os.dup(2)
            os.dup2(err.fileno(), 2)
            try:
                status, text = run_container(ContainerSpec(
                    directory=busybox_tree, machine=machine_name,
                    command=("/bin/sh", "-c", "grep CapBnd /proc/self/status; mknod /tmp/n c 1 3 && echo MADE")),
                    pure_v2_layout())
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            err.seek(0)
            warning = err.read().decode()
        return {"status": status, "text": text, "error": str(cgmod.device_filter_error), "warning": warning}

    got = in_child(nested)
    assert "Operation not permitted" in got["error"], got
    # Started anyway, as systemd-nspawn does, but the user is told in one line, with the way out.
    assert got["warning"].startswith("nsdash: warning: no device filter on this host"), got
    assert got["warning"].count("\n") == 1 and "use -U" in got["warning"], got
    bnd = int(re.search(r"CapBnd:\s+([0-9a-f]+)", got["text"]).group(1), 16)
    assert not bnd & (1 << CAPABILITIES["CAP_MKNOD"]) and "MADE" not in got["text"], got


# ---- (c) attached for the machine's life, gone with its cgroup ------------------------

def _machine_program(name: str) -> tuple[Path, int]:
    assert HOST.unified is not None
    d = HOST.unified / cgmod.scope_path(name).lstrip("/")
    ids = device_filter.attached(d)
    assert len(ids) == 1, ids
    fd = bpf.prog_get_fd_by_id(ids[0])
    try:
        prog_type, prog_id, name_ = bpf.prog_info(fd)
    finally:
        os.close(fd)
    assert prog_type == bpf.BPF_PROG_TYPE_CGROUP_DEVICE and name_ == device_filter.PROGRAM_NAME
    return d, prog_id


def test_program_is_attached_for_the_machines_life_and_gone_with_its_cgroup(busybox_tree, machine_name,
                                                                              detached):
    detached("-D", str(busybox_tree), "/bin/sleep", "300")
    d, prog_id = _machine_program(machine_name)
    time.sleep(0.3)
    assert _machine_program(machine_name) == (d, prog_id)  # still the one, while it runs
    teardown_machine(machine_name)
    assert not d.exists()
    wait_for(lambda: not program_alive(prog_id), timeout=10, what="the program to be released")


def test_program_outlives_a_killed_supervisor(busybox_tree, machine_name, reaper, detached):
    # BPF_PROG_ATTACH: the cgroup, not the launcher's fd, keeps the filter in place.
    detached("-D", str(busybox_tree), "/bin/sleep", "300")
    d, prog_id = _machine_program(machine_name)
    s = st.read_state(st.machine_dir(machine_name))
    assert s is not None
    os.kill(s.supervisor, signal.SIGKILL)
    wait_for(lambda: not st.supervisor_alive(st.machine_dir(machine_name)), timeout=10, what="supervisor gone")
    assert (d / "cgroup.procs").read_text().split(), "the machine should still run"
    assert _machine_program(machine_name) == (d, prog_id)
    teardown_machine(machine_name)  # cleans the orphan: its cgroup, and with it the program
    assert not d.exists()
    wait_for(lambda: not program_alive(prog_id), timeout=10, what="the program to be released")


def test_a_stale_program_on_a_reused_cgroup_is_replaced(machine_name):
    cg = cgmod.MachineCgroup(machine_name, pure_v2_layout())
    cg.create()
    try:
        first = device_filter.attached(cg.main_dir)
        fd = device_filter.load(device_filter.parse_rules(["c 1:3 rwm"]))  # another program there
        dfd = os.open(cg.main_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            bpf.prog_attach(dfd, fd, bpf.BPF_CGROUP_DEVICE, bpf.BPF_F_ALLOW_MULTI)
        finally:
            os.close(fd)
            os.close(dfd)
        assert len(device_filter.attached(cg.main_dir)) == 2
        cg.create()  # a new run on the same (empty) cgroup
        assert device_filter.attached(cg.main_dir) == first
    finally:
        cg.remove()
