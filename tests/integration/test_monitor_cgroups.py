"""The monitor against real cgroups, real processes and the real systemd-cgtop/cgls (root)."""

from __future__ import annotations

import contextlib
import json
import os
import posix
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nsdash.launcher import names
from nsdash.monitor import tree
from nsdash.monitor.machines import MachineMap, machine_of_process
from nsdash.monitor.rates import rates_between
from nsdash.monitor.sampler import Sampler
from nsdash.system import cgroupfs, paths
from tests.conftest import NSDASH, REPO, drop_machine_slice, make_machine_cgroup, run_nsdash, wait_for
from tests.unit.test_monitor_rising import Reads

# The counting v1 controllers, and name=systemd, where systemd-cgtop -P counts processes.
COUNTED = ("cpu", "cpuacct", "memory", "pids", "blkio", "systemd")


def _hierarchies() -> list[Path]:
    layout = cgroupfs.detect()
    found: list[Path] = [layout.unified] if layout.unified else []
    for ctrl in COUNTED:
        p = layout.v1.get(ctrl)
        if p is not None and p.resolve() not in [f.resolve() for f in found]:
            found.append(p)
    return found


class RealCgroups:
    """A machine-style scope with child cgroups in every counting hierarchy, torn down fully."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.scope = names.scope_path(name)
        self.hierarchies = _hierarchies()
        self.procs: list[subprocess.Popen] = []
        self.made: list[Path] = []

    def make(self, sub: str = "") -> str:
        path = self.scope + (f"/{sub}" if sub else "")
        for h in self.hierarchies:
            self.made += make_machine_cgroup(h, path)
        return path

    def run_in(self, sub: str, argv: list[str]) -> subprocess.Popen:
        """Start ARGV already inside the cgroup, so all its memory is charged there (v1 does
        not move charges with a process)."""
        path = self.make(sub)
        files = [str(h / path.lstrip("/") / "cgroup.procs") for h in self.hierarchies]

        def join() -> None:
            for f in files:
                with open(f, "w") as fh:
                    fh.write("0")

        proc = subprocess.Popen(argv, preexec_fn=join)
        self.procs.append(proc)
        return proc

    def remove(self, sub: str) -> None:
        path = self.scope + f"/{sub}"
        for h in self.hierarchies:
            d = h / path.lstrip("/")
            d.rmdir()
            self.made.remove(d)

    def cleanup(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()
        for d in sorted(self.made, key=lambda p: -len(p.parts)):
            for _ in range(100):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
        for h in self.hierarchies:
            drop_machine_slice(h)


@pytest.fixture
def cgroups(machine_name):
    cg = RealCgroups(machine_name)
    cg.make()
    try:
        yield cg
    finally:
        cg.cleanup()


BURN = ["sh", "-c", "while :; do :; done"]
IDLE = ["sleep", "600"]
HOLD = [sys.executable, "-c", "import time; x = b'x' * (24 << 20); time.sleep(600)"]  # 24 MiB


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _idle_seconds() -> float:
    """Host-wide idle time (all CPUs), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return int(fields[4]) / os.sysconf("SC_CLK_TCK")


def test_burner_reads_one_core_and_idle_reads_zero(cgroups):
    burner = cgroups.run_in("burn", BURN)
    cgroups.run_in("idle", IDLE)
    with Sampler(start=cgroups.scope) as sampler:
        t0, c0, i0 = time.monotonic(), _cpu_seconds(burner.pid), _idle_seconds()
        first = sampler.sample()
        time.sleep(1.5)
        second = sampler.sample()
        t1, c1, i1 = time.monotonic(), _cpu_seconds(burner.pid), _idle_seconds()
    assert rates_between(None, first)[cgroups.scope + "/burn"].cpu_percent is None
    rates = rates_between(first, second)
    burn = rates[cgroups.scope + "/burn"].cpu_percent
    idle = rates[cgroups.scope + "/idle"].cpu_percent
    # One core when the host is quiet; on a busy 2-core host the burner gets less, so the
    # truth is what the kernel charged the process itself over the same interval.
    truth = 100 * (c1 - c0) / (t1 - t0)
    assert burn is not None and burn <= 110 and abs(burn - truth) < 12, (burn, truth)
    # An always-runnable burner leaves no CPU idle: if half a core sat idle, it had its core.
    idle_cores = (i1 - i0) / (t1 - t0)
    assert truth > 1 and (idle_cores < 0.5 or burn > 80), (burn, truth, idle_cores)
    assert idle is not None and idle < 5, idle
    scope = second.counters[cgroups.scope]
    assert scope.tasks == 2 and scope.memory and scope.memory > 0


