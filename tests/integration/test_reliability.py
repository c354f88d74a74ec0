"""Reliability regressions: console attach across systemd's console hangups, start-up
handshake failures cleaned up, attach on high fds.  Real machines, real PTYs."""

from __future__ import annotations

import os
import time

import pytest
from conftest import drop_machine_slice, make_machine_cgroup, run_nsdash

from nsdash.launcher import names
from nsdash.machines import client
from nsdash.machines import state as st


def _read_until(session: client.ConsoleSession, needle: bytes, timeout: float) -> bytes:
    seen = bytearray()
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {needle!r} within {timeout} s; got {bytes(seen[-500:])!r}"
        got = session.read(timeout=min(left, 1.0))
        assert got is not None, f"the supervisor closed the console; got {bytes(seen[-500:])!r}"
        data, events = got
        assert not [e for e in events if e.get("event") == "error"], events
        seen += data
    return bytes(seen)


def test_attach_to_booted_debian_reaches_the_login_prompt(detached, debian_cache, machine_name):
    """systemd and getty hang the console up while booting: attaching (with a window size)
    before, during and after that must keep working and show the login prompt."""
    detached("-xbD", str(debian_cache))
    early = client.attach(machine_name, rows=30, cols=100)
    try:
        _read_until(early, b"login:", 60)
        # Attach again now that getty owns (and has hung up) the console, and resize.
        with client.attach(machine_name, rows=40, cols=120, replay=0) as late:
            late.resize(41, 121)
            late.send(b"\r")  # getty prints the prompt again
            _read_until(late, b"login:", 30)
    finally:
        early.close()
    assert client.status(machine_name)["state"] == "running"


def test_console_session_reads_on_a_descriptor_above_1023(detached, busybox_tree, machine_name):
    """select() cannot watch fd 1024 or above; the console read must still work there."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1100:
        pytest.skip("the hard open-file limit is below 1100")
    detached("-bD", str(busybox_tree))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1100), hard))
    filler: list[int] = []
    try:
        while True:  # use up the low descriptors so the session's socket lands above 1023
            fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            filler.append(fd)
            if fd >= 1030:
                break
        with client.attach(machine_name, replay=0) as session:
            assert session.fileno() > 1023
            session.send(b"\r")  # getty on the console prompts again
            _read_until(session, b"login:", 20)
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# ---------------------------------------------------------------- the sampler short of descriptors

_SAMPLER_SCRIPT = r"""
import json, os, resource, sys
from nsdash.monitor.sampler import Sampler
limit, start, fill = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
s = Sampler(start=start)
fillers = []
while fill and len(fillers) < 100000:  # others in the process hold all but FILL descriptors
    try:
        fillers.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        break
for fd in fillers[:fill]:
    os.close(fd)
first = s.sample()
for fd in fillers[fill:]:
    os.close(fd)
second = s.sample()
def known(sample):
    return sum(1 for c in sample.counters.values() if c.cpu_ns is not None and c.memory is not None)
print(json.dumps({"paths": len(second.counters), "first_paths": len(first.counters),
                  "first_known": known(first), "known": known(second),
                  "open": s.open_files(), "by_name": s.read_by_name()}))
