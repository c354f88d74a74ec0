"""`nsdash trace`, `debug` and `profile` against real machines: BusyBox ones and a booted Debian.

Every test also checks that no tracer is left: no process of the machine has
a tracer (TracerPid) and no strace/gdb/perf process names the machine's
processes or cgroup.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nsdash.inside.debugging.pids import MachineProcesses
from nsdash.inside.debugging.strace import StraceRun
from nsdash.inside.target import resolve
from nsdash.monitor.sampler import raise_nofile_limit
from tests.conftest import NSDASH, REPO, TAG, run_nsdash, teardown_machine, wait_for

LOOP = "while :; do cat /etc/hostname >/dev/null; sleep 0.1; done"
SPIN = "#!/bin/sh\nwhile :; do :; done\n"


# ---------------------------------------------------------------- helpers

def tracers_of(name: str) -> list[str]:
    """What still traces or samples machine NAME: tracer PIDs of its processes, and host tools naming it."""
    found = []
    try:
        procs = MachineProcesses(resolve(name))
        host_pids = procs.host_pids()
        cgroup = procs.cgroup
    except Exception:
        return found
    for pid in host_pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        tracer = re.search(r"^TracerPid:\s+(\d+)", status, re.M)
        if tracer and tracer.group(1) != "0":
            found.append(f"{pid} traced by {tracer.group(1)}")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        tool = os.path.basename(argv[0].decode(errors="replace"))
        words = {w.decode(errors="replace") for w in argv}
        if tool in ("strace", "gdb", "perf") and (words & {str(p) for p in host_pids} or cgroup in words):
            found.append(f"{tool} {entry}")
    return found


def assert_nothing_left(name: str) -> None:
    wait_for(lambda: not tracers_of(name), timeout=10, what=f"the tracers of {name} to go")


@contextlib.contextmanager
def descriptors_past_fd_setsize() -> Iterator[None]:
    """Hold descriptors until the next one this process opens is numbered past select()'s FD_SETSIZE
    (1024), as in a dashboard on a busy host: it keeps a counter file open per cgroup."""
    raise_nofile_limit()  # what the dashboard's sampler does
    held: list[int] = []
    try:
        while not held or held[-1] < 1030:
            held.append(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))
        probe = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        os.close(probe)
        assert probe >= 1024, probe  # what is opened next (strace's pipes) is past FD_SETSIZE
        yield
    finally:
        for fd in held:
            os.close(fd)


def start_busybox(tree: Path, name: str, *command: str, extra: tuple[str, ...] = ()) -> None:
    r = run_nsdash("spawn", "--detach", *extra, "-M", name, "-D", str(tree), *command)
    assert r.returncode == 0, r.stderr


def trace_until(args: list[str], seen, timeout: float = 60) -> tuple[list[str], str, int]:
    """Run `nsdash trace ARGS` until SEEN(lines so far) holds, then Ctrl-C it (SIGINT) and collect all.

    Its output is read from the pipe as it comes, every whole line of each read: a buffered
    readline() takes one line per wake-up and leaves the rest unseen in its buffer, so under
    load (many lines per read) what was shown fell further and further behind.
    """
    p = subprocess.Popen([*NSDASH, "trace", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    lines: list[str] = []
    partial = b""
    try:
        assert p.stdout is not None and p.stderr is not None
        fd = p.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            deadline = time.monotonic() + timeout
            while not seen(lines):
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"trace never showed the line; got {lines[-20:]}"
                if sel.select(remaining):
                    chunk = os.read(fd, 65536)
                    assert chunk, f"trace ended early: {p.stderr.read().decode(errors='replace')}"
                    *whole, partial = (partial + chunk).split(b"\n")
                    lines += [line.decode(errors="replace") for line in whole]
        p.send_signal(signal.SIGINT)
        rest, err = p.communicate(timeout=30)
    except BaseException:
        p.kill()
        p.communicate()
        raise
    return (lines + (partial + rest).decode(errors="replace").splitlines(), err.decode(errors="replace"),
            p.returncode)


def forked_openers(lines: list[str], parent: int) -> set[int]:
    """PIDs that opened /etc/hostname and that PARENT's clone() returned, as the trace shows them.

    clone() returns the child's PID in the parent's namespace (the machine's): a
    trace in the machine's terms shows that same number in the child's PID column.
    """
    openers = {int(line.split()[0]) for line in lines if '"/etc/hostname"' in line and "openat" in line}
    clones = {int(m.group(1)) for line in lines if line.split()[:1] == [str(parent)]
              for m in [re.search(_FORK, line)] if m}
    return openers & clones


def host_terms(lines: list[str], err: str) -> list[str]:
    """Lines that fell back to a host PID (none should: short-lived children included).

    A process of the unit that exited between the listing and strace's attach
    may be named by its host PID: strace then says "No such process" of it.
    """
    return [line for line in [*lines, *err.splitlines()] if ("host:" in line or "strace's PID NS" in line)
            and "No such process" not in line]


_FORK = re.compile(r"(?:\b(?:clone3?|v?fork)\(|<\.\.\. (?:clone3?|v?fork) resumed>).*= (\d+)$")


def hostname_opened(line: str) -> bool:
    return '"/etc/hostname"' in line and "openat" in line


# ---------------------------------------------------------------- BusyBox

@pytest.fixture
def looping(busybox_tree, machine_name) -> Iterator[str]:
    start_busybox(busybox_tree, machine_name, "/bin/sh", "-c", LOOP)
    yield machine_name
    teardown_machine(machine_name)


def test_strace_sees_openat_of_a_busybox_machine_with_its_pids(looping):
    leader = resolve(looping).leader
    lines, err, code = trace_until(["-M", looping, "1", "-e", "trace=openat,clone,fork,vfork"],
                                   lambda lines: forked_openers(lines, 1))
    assert code == 0, err
    assert not host_terms(lines, err)
    assert 1 not in forked_openers(lines, 1)
    assert not any(line.split()[0] == str(leader) for line in lines if line.strip())
    hostname = next(line for line in lines if '"/etc/hostname"' in line)
    assert hostname.endswith("</etc/hostname>")  # -y's fd path as the machine sees it
    assert "Process 1 attached" in err and "Process 1 detached" in err
    assert "tracing PID 1 (sh, host PID" in err
    assert_nothing_left(looping)
    assert resolve(looping).alive()  # detaching left the traced shell running


def test_strace_is_read_through_descriptors_past_select_s_limit(looping):
    # The dashboard traces from a process holding a descriptor per cgroup counter: strace's pipes
    # were past FD_SETSIZE there, select() refused them and the trace pane stayed empty.
    procs = MachineProcesses(resolve(looping))
    host_pids, _ = procs.select(None)
    lines: list[str] = []
    with descriptors_past_fd_setsize(), StraceRun(procs, host_pids, ["-e", "trace=openat"]) as run:
        deadline = time.monotonic() + 60
        while not any(map(hostname_opened, lines)) and time.monotonic() < deadline and not run.finished:
            lines += [line.text for line in run.poll(0.5)]
        tail = run.close()
    assert any(map(hostname_opened, lines)), lines[-20:]
    assert any("detached" in line.text for line in tail), tail  # the end is read too: strace let go
    assert_nothing_left(looping)


def test_a_filtered_trace_still_names_short_lived_children_and_shows_only_what_was_asked(looping):
    lines, err, code = trace_until(["-M", looping, "1", "-e", "trace=openat"],
                                   lambda lines: sum(map(hostname_opened, lines)) >= 5)
    assert code == 0, err
    assert not host_terms(lines, err)
    calls = {m.group(1) for line in lines for m in [re.match(r"^\S+\s+(?:<\.\.\. )?(\w+)", line)] if m}
    assert calls <= {"openat", "+++", "---"}, calls  # the clone() nsdash added to learn PIDs is not shown
    children = {int(line.split()[0]) for line in lines if hostname_opened(line)}
    assert 1 not in children and all(0 < pid < 100_000 for pid in children)
    assert_nothing_left(looping)


def test_the_host_pid_and_the_whole_machine_can_be_traced(looping):
    leader = resolve(looping).leader
    lines, err, code = trace_until(["-M", looping, "--host-pid", str(leader), "-e", "trace=openat"],
                                   lambda lines: any(map(hostname_opened, lines)))
    assert code == 0 and "Process 1 attached" in err, err
    lines, err, code = trace_until(["-M", looping, "--all", "-e", "trace=openat"],
                                   lambda lines: any(map(hostname_opened, lines)))
    assert code == 0 and "tracing all" in err, err
    assert_nothing_left(looping)


def test_a_user_namespaced_machine_is_traced_and_debugged_by_the_hosts_root(busybox_tree, machine_name):
    start_busybox(busybox_tree, machine_name, "/bin/sh", "-c", LOOP, extra=("-U",))
    try:
        uid_map = Path(f"/proc/{resolve(machine_name).leader}/uid_map").read_text().split()
        assert uid_map[:2] == ["0", uid_map[1]] and uid_map[1] != "0"  # really under -U
        lines, err, code = trace_until(["-M", machine_name, "1", "-e", "trace=openat,clone"],
                                       lambda lines: forked_openers(lines, 1))
        assert code == 0, err
        assert not host_terms(lines, err)
        leader = resolve(machine_name).leader
        r = run_nsdash("debug", "-M", machine_name, "1", "--batch", "-ex", "info inferiors", timeout=120)
        assert r.returncode == 0 and f"process {leader}" in r.stdout, r.stdout + r.stderr
        assert_nothing_left(machine_name)
    finally:
        teardown_machine(machine_name)


def test_what_cannot_be_traced_says_why_in_one_line(looping):
    def one_line(r, *words: str) -> None:
        assert r.returncode != 0 and r.stderr.count("\n") == 1 and r.stderr.startswith("nsdash: "), r.stderr
        assert all(w in r.stderr for w in words), r.stderr

    one_line(run_nsdash("trace", "-M", looping, "99999"), "no process with PID 99999", "exited")
    one_line(run_nsdash("debug", "-M", looping, "99999", "--batch"), "no process with PID 99999")
    one_line(run_nsdash("trace", "-M", looping, "nginx"), "no running unit 'nginx.service'")
    one_line(run_nsdash("trace", "-M", looping, "1", "--strace-path", "/nonexistent/strace"),
             "not installed", "'strace' package")
    one_line(run_nsdash("debug", "-M", looping, "1", "--gdb-path", "/nonexistent/gdb"), "'gdb' package")
    one_line(run_nsdash("profile", "-M", looping, "--perf-path", "/nonexistent/perf"), "'linux-perf' package")
    one_line(run_nsdash("trace", "-M", looping, "1", "/bin/sh"), "would run it as a command on the host")
    one_line(run_nsdash("trace", "-M", f"{TAG}-nosuch", "1"), "no machine named")
    assert_nothing_left(looping)


# ---------------------------------------------------------------- perf

def spinning(tree: Path, name: str, script: str) -> None:
    (tree / script).write_text(SPIN)
    (tree / script).chmod(0o755)
    start_busybox(tree, name, f"/{script}")


def test_profile_lists_the_machines_busy_loop_and_nothing_of_another(busybox_cache, tmp_path, machine_name):
    names = [f"{machine_name}-a", f"{machine_name}-b"]
    trees = []
    for n in names:
        trees.append(tmp_path / n)
        subprocess.run(["cp", "-a", str(busybox_cache), str(trees[-1])], check=True)
    try:
        spinning(trees[0], names[0], "spin-a")
        spinning(trees[1], names[1], "spin-b")
        flame = tmp_path / "flame.svg"
        r = run_nsdash("profile", "-M", names[0], "-d", "2", "-F", "199", "--flame", str(flame), timeout=120)
        assert r.returncode == 0, r.stderr
        processes = r.stdout.split("PROCESS", 1)[1]
        assert re.search(r"spin-a \(1\)", processes), r.stdout  # the machine's PID of its spinning init
        assert "spin-b" not in r.stdout
        assert "samples of" in r.stdout and "FUNCTION" in r.stdout
        svg = flame.read_text()
        assert "<svg" in svg and "spin-a" in svg and "spin-b" not in svg
        for n in names:
            assert_nothing_left(n)
    finally:
        for n in names:
            teardown_machine(n)


# ---------------------------------------------------------------- Debian

def _run_inside(name: str, command: str) -> None:
    r = run_nsdash("shell", name, "/bin/sh", "-c", command, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr


def _booted(name: str) -> bool:
    r = run_nsdash("shell", name, "/bin/systemctl", "is-system-running", stdin=subprocess.DEVNULL)
    return r.stdout.strip() in ("running", "degraded")


@pytest.fixture(scope="module")
def debian(debian_cache) -> Iterator[str]:
    """A booted Debian machine (ephemeral: the cached tree stays as it is) with a loop and a sleep unit."""
    name = f"{TAG}-debug"
    r = run_nsdash("spawn", "--detach", "-x", "-bD", str(debian_cache), "-M", name)
    assert r.returncode == 0, r.stderr
    try:
        wait_for(lambda: _booted(name), timeout=60, what="the Debian machine to boot")
        _run_inside(name, f"systemd-run -q --unit=nsdash-loop /bin/sh -c '{LOOP}'")
        _run_inside(name, "systemd-run -q --unit=nsdash-sleep /bin/sleep 1000")
        yield name
    finally:
        r = run_nsdash("poweroff", name, timeout=60)
        if r.returncode != 0:
            run_nsdash("terminate", name, timeout=30)
        teardown_machine(name)


def test_strace_a_unit_of_a_booted_debian_machine(debian):
    procs = MachineProcesses(resolve(debian))
    shell = procs.processes(procs.unit_cgroup("nsdash-loop"))[0]
    lines, err, code = trace_until(["-M", debian, "nsdash-loop", "-e", "trace=openat,clone,clone3,fork,vfork"],
                                   lambda lines: forked_openers(lines, shell.pid))
    assert code == 0, err
    assert "/system.slice/nsdash-loop.service" in err
    assert not host_terms(lines, err)
    assert f"Process {shell.pid} attached" in err and str(shell.host_pid) not in err
    assert_nothing_left(debian)


def test_gdb_backtrace_of_a_sleep_names_the_guests_libc(debian):
    procs = MachineProcesses(resolve(debian))
    (sleep,) = procs.processes(procs.unit_cgroup("nsdash-sleep"))
    r = run_nsdash("debug", "-M", debian, str(sleep.pid), "--batch", "-ex", "bt", "-ex", "info sharedlibrary",
                   timeout=120)
    assert r.returncode == 0, r.stderr
    assert re.search(r"clock_nanosleep|__GI___nanosleep|nanosleep", r.stdout), r.stdout
    libc = [line for line in r.stdout.splitlines() if "libc.so.6" in line]
    # The guest's libc, read inside the machine (tests/security/test_debug_sysroot.py: confined).
    assert libc and all("target:/" in line and " Yes " in line for line in libc), r.stdout
    assert f"gdb on PID {sleep.pid} (sleep)" in r.stderr
    assert_nothing_left(debian)
    assert Path(f"/proc/{sleep.host_pid}").exists()  # detached, still sleeping


def test_gdb_saves_a_core_of_a_machines_process_on_the_host(debian, tmp_path):
    procs = MachineProcesses(resolve(debian))
    (sleep,) = procs.processes(procs.unit_cgroup("nsdash-sleep"))
    core = tmp_path / "sleep.core"
    r = run_nsdash("debug", "-M", debian, str(sleep.pid), "--core", str(core), timeout=120)
    assert r.returncode == 0, r.stderr
    assert core.read_bytes()[:4] == b"\x7fELF" and core.stat().st_mode & 0o077 == 0
    assert_nothing_left(debian)


def test_a_hostile_file_name_reaches_the_trace_escaped(busybox_tree, machine_name):
    """A guest's file name with a terminal title sequence reaches the trace as text: strace 6.1
    quotes the argument and -y's fd path, and nsdash's sanitiser stands behind both."""
    (busybox_tree / "root" / "\x1b]0;owned\x07").write_text("x\n")  # /tmp is a tmpfs inside
    start_busybox(busybox_tree, machine_name, "/bin/sh", "-c",
                  "while :; do cat /root/*owned* >/dev/null; sleep 0.1; done")
    try:
        lines, err, code = trace_until(["-M", machine_name, "--all", "-e", "trace=openat"],
                                       lambda lines: any("owned" in line and "</root/" in line for line in lines))
        assert code == 0, err
        shown = "\n".join([*lines, err])
        assert "\x1b" not in shown and "\x07" not in shown
        assert any(line.endswith("</root/\\33]0;owned\\7>") for line in lines), lines[-10:]
        assert_nothing_left(machine_name)
    finally:
        teardown_machine(machine_name)


def test_profile_of_one_unit_samples_only_its_processes(debian):
    _run_inside(debian, "systemd-run -q --unit=nsdash-busy /bin/sh -c 'while :; do :; done'")
    try:
        procs = MachineProcesses(resolve(debian))
        (busy,) = procs.processes(procs.unit_cgroup("nsdash-busy"))
        r = run_nsdash("profile", "-M", debian, "nsdash-busy", "-d", "2", "-F", "199", timeout=120)
        assert r.returncode == 0, r.stderr
        rows = [line.split(None, 2)[2] for line in r.stdout.split("PROCESS", 1)[1].strip().splitlines()]
        assert rows == [f"sh ({busy.pid})"], r.stdout  # nothing of the machine's other units
        assert "/system.slice/nsdash-busy.service" in r.stderr
    finally:
        _run_inside(debian, "systemctl stop nsdash-busy")
    assert_nothing_left(debian)