class _CpuTrace:
    """PID's CPU time every 20 ms while the block runs, in a thread: its true rate over any
    window of the run."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.points: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while True:
            self.points.append((time.monotonic(), _cpu_seconds(self.pid)))
            if self._stop.wait(0.02):
                self.points.append((time.monotonic(), _cpu_seconds(self.pid)))
                return

    def __enter__(self) -> _CpuTrace:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def window_rates(self, length: float) -> tuple[float, float]:
        """The lowest and highest % of a core PID used over a window LENGTH s long (or just over)."""
        rates = []
        for i, (t0, c0) in enumerate(self.points):
            t1, c1 = next(((t, c) for t, c in self.points[i:] if t - t0 >= length), (None, None))
            if t1 is not None and c1 is not None:
                rates.append(100 * (c1 - c0) / (t1 - t0))
        assert rates, f"no window of {length} s in {self.points}"
        return min(rates), max(rates)


RISING_FILES = ("/cpuacct.usage", "/cpu.stat", "/io.stat", "/blkio.throttle.io_service_bytes_recursive")


@pytest.mark.parametrize("pure", [False, True], ids=["host", "cgroup2-alone"])
def test_an_idle_subtree_keeps_its_cpu_and_io_unread_and_a_busy_loop_reads_right(cgroups, monkeypatch, pure):
    """A parent whose CPU and recursive I/O files read the same vouches for its subtree
    (counters.RISING): the idle cgroups below it are not read again, while the busy loop's
    rate is what the kernel charged it.  On this host's layout (v1 controllers) and on
    cgroup2 alone (cpu.stat, as on a pure cgroup2 host)."""
    layout = cgroupfs.detect()
    if pure:
        assert layout.unified_dir is not None  # (every host this suite runs on has cgroup2)
        layout = cgroupfs.Layout("unified", layout.unified_dir, layout.unified_dir, {})
    burner = cgroups.run_in("busy/burn", BURN)
    idle = [cgroups.make(f"idle/i{i}") for i in range(4)]
    reads = Reads(monkeypatch)
    read = reads.read
    with Sampler(layout, start=cgroups.scope, rewalk_interval=3600) as sampler:
        first = sampler.sample()
        read.clear()
        t0, c0 = time.monotonic(), _cpu_seconds(burner.pid)
        a = sampler.sample()
        time.sleep(1.0)
        b = sampler.sample()
        t1, c1 = time.monotonic(), _cpu_seconds(burner.pid)
    monkeypatch.undo()

    def rising_read(path: str) -> list[str]:
        return [n for n in read if n.endswith(RISING_FILES) and n.rsplit("/", 1)[0].endswith(path)]

    assert all(rising_read(p) == [] for p in idle), read
    assert rising_read(cgroups.scope + "/idle") and rising_read(cgroups.scope + "/busy/burn")
    for p in idle:
        assert first.counters[p].cpu_ns is not None and b.counters[p].cpu_ns == first.counters[p].cpu_ns
    rates = rates_between(a, b)
    truth = 100 * (c1 - c0) / (t1 - t0)
    burn = rates[cgroups.scope + "/busy/burn"].cpu_percent
    assert burn is not None and truth > 1 and abs(burn - truth) < 12, (burn, truth)
    assert all(rates[p].cpu_percent == 0 for p in idle)


def _parse_batch(text: str) -> dict[str, tuple[str, str, str]]:
    """The last refresh of cgtop -b output: path -> (tasks, cpu, memory)."""
    block = text.rstrip("\n").split("\n\n")[-1]
    rows = {}
    for line in block.splitlines():
        path, tasks, cpu, mem, _in, _out = line.rsplit(None, 5)
        rows["/" + path.strip().lstrip("/")] = (tasks, cpu, mem)
    return rows


def _bytes(text: str) -> float:
    units = {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return float(text[:-1]) * units[text[-1]]


@pytest.mark.skipif(shutil.which("systemd-cgtop") is None, reason="systemd-cgtop not installed")
def test_cgtop_agrees_with_systemd_cgtop(cgroups):
    burner = cgroups.run_in("burn", BURN)
    cgroups.run_in("idle", IDLE)
    cgroups.run_in("idle", HOLD)
    with Sampler(start=cgroups.scope) as sampler:  # the holder's memory filled
        wait_for(lambda: (sampler.sample().counters[cgroups.scope + "/idle"].memory or 0) >= 24 << 20,
                 what="the holder's 24 MiB")
    for mode in ([], ["-P"], ["-k"]):
        args = ["-b", "-n", "2", "-d", "1", *mode, cgroups.scope]
        with _CpuTrace(burner.pid) as trace:
            theirs = subprocess.Popen(["systemd-cgtop", *args], stdout=subprocess.PIPE, text=True)
            ours = run_nsdash("cgtop", *args)
            their_text = theirs.communicate(timeout=30)[0]
        assert ours.returncode == 0, ours.stderr
        mine, sd = _parse_batch(ours.stdout), _parse_batch(their_text)
        for sub in ("/burn", "/idle"):
            path = cgroups.scope + sub
            assert mine[path][0] == sd[path][0], (mode, path)  # tasks: exactly the same
            if "-" in (mine[path][2], sd[path][2]):
                assert mine[path][2] == sd[path][2]
            else:
                assert abs(_bytes(mine[path][2]) - _bytes(sd[path][2])) <= max(
                    0.1 * _bytes(sd[path][2]), 256 << 10), (mine[path], sd[path])
        assert _bytes(mine[cgroups.scope + "/idle"][2]) >= 24 << 20
        assert mine[cgroups.scope + "/idle"][0] == "2"  # sleep and the holder, one thread each
        # The two read the burner over two windows a second long that start apart (our
        # interpreter's start): on a busy host its share moves between them (CI: 42.4 against
        # 68.3), by as much as its true rate did over any such window meanwhile.
        low, high = trace.window_rates(1.0)
        ours_cpu, their_cpu = float(mine[cgroups.scope + "/burn"][1]), float(sd[cgroups.scope + "/burn"][1])
        assert abs(ours_cpu - their_cpu) < 25 + (high - low), (ours_cpu, their_cpu, low, high)
        assert low - 12 < ours_cpu < high + 12, (ours_cpu, low, high)  # and ours is one of them
        # The same text layout: our lines are as wide as systemd-cgtop's.
        their_lines = [line for line in their_text.splitlines() if line and not line.startswith("//")]
        our_lines = [line for line in ours.stdout.splitlines() if line]
        assert {len(line) for line in our_lines} == {len(line) for line in their_lines}


@pytest.mark.skipif(shutil.which("systemd-cgls") is None, reason="systemd-cgls not installed")
def test_cgls_prints_what_systemd_cgls_prints(cgroups):
    cgroups.run_in("burn", BURN)
    cgroups.run_in("idle/deeper", IDLE)
    cgroups.make("empty")
    for args in ([cgroups.scope], ["-a", cgroups.scope], ["-l", cgroups.scope + "/idle"]):
        theirs = subprocess.run(["systemd-cgls", "--no-pager", *args], capture_output=True, text=True)
        ours = run_nsdash("cgls", *args)
        assert ours.returncode == 0, ours.stderr
        assert ours.stdout == theirs.stdout
    assert "sh -c while :; do :; done" in ours.stdout or "sleep 600" in ours.stdout


def test_cgroups_vanishing_mid_walk_never_abort(cgroups):
    names = [f"churn{i}" for i in range(150)]
    for n in names:
        cgroups.make(n)
    unified = cgroupfs.detect().unified
    stop = threading.Event()

    def remover():
        for n in names:
            cgroups.remove(n)
        stop.set()

    with Sampler(start=cgroups.scope, rewalk_interval=0) as sampler:
        sampler.sample()
        thread = threading.Thread(target=remover)
        thread.start()
        rounds = 0
        while not stop.is_set() or rounds < 3:
            sampler.sample()
            if unified is not None:
                tree.walk(str(unified), cgroups.scope, with_pids=True)
            rounds += 1
        thread.join()
        final = sampler.sample()
    assert set(final.counters) == {cgroups.scope}


def test_kept_open_files_of_a_removed_cgroup_are_dropped(cgroups):
    cgroups.make("gone")
    with Sampler(start=cgroups.scope, rewalk_interval=3600) as sampler:
        assert cgroups.scope + "/gone" in sampler.sample().counters
        before = sampler.open_files()
        cgroups.remove("gone")
        after = sampler.sample()
        assert cgroups.scope + "/gone" not in after.counters
        assert sampler.open_files() < before


def _memory_settled(sampler: Sampler, path: str) -> None:
    """Wait until PATH's memory figure holds still: the kernel takes a removed child's last
    charges (a CPU's stock of up to 64 pages) off its parent a moment after the rmdir, so two
    reads a few microseconds apart could differ by 256 KiB (seen in CI: 262144 against 20480)."""
    last = None
    for _ in range(100):
        now = sampler.sample().counters[path].memory
        if now == last:
            return
        last = now
        time.sleep(0.02)
    pytest.fail(f"{path}'s memory never held still for 20 ms in 2 s")


def test_a_cgroup_removed_between_walks_is_dropped_from_a_column_read(cgroups):
    """A refresh reads every cgroup's files in one go (sampler._Group): a removed cgroup's files
    answer ENODEV there, and that refresh reads the cgroups one by one instead, as before:
    the gone one dropped and its files closed, the others' figures those one-by-one reads give."""
    for n in ("stay", "gone"):
        cgroups.make(n)
    with Sampler(start=cgroups.scope, rewalk_interval=3600) as sampler, \
            Sampler(start=cgroups.scope, rewalk_interval=3600) as single:
        single._make_plan = lambda: []  # type: ignore[method-assign]
        sampler.sample()
        sampler.sample()  # (files read in columns from now on)
        assert sampler._plan and len(sampler._plan[0].paths) == 3
        before = sampler.open_files()
        sampler._needs_walk = lambda: None  # type: ignore[method-assign]  # (the walk would see it first)
        cgroups.remove("gone")
        _memory_settled(single, cgroups.scope)
        after = sampler.sample().counters
        one_by_one = single.sample().counters
        assert set(after) == set(one_by_one) == {cgroups.scope, cgroups.scope + "/stay"}
        assert sampler.open_files() < before
        assert [c.memory for c in after.values()] == [c.memory for c in one_by_one.values()]
        assert sampler.sample().counters.keys() == after.keys() and sampler._plan


def test_a_cgroup_removed_and_made_again_under_its_name_stays_listed(cgroups):
    """A unit restarted between two refreshes: its cgroup removed and made again, the count of
    descendants unchanged, so no walk is due; the kept-open files of the old one answer ENODEV.
    The new one must be listed by the next refresh at the latest, not after rewalk_interval."""
    cgroups.make("unit")
    path = cgroups.scope + "/unit"
    with Sampler(start=cgroups.scope, rewalk_interval=3600) as sampler:
        sampler.sample()
        assert path in sampler.sample().counters
        cgroups.remove("unit")
        cgroups.make("unit")
        first = sampler.sample().counters
        second = sampler.sample().counters
        assert path in second, f"the remade cgroup is missing ({sorted(first)})"
        assert set(second) == {cgroups.scope, path}


@pytest.mark.parametrize("pure", [False, True], ids=["host", "cgroup2-alone"])
def test_a_cgroup_remade_under_an_idle_parent_shows_its_own_cpu_time(cgroups, pure):
    """A cgroup that used CPU, removed and made again under its name below an idle, empty
    parent: the parent's CPU reads the same (it keeps the old one's time) and nothing below it
    is read, but the new cgroup's time is its own (0), as a read of its files gives and
    'cgtop --cpu=time' shows, even after a full walk."""
    layout = cgroupfs.detect()
    if pure:
        layout = cgroupfs.Layout("unified", layout.unified_dir, layout.unified_dir, {})
    proc = cgroups.run_in("p/unit", ["sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
    proc.wait()
    cgroups.procs.remove(proc)
    path = cgroups.scope + "/p/unit"
    with Sampler(layout, start=cgroups.scope, rewalk_interval=0.2) as sampler:
        sampler.sample()
        before = sampler.sample().counters[path].cpu_ns
        assert before, before
        cgroups.remove("p/unit")
        cgroups.make("p/unit")
        for _ in range(3):
            time.sleep(0.3)  # (a full walk is due each time)
            counters = sampler.sample().counters
        assert path in counters and counters[path].cpu_ns == 0, (before, counters.get(path))


def test_kept_cgroup_procs_are_read_fresh_and_closed_when_their_cgroup_goes(cgroups):
    """The dashboard's tree keeps each cgroup2 cgroup.procs open and reads it again with pread:
    what it reads must be the processes now, not when the file was opened."""
    unified = cgroupfs.detect().unified
    if unified is None:
        pytest.skip("no cgroup2 hierarchy on this host: KeptProcs is for cgroup2 only")
    cgroups.make("kept")
    kept = tree.KeptProcs()
    try:
        def pids() -> dict[str, tuple[int, ...] | None]:
            root = tree.walk(str(unified), cgroups.scope, with_pids=True, pids_of=kept)
            kept.sweep()
            return {node.path: node.pids for node in root.iter()}

        assert pids()[cgroups.scope + "/kept"] == ()
        assert kept.open_files() == 2
        first = cgroups.run_in("kept", IDLE)
        assert pids()[cgroups.scope + "/kept"] == (first.pid,)
        second = cgroups.run_in("kept", IDLE)
        assert pids()[cgroups.scope + "/kept"] == tuple(sorted((first.pid, second.pid)))
        first.kill()
        first.wait()
        assert pids()[cgroups.scope + "/kept"] == (second.pid,)
        second.kill()
        second.wait()
        cgroups.remove("kept")
        assert cgroups.scope + "/kept" not in pids()
        assert kept.open_files() == 1  # the removed cgroup's file closed by the sweep
        # A cgroup made again under a kept name: its old file answers ENODEV, the new one is read.
        cgroups.make("again")
        assert pids()[cgroups.scope + "/again"] == ()
        cgroups.remove("again")
        cgroups.make("again")
        third = cgroups.run_in("again", IDLE)
        assert pids()[cgroups.scope + "/again"] == (third.pid,)
    finally:
        kept.close()
    assert kept.open_files() == 0


def test_kept_cgroup_procs_are_read_in_one_call_unless_the_first_read_filled_a_page(cgroups, monkeypatch):
    """KeptProcs takes a first read shorter than a page (less a line) as the whole list: the
    kernel's seq_file stops short of a page only at its end.  A list past a page (1,200 processes)
    comes back short of it all the same, and is read on to the end."""
    unified = cgroupfs.detect().unified
    if unified is None:
        pytest.skip("no cgroup2 hierarchy on this host: KeptProcs is for cgroup2 only")
    many = cgroups.run_in("many", ["sh", "-c", "for i in $(seq 1200); do sleep 600 & done; echo; wait"])
    few = cgroups.run_in("few", IDLE)
    kept = tree.KeptProcs()
    directory = str(unified) + cgroups.scope
    calls: list[int] = []
    pread = os.pread
    monkeypatch.setattr(posix, "pread", lambda fd, n, offset: calls.append(fd) or pread(fd, n, offset))
    try:
        assert kept(directory + "/few") == (few.pid,) and len(calls) == 1
        for _ in range(100):  # the shell's 800 children started
            with open(directory + "/many/cgroup.procs", "rb") as f:
                listed = f.read()
            if len(listed.split()) == 1201:
                break
            time.sleep(0.1)
        assert len(listed) > 4096
        calls.clear()
        assert kept(directory + "/many") == tuple(int(x) for x in listed.split())
        assert len(calls) >= 3  # a short page, the rest, the end
    finally:
        monkeypatch.undo()
        kept.close()
        with open(directory + "/many/cgroup.procs") as f:
            for pid in f.read().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        many.wait()


def test_a_walk_with_processes_lists_no_leaf_cgroup(cgroups, monkeypatch):
    """A leaf (link count 2) is known by one stat: only cgroups with children are listed."""
    cgroups.make("a/b")
    cgroups.make("c")
    mount = tree.primary_mount(cgroupfs.detect())
    listed: list[str] = []
    scandir = os.scandir

    def counting(path):
        listed.append(str(path)[len(mount):])
        return scandir(path)

    monkeypatch.setattr(tree.posix, "scandir", counting)
    root = tree.walk(mount, cgroups.scope, with_pids=True)
    assert [n.path for n in root.iter()] == [cgroups.scope + p for p in ("", "/a", "/a/b", "/c")]
    assert sorted(listed) == [cgroups.scope, cgroups.scope + "/a"]
    listed.clear()
    tree.walk(mount, cgroups.scope)  # without processes (an unreadable leaf is found by listing it)
    assert len(listed) == 4


def test_unreadable_subtree_is_marked_for_an_unprivileged_reader(cgroups):
    cgroups.make("secret/inner")
    cgroups.make("open")
    layout = cgroupfs.detect()
    mount = tree.primary_mount(layout)
    os.chmod(mount + cgroups.scope + "/secret", 0o700)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setgid(65534)
            os.setuid(65534)
            node = tree.walk(mount, cgroups.scope, with_pids=True)
            with Sampler(layout, start=cgroups.scope) as sampler:
                sample = sampler.sample()
            report = {"nodes": {n.path: n.unreadable for n in node.iter()},
                      "sampled": sorted(sample.counters), "unreadable": sorted(sample.unreadable)}
            os.write(w, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        report = json.loads(f.read() or "{}")
    os.waitpid(pid, 0)
    assert report["nodes"][cgroups.scope + "/secret"] is True
    assert report["nodes"][cgroups.scope + "/open"] is False
    assert cgroups.scope + "/secret" in report["unreadable"]
    assert cgroups.scope + "/open" in report["sampled"]
    if shutil.which("setpriv"):
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        out = subprocess.run([*nobody, *NSDASH, "cgls", "-a", cgroups.scope], capture_output=True,
                             text=True, cwd=REPO)
        assert out.returncode == 0, out.stderr
        assert "─secret" in out.stdout and "(unreadable)" in out.stdout
        assert "─open" in out.stdout and "inner" not in out.stdout


def test_machine_cgroup_and_processes_map_to_the_machine(cgroups, machine_name):
    proc = cgroups.run_in("payload", IDLE)
    state = paths.machine_dir(machine_name)
    state.mkdir(parents=True)
    try:
        (state / "state.json").write_text(json.dumps({"name": machine_name, "cgroup": cgroups.scope}))
        mm = MachineMap()
        assert mm.machine_of(cgroups.scope + "/payload") == machine_name
        assert machine_of_process(proc.pid, mm) == machine_name
        out = run_nsdash("cgtop", "-b", "-n", "1", "-M", machine_name)
        assert out.returncode == 0, out.stderr
        assert {line.split()[0] for line in out.stdout.splitlines()} == {
            cgroups.scope, cgroups.scope + "/payload"}
        listing = run_nsdash("cgls", "-M", machine_name)
        assert "sleep 600" in listing.stdout and listing.returncode == 0
    finally:
        shutil.rmtree(state)
    # Without a state file the scope name still says which machine it is.
    assert MachineMap({}).machine_of(cgroups.scope + "/payload") == machine_name
    missing = run_nsdash("cgtop", "-b", "-n", "1", "-M", machine_name + "-nope")
    assert missing.returncode != 0 and missing.stderr.count("\n") == 1
    assert "no machine" in missing.stderr and "Traceback" not in missing.stderr


def _netns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except FileNotFoundError:
        return None


def _send_udp(link: str, count: int, size: int) -> None:
    """COUNT datagrams of SIZE bytes to the machine, returning once LINK sent them all: the first
    wait in the neighbour queue for the machine's ARP reply, a softirq that a busy host runs late."""
    import socket

    sent = Path(f"/sys/class/net/{link}/statistics/tx_bytes")
    before = int(sent.read_text())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(count):
            s.sendto(b"x" * size, ("10.213.7.2", 9))
    framed = size + 8 + 20 + 14  # UDP, IPv4 and Ethernet headers
    wait_for(lambda: int(sent.read_text()) >= before + count * framed, what=f"{link} to send {count} datagrams")


@pytest.fixture
def machine_with_veth(cgroups, machine_name):
    """A process in its own network namespace inside the scope, wired to the host by ve-NAME."""
    proc = cgroups.run_in("payload", ["unshare", "-n", "sleep", "600"])
    link = f"ve-{machine_name}"[:15]
    # unshare's own network namespace, not the host's it starts in: host0 goes there
    host_ns = os.readlink("/proc/self/ns/net")
    wait_for(lambda: _netns(proc.pid) not in (None, host_ns), what="unshare's new network namespace")
    sh = lambda *cmd: subprocess.run(cmd, check=True, capture_output=True)  # noqa: E731
    sh("ip", "link", "add", link, "type", "veth", "peer", "name", "host0", "netns", str(proc.pid))
    try:
        sh("ip", "addr", "add", "10.213.7.1/30", "dev", link)
        sh("ip", "link", "set", link, "up")
        inside = ["nsenter", "-t", str(proc.pid), "-n"]
        sh(*inside, "ip", "addr", "add", "10.213.7.2/30", "dev", "host0")
        sh(*inside, "ip", "link", "set", "host0", "up")
        yield proc
    finally:
        subprocess.run(["ip", "link", "del", link], capture_output=True)


def test_machine_network_counters_from_host_veth_and_from_inside(machine_with_veth, machine_name):
    from nsdash.monitor.net import NetSampler
    from nsdash.monitor.rates import net_rates

    pid = machine_with_veth.pid
    with NetSampler() as ns:
        # "other" has no ve-other link: it is read from inside its namespace.
        before = ns.sample({machine_name: pid, "other": pid, "host": os.getpid()})
        _send_udp(f"ve-{machine_name}"[:15], 20, 200)
        after = ns.sample({machine_name: pid, "other": pid, "host": os.getpid()})
    assert before["host"] is None  # shares the host's network: no figures of its own
    for name in (machine_name, "other"):
        b, a = before[name], after[name]
        assert b is not None and a is not None
        assert a.rx_bytes - b.rx_bytes >= 20 * 200
        assert a.tx_bytes > b.tx_bytes  # ARP replies and port-unreachables
    # Host side and inside agree (the machine's view), give or take a neighbour packet.
    assert abs(after[machine_name].rx_packets - after["other"].rx_packets) <= 4
    rx, tx = net_rates(before, after, 1.0)[machine_name]
    assert rx and tx and rx > 0 and tx > 0


def test_cgtop_net_column_shows_machine_traffic(machine_with_veth, machine_name, cgroups):
    link = f"ve-{machine_name}"[:15]
    stop = threading.Event()
    sender = threading.Thread(target=lambda: [_send_udp(link, 5, 500) for _ in iter(lambda: stop.wait(0.05), True)])
    sender.start()
    state = paths.machine_dir(machine_name)
    state.mkdir(parents=True)
    try:
        (state / "state.json").write_text(json.dumps({"cgroup": cgroups.scope}))
        out = run_nsdash("cgtop", "-b", "-n", "2", "-d", "0.5", "--extra=net", "-M", machine_name)
    finally:
        stop.set()
        sender.join()
        shutil.rmtree(state)
    assert out.returncode == 0, out.stderr
    last = out.stdout.rstrip("\n").split("\n\n")[-1].splitlines()
    scope_row = next(line for line in last if line.split()[0] == cgroups.scope)
    rx, tx = scope_row.split()[-2:]
    assert rx != "-" and tx != "-" and rx.endswith(("B", "K")), scope_row


def test_kept_cgroup_procs_take_their_descriptors_from_the_samplers_budget(tmp_path, monkeypatch):
    """The poller keeps counter files (the sampler) and cgroup.procs files (KeptProcs) open: with
    5,000 cgroups the two together ran the process out of descriptors (the dashboard bench's
    poller died with EMFILE importing a module).  The sampler gives at most half of what it has
    left; and KeptProcs, out of descriptors all the same, reads by name and keeps no more."""
    import errno

    s = Sampler()
    try:
        given = s.reserve(4096)  # (it raises the sampler's budget first: the poller keeps thousands)
        assert 0 < given <= s._fd_budget  # at most half: what it kept is at least what it gave
    finally:
        s.close()
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "cgroup.procs").write_text("1\n2\n")
    kept = tree.KeptProcs(10)
    assert kept(str(tmp_path / "a")) == (1, 2) and kept.open_files() == 1
    real_open, refused = os.open, []

    def out_of_descriptors(path, flags, *args, **kw):
        if not refused:
            refused.append(path)
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(posix, "open", out_of_descriptors)
    assert kept(str(tmp_path / "b")) == (1, 2)  # read by name on the second try
    assert refused and kept.open_files() == 1 and kept.limit == 1
    kept.close()