s.close()
"""

CHILDREN = 300


@pytest.fixture
def many_cgroups(machine_name):
    from nsdash.system import cgroupfs

    layout = cgroupfs.detect()
    roots = [layout.unified] if layout.unified else []
    for ctrl in ("memory", "pids", "cpu"):
        p = layout.v1.get(ctrl)
        if p is not None and p.resolve() not in [r.resolve() for r in roots]:
            roots.append(p)
    scope = names.scope_path(machine_name)
    made = []
    try:
        for root in roots:
            made += make_machine_cgroup(root, scope)
            top = root / scope.lstrip("/")
            for i in range(CHILDREN):
                (top / f"c{i}").mkdir()
                made.append(top / f"c{i}")
        yield scope
    finally:
        for d in reversed(made):
            os.rmdir(d)
        for root in roots:
            drop_machine_slice(root)


def _run_sampler(limit: int, scope: str, fill: int = 0) -> dict:
    import json
    import subprocess

    from conftest import PY, REPO

    r = subprocess.run([PY, "-c", _SAMPLER_SCRIPT, str(limit), scope, str(fill)], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_sampler_with_few_descriptors_reads_the_rest_by_name(many_cgroups):
    """A hard limit well below what keeping every counter open needs: every cgroup is still
    sampled, every figure known, and the kept-open files stay inside the limit."""
    got = _run_sampler(400, many_cgroups)
    assert got["paths"] == CHILDREN + 1
    assert got["first_known"] == got["known"] == CHILDREN + 1
    assert got["by_name"] > 0
    assert got["open"] < 400


def test_sampler_survives_emfile_from_descriptors_held_elsewhere(many_cgroups):
    """The budget says yes but open() says EMFILE (the rest of the process holds nearly all):
    the refresh completes with what it could read, and the next one reads everything."""
    got = _run_sampler(5000, many_cgroups, fill=40)
    assert got["first_paths"] == CHILDREN + 1
    assert got["paths"] == CHILDREN + 1
    assert got["known"] == CHILDREN + 1
    assert got["by_name"] > 0


# ---------------------------------------------------------------- a start that never finishes


def test_a_start_that_times_out_leaves_nothing_behind(busybox_tree, machine_name):
    """The supervisor waits for good before the machine runs (here: another process holds
    the tree's start lock and never lets go): client.spawn gives up after its timeout, and
    kills and removes the supervisor, the state entry and any processes."""
    import fcntl

    from nsdash.errors import NsdashError
    from nsdash.launcher.spec import ContainerSpec

    spec = ContainerSpec(directory=busybox_tree, machine=machine_name, boot=True)
    holder = os.open(busybox_tree, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        t0 = time.monotonic()
        with pytest.raises(NsdashError, match="did not start within 3 s"):
            client.spawn(spec, timeout=3, notice=None)
        assert time.monotonic() - t0 < 15
        assert not st.machine_dir(machine_name).exists()
        assert not (st.machine_dir(machine_name).parent.parent / ".locks" / machine_name).exists()
    finally:
        os.close(holder)
    assert run_nsdash("list").stdout.count(machine_name) == 0


def test_a_fifo_in_the_tree_does_not_hang_the_start(busybox_tree, machine_name):
    """Files the launcher reads or replaces in the tree (machine-id, resolv.conf) may be
    FIFOs nobody writes or reads: the start must neither block on them nor leave anything."""
    for name in ("etc/machine-id", "etc/resolv.conf", "etc/passwd"):
        f = busybox_tree / name
        if f.exists() or f.is_symlink():
            f.unlink()
        os.mkfifo(f)
    r = run_nsdash("spawn", "-q", "-M", machine_name, "-D", str(busybox_tree), "/bin/true", timeout=30)
    assert r.returncode == 0 or (r.stderr.count("\n") == 1 and "nsdash:" in r.stderr), r.stderr


# ---------------------------------------------------------------- starts in threads of one process


def test_concurrent_starts_in_one_process_do_not_deadlock(busybox_tree, machine_name):
    """Two threads starting containers at once: neither's children may inherit the other's
    handshake pipes (each would then wait for EOF the other's PID 1 holds back), and neither's
    middle child may hang on the GIL state the other thread left (_FORK_SCRIPT below)."""
    import sys
    import threading

    from nsdash.launcher.container import Container
    from nsdash.launcher.spec import ContainerSpec

    failures: list[str] = []

    def run(tag: str) -> None:
        for i in range(12):
            spec = ContainerSpec(directory=busybox_tree, machine=f"{machine_name}-{tag}{i}",
                                 command=("/bin/true",), ephemeral=True)
            try:
                with Container(spec) as c:
                    c.start()
                    if c.wait().exit_code() != 0:
                        failures.append(f"{tag}{i}: exit {c.outcome}")
            except Exception as e:  # noqa: BLE001 - collected and asserted below
                failures.append(f"{tag}{i}: {e}")

    threads = [threading.Thread(target=run, args=(t,), daemon=True) for t in "ab"]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # a thread waiting for the GIL asks for it at once (see below)
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        sys.setswitchinterval(interval)
    assert not any(t.is_alive() for t in threads), "concurrent starts deadlocked"
    assert not failures, failures


# The child of a raw clone3 runs bytecode before PyOS_AfterFork_Child() resets the GIL: a
# GIL request another thread left pending made it hand the GIL over and wait for good for a
# thread the child does not have (drop_gil, a futex in _PyRuntime).  A switch interval of a
# microsecond makes the waiting thread ask at once, so nearly every fork meets a request.
_FORK_SCRIPT = r"""
import errno, os, signal, sys, threading, time
from nsdash.system import syscalls as sc
cgroup = sys.argv[1]
fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)

def reaped(pid):
    deadline = time.monotonic() + 20  # a hang detector, not a speed limit
    while os.waitpid(pid, os.WNOHANG)[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return False
        time.sleep(0.001)
    return True

# Alone in the process: the child is born in the cgroup.
r, w = os.pipe()
pid = sc.fork_into_cgroup(fd)
if pid == 0:
    os.read(r, 1)
    os._exit(0)
with open(os.path.join(cgroup, "cgroup.procs")) as f:
    born_there = str(pid) in f.read().split()
os.write(w, b"x")
print("alone", born_there, reaped(pid))

# SIGALRM every 200 us: a signal the parent caught just before the clone must have its
# handler run in the parent only (the raw clone3's children ran it in 2-4% of forks).
parent = os.getpid()
def note(signum, frame):
    if os.getpid() != parent:
        os.write(w, b"c")
signal.signal(signal.SIGALRM, note)
signal.setitimer(signal.ITIMER_REAL, 2e-4, 2e-4)
for i in range(400):
    pid = sc.fork_into_cgroup(fd)
    if pid == 0:
        os._exit(0)
    reaped(pid)
signal.setitimer(signal.ITIMER_REAL, 0)
os.set_blocking(r, False)
try:
    ran = len(os.read(r, 4096))
except BlockingIOError:
    ran = 0
print("handlers in children", ran)

# Another thread wants the GIL all the time: refused (EBUSY), and the callers' os.fork()
# fallback (launcher/container.py) makes children that all run.
stop = threading.Event()
def spin():
    while not stop.is_set():
        pass
sys.setswitchinterval(1e-6)
threading.Thread(target=spin, daemon=True).start()
refused = 0
for i in range(300):
    try:
        pid = sc.fork_into_cgroup(fd)
    except OSError as e:
        assert e.errno == errno.EBUSY, e
        refused += 1
        pid = os.fork()
    if pid == 0:
        os._exit(0)
    if not reaped(pid):
        print("hung", i)
        break
stop.set()
print("threaded", refused)
"""


def test_fork_into_cgroup_only_when_no_other_thread_runs(machine_name):
    """clone3 CLONE_INTO_CGROUP from a process with one thread puts the child in the cgroup,
    and a signal caught around the clone is handled in the parent only; with another thread (here one that asks for the GIL every microsecond) it is refused and
    os.fork() used instead, whose children never hang (the raw clone3's hung for good)."""
    import subprocess

    from conftest import PY, REPO

    from nsdash.system import cgroupfs

    unified = cgroupfs.detect().unified
    if unified is None:
        pytest.skip("no cgroup2 hierarchy: nsdash never forks into a cgroup here")
    cgroup = unified / f"{machine_name}-fork"
    cgroup.mkdir()
    try:
        r = subprocess.run([PY, "-c", _FORK_SCRIPT, str(cgroup)], cwd=REPO, capture_output=True,
                           text=True, timeout=300)
    finally:
        cgroup.rmdir()
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["alone True True", "handlers in children 0", "threaded 300"], r.stdout
