"""The monitor reads fixture trees of each cgroup layout: unified, hybrid and legacy."""

from __future__ import annotations

import json
import os
import posix
import shutil
import tempfile
from pathlib import Path

import pytest

from nsdash.monitor import counters as C
from nsdash.monitor import sampler as sampler_module
from nsdash.monitor import tree
from nsdash.monitor.machines import MachineMap, registered_cgroups, registered_leaders
from nsdash.monitor.rates import rates_between
from nsdash.monitor.sampler import COUNT_ALL, Sampler
from nsdash.system import cgroupfs

V2_FILES = {
    "cgroup.procs": "",
    "cpu.stat": "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 10\n"
                "nr_throttled 3\nthrottled_usec 700\n",
    "memory.current": "1048576\n",
    "memory.max": "max\n",
    "pids.current": "4\n",
    "io.stat": "8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n"
               "8:16 rbytes=1 wbytes=2 rios=1 wios=1 dbytes=0 dios=0\n",
    "cpu.pressure": "some avg10=1.50 avg60=0.00 avg300=0.00 total=10\nfull avg10=0.00 avg60=0.00 "
                    "avg300=0.00 total=0\n",
    "memory.pressure": "some avg10=0.25 avg60=0.00 avg300=0.00 total=1\n",
    "io.pressure": "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
}

V1_FILES = {
    "cpuacct": {"cpuacct.usage": "3000000\n"},
    "cpu": {"cpu.stat": "nr_periods 5\nnr_throttled 2\nthrottled_time 9000\n"},
    "memory": {"memory.usage_in_bytes": "2097152\n", "memory.limit_in_bytes": "9223372036854771712\n"},
    "pids": {"pids.current": "7\n"},
    "blkio": {"blkio.throttle.io_service_bytes_recursive":
              "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 0\n8:0 Total 12288\nTotal 12288\n"},
    "systemd": {},
}


def _write(directory: Path, files: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)


def make_v2(root: Path, cgroups=("/", "/a", "/a/b", "/machine.slice/machine-web.scope")) -> None:
    for cg in cgroups:
        d = root / cg.lstrip("/")
        _write(d, V2_FILES)
        if cg == "/":
            (d / "cgroup.controllers").write_text("cpu io memory pids\n")


def make_v1(root: Path, cgroups=("/", "/a", "/a/b", "/machine.slice/machine-web.scope")) -> None:
    for ctrl, files in V1_FILES.items():
        for cg in cgroups:
            d = root / ctrl / cg.lstrip("/")
            _write(d, {"tasks": "", "cgroup.procs": "", **files})


@pytest.fixture(params=["unified", "hybrid", "legacy"])
def layout(request, tmp_path) -> cgroupfs.Layout:
    root = tmp_path / "cgroup"
    if request.param == "unified":
        make_v2(root)
    elif request.param == "hybrid":
        make_v1(root)
        make_v2(root / "unified")
        # cgroup2 on a hybrid host has no controllers enabled: only cpu.stat.
        for cg in ("", "a", "a/b", "machine.slice/machine-web.scope"):
            for name in ("memory.current", "memory.max", "pids.current", "io.stat"):
                (root / "unified" / cg / name).unlink()
            (root / "unified" / cg / "cpu.stat").write_text("usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n")
    else:
        make_v1(root)
    found = cgroupfs.detect(root)
    assert found.kind == request.param
    return found


def test_each_layout_reads_every_counter(layout):
    with Sampler(layout, fields=C.ALL, root_from_proc=False) as sampler:
        sample = sampler.sample()
    assert set(sample.counters) >= {"/", "/a", "/a/b", "/machine.slice/machine-web.scope"}
    c = sample.counters["/a/b"]
    if layout.kind == "unified":
        assert (c.tasks, c.cpu_ns, c.memory, c.memory_limit) == (4, 2_500_000, 1048576, None)
        assert (c.io_read_bytes, c.io_write_bytes) == (101, 202)
        assert (c.nr_throttled, c.throttled_usec) == (3, 700)
        assert (c.cpu_pressure, c.memory_pressure, c.io_pressure) == (1.5, 0.25, 0.0)
    else:
        # v1 figures: cpuacct (ns), memory.usage_in_bytes, pids, blkio; no pressure files in v1.
        assert (c.tasks, c.cpu_ns, c.memory) == (7, 3_000_000, 2097152)
        assert c.memory_limit is None  # page-rounded LONG_MAX means "no limit"
        assert (c.io_read_bytes, c.io_write_bytes) == (4096, 8192)
        assert (c.nr_throttled, c.throttled_usec) == (2, 9)
        if layout.kind == "legacy":
            assert c.cpu_pressure is None
        else:
            assert c.cpu_pressure == 1.5  # the cgroup2 mount still has PSI files


def test_unknown_is_none_never_a_number(tmp_path):
    root = tmp_path / "cgroup"
    make_v2(root, ("/", "/bare"))
    for name in V2_FILES:
        if name != "cgroup.procs":
            (root / "bare" / name).unlink()
    with Sampler(cgroupfs.detect(root), fields=C.ALL, root_from_proc=False) as sampler:
        bare = sampler.sample().counters["/bare"]
    assert all(v is None for v in bare)


def test_garbage_in_a_counter_file_is_skipped_not_fatal(tmp_path):
    root = tmp_path / "cgroup"
    make_v2(root, ("/", "/x"))
    (root / "x" / "memory.current").write_text("not a number\n")
    with Sampler(cgroupfs.detect(root), root_from_proc=False) as sampler:
        c = sampler.sample().counters["/x"]
    assert c.memory is None and c.tasks == 4


def test_files_stay_open_and_fresh_values_are_read(tmp_path):
    root = tmp_path / "cgroup"
    make_v2(root, ("/", "/x"))
    with Sampler(cgroupfs.detect(root), root_from_proc=False, rewalk_interval=3600) as sampler:
        first = sampler.sample()
        opened = sampler.open_files()
        # Same inode rewritten in place: the kept-open fd must see the new value.
        with open(root / "x" / "cpu.stat", "r+") as f:
            f.write("usage_usec 4500\n")
        second = sampler.sample()
        assert sampler.open_files() == opened
    assert first.counters["/x"].cpu_ns == 2_500_000
    assert second.counters["/x"].cpu_ns == 4_500_000
    assert second.timestamp > first.timestamp


def test_new_and_removed_cgroups_are_picked_up_on_rewalk(tmp_path):
    root = tmp_path / "cgroup"
    make_v2(root, ("/", "/x"))
    with Sampler(cgroupfs.detect(root), root_from_proc=False, rewalk_interval=0) as sampler:
        sampler.sample()
        before = sampler.open_files()
        make_v2(root, ("/y",))
        assert "/y" in sampler.sample().counters
        assert sampler.open_files() > before
        for f in (root / "y").iterdir():
            f.unlink()
        (root / "y").rmdir()
        assert "/y" not in sampler.sample().counters
        assert sampler.open_files() == before


def test_depth_limits_the_walk(tmp_path):
    root = tmp_path / "cgroup"
    make_v2(root, ("/", "/a", "/a/b", "/a/b/c"))
    with Sampler(cgroupfs.detect(root), depth=2, root_from_proc=False) as sampler:
        assert set(sampler.sample().counters) == {"/", "/a", "/a/b"}
    with Sampler(cgroupfs.detect(root), start="/a", depth=1, root_from_proc=False) as sampler:
        assert set(sampler.sample().counters) == {"/a", "/a/b"}


def test_process_counting_sums_up_the_tree(tmp_path):
    root = tmp_path / "cgroup"
    make_v2(root, ("/", "/a", "/a/b"))
    (root / "a" / "cgroup.procs").write_text("10\n11\n")
    (root / "a" / "b" / "cgroup.procs").write_text("12\n")
    with Sampler(cgroupfs.detect(root), count=COUNT_ALL, root_from_proc=False) as sampler:
        got = sampler.sample().counters
    assert (got["/a/b"].tasks, got["/a"].tasks, got["/"].tasks) == (1, 3, 3)


def test_cpu_percent_between_two_fixture_samples(tmp_path):
    root = tmp_path / "cgroup"
    make_v2(root, ("/", "/x"))
    with Sampler(cgroupfs.detect(root), root_from_proc=False, rewalk_interval=3600) as sampler:
        a = sampler.sample()
        with open(root / "x" / "cpu.stat", "r+") as f:
            f.write("usage_usec 9999999\n")
        b = sampler.sample()
    assert rates_between(None, a)["/x"].cpu_percent is None
    pct = rates_between(a, b)["/x"].cpu_percent
    assert pct is not None and pct > 0


@pytest.fixture
def public_dir():
    """A directory every user can traverse (pytest's tmp_path is private to its owner)."""
    path = Path(tempfile.mkdtemp(prefix="nsdash-monitor-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_tree_walk_marks_unreadable_subtree_in_place(public_dir):
    root = public_dir / "cgroup"
    make_v2(root, ("/", "/open", "/secret", "/secret/inner"))
    os.chmod(root / "secret", 0o700)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the reader runs as nobody: root would read anything
        try:
            os.close(r)
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            node = tree.walk(str(root), with_pids=True)
            found = {n.path: (n.unreadable, n.vanished) for n in node.iter()}
            os.write(w, json.dumps(found).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        found = json.loads(f.read() or "{}")
    os.waitpid(pid, 0)
    assert found["/secret"] == [True, False]
    assert found["/open"] == [False, False]
    assert "/secret/inner" not in found


def test_walk_of_a_missing_start_is_marked_vanished(tmp_path):
    root = tmp_path / "cgroup"
    make_v2(root, ("/",))
    node = tree.walk(str(root), "/gone", with_pids=True)
    assert node.vanished and node.children == ()


def test_machine_cgroups_map_to_names(tmp_path):
    state = tmp_path / "state"
    (state / "machines" / "db").mkdir(parents=True)
    from nsdash.machines import state as st

    st.write_state(state / "machines" / "db", st.MachineState(
        name="db", root="/", leader=4242, cgroup="/custom/db", supervisor=1,
        started="2026-01-01T00:00:00Z", since="2026-01-01T00:00:00Z"))
    (state / "machines" / "broken").mkdir()
    (state / "machines" / "broken" / "state.json").write_text("{not json")
    reg = registered_cgroups(state)
    assert reg == {"db": "/custom/db"}
    assert registered_leaders(state) == {"db": 4242}
    mm = MachineMap(reg)
    assert mm.machine_of("/custom/db/payload") == "db"
    assert mm.machine_of("/machine.slice/machine-web.scope") == "web"
    assert mm.machine_of("/machine.slice/machine-my\\x2dbox.scope/init.scope") == "my-box"
    assert mm.machine_of("/system.slice/sshd.service") is None
    assert mm.cgroup_of("web", ["/machine.slice/machine-web.scope"]) == "/machine.slice/machine-web.scope"
    assert mm.cgroup_of("my-box", ["/machine.slice/machine-my\\x2dbox.scope"]) \
        == "/machine.slice/machine-my\\x2dbox.scope"


def test_root_cgroup_reads_proc_like_systemd_cgtop_outside_containers(tmp_path):
    root = tmp_path / "cgroup"
    make_v2(root, ("/", "/a"))
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "loadavg").write_text("0.70 0.34 0.19 2/123 15521\n")
    (proc / "stat").write_text("cpu  100 5 20 9000 40 1 2 3 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
    (proc / "meminfo").write_text("MemTotal:       1000 kB\nMemFree:         100 kB\n"
                                  "MemAvailable:    400 kB\n")
    with Sampler(cgroupfs.detect(root), proc=str(proc), root_from_proc=True) as sampler:
        got = sampler.sample().counters
    tick_ns = 10**9 // os.sysconf("SC_CLK_TCK")
    assert got["/"].tasks == 123
    assert got["/"].cpu_ns == (100 + 5 + 20 + 1 + 2 + 3) * tick_ns  # idle and iowait left out
    assert got["/"].memory == 600 * 1024
    assert got["/a"].tasks == 4  # other cgroups still read their own files


def test_a_counter_turning_odd_after_opening_is_unknown_for_that_refresh_only(tmp_path):
    root = tmp_path / "cgroup"
    make_v2(root, ("/", "/x"))
    with Sampler(cgroupfs.detect(root), root_from_proc=False, rewalk_interval=3600) as sampler:
        assert sampler.sample().counters["/x"].memory == 1048576
        (root / "x" / "memory.current").write_text("garbage")
        odd = sampler.sample().counters["/x"]
        assert odd.memory is None and odd.tasks == 4
        (root / "x" / "memory.current").write_text("2048\n")
        assert sampler.sample().counters["/x"].memory == 2048


@pytest.mark.parametrize(("offered", "memory"), [("", 2097152), ("memory\n", 1048576)])
def test_cgroup2_files_of_controllers_it_does_not_offer_are_not_tried(tmp_path, offered, memory):
    """The kernel gives a cgroup memory.current only where cgroup2's root offers memory (hybrid
    hosts mostly offer none): then the v1 file is read without trying the cgroup2 one first."""
    root = tmp_path / "cgroup"
    make_v1(root)
    make_v2(root / "unified")
    (root / "unified" / "cgroup.controllers").write_text(offered)
    layout = cgroupfs.detect(root)
    assert layout.kind == "hybrid"
    with Sampler(layout, root_from_proc=False) as sampler:
        c = sampler.sample().counters["/a/b"]
    assert c.memory == memory  # the stray cgroup2 file is read only when memory is offered


def test_a_cgroup_in_cgroup2_alone_is_not_looked_for_in_v1(tmp_path, monkeypatch):
    """A guest's own systemd makes its cgroups in cgroup2 only: the full walk saw that, so no
    v1 file is opened for them (systemd-cgtop walks each hierarchy the same way)."""
    root = tmp_path / "cgroup"
    make_v1(root)
    make_v2(root / "unified", cgroups=("/", "/a", "/a/b", "/machine.slice/machine-web.scope",
                                       "/machine.slice/machine-web.scope/init.scope"))
    opened: list[str] = []
    real_open = os.open

    def recording_open(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(posix, "open", recording_open)
    with Sampler(cgroupfs.detect(root), root_from_proc=False) as sampler:
        counters = sampler.sample().counters
    guest = "/machine.slice/machine-web.scope/init.scope"
    assert counters[guest].cpu_ns == 2_500_000  # cgroup2's cpu.stat
    assert counters[guest].memory == 1048576  # cgroup2 offers memory in this fixture
    tried = [p for p in opened if "init.scope" in p]
    assert tried and all(p.startswith(str(root / "unified")) for p in tried), tried
    assert counters["/a/b"].cpu_ns == 3_000_000  # in both: v1's cpuacct first, as before


def test_each_counter_file_is_read_once_per_sample_the_first_included(layout, monkeypatch):
    """Opening a counter file reads it (does it parse?): a sampler sampled once (`cgtop -b -n 1`)
    keeps what that read for its sample, as systemd-cgtop reads each file once a refresh (it
    read them all twice)."""
    names: dict[int, str] = {}
    reads: list[str] = []
    real_open, real_pread = os.open, os.pread

    def recording_open(path, *args, **kwargs):
        fd = real_open(path, *args, **kwargs)
        names[fd] = str(path)
        return fd

    def counting_pread(fd, size, offset):
        reads.append(f"{fd}:{names[fd]}")  # (cpu.stat is opened twice on cgroup2: cpu, throttling)
        return real_pread(fd, size, offset)

    monkeypatch.setattr(posix, "open", recording_open)
    monkeypatch.setattr(posix, "pread", counting_pread)
    with Sampler(layout, fields=C.ALL, root_from_proc=False, rewalk_interval=3600, once=True) as sampler:
        per_sample = []
        for _ in range(2):
            reads.clear()
            sample = sampler.sample()
            # (cgroup.stat says whether to walk again; a full walk reads cgroup.controllers)
            counter_reads = [r for r in reads if not r.endswith(("cgroup.stat", "cgroup.controllers"))]
            per_sample.append((sample.counters, sorted(counter_reads)))
        kept = sampler.open_files()
    (first, first_reads), (second, second_reads) = per_sample
    # Each file once: the second sample reads the kept ones, the first those and the candidates
    # that did not parse (hybrid: cgroup2's cpu.stat holds no throttling figures; v1's does).
    assert kept > 0 and len(second_reads) == kept and second_reads == sorted(set(second_reads))
    assert first_reads == sorted(set(first_reads)) and set(second_reads) <= set(first_reads)
    assert first == second and first["/a/b"].cpu_ns is not None  # the same figures from either read


@pytest.mark.parametrize("once", [False, True])
def test_the_first_rate_counts_the_interval_and_not_the_walk_that_opened_the_files(tmp_path, monkeypatch, once):
    """Every cgroup uses one CPU all the time and each read takes 10 ms: the first rate says 100%
    for each, however long the walk that opened (and read) their files took.  A sampler sampled
    more than once reads its first figures after its timestamp, as every later sample does: the
    walk's own reads, up to its length earlier, made cgtop's second refresh show a busy loop at
    40% of a core as 100-590%.  Sampled once (cgtop -b -n 1) it keeps the walk's reads."""
    root = tmp_path / "cgroup"
    cgroups = ["/", *(f"/c{i}" for i in range(30))]
    make_v2(root, cgroups)
    clock = [1000.0]
    real_pread = os.pread

    def pread(fd, size, offset):
        clock[0] += 0.01
        data = real_pread(fd, size, offset)
        if data.startswith(b"usage_usec"):  # the CPU time used so far: all of the clock's
            return b"usage_usec %d\nuser_usec 0\nsystem_usec 0\n" % round(clock[0] * 1e6)
        return data

    monkeypatch.setattr(posix, "pread", pread)
    monkeypatch.setattr(sampler_module, "time", type("Clock", (), {"monotonic": staticmethod(lambda: clock[0])}))
    with Sampler(cgroupfs.detect(root), root_from_proc=False, rewalk_interval=3600, once=once) as sampler:
        first = sampler.sample()
        clock[0] += 1.0  # the refresh interval
        second = sampler.sample()
    percents = {cg: rates_between(first, second)[cg].cpu_percent for cg in cgroups}
    if once:  # (not what a sampler sampled once is for: its first figures are the walk's)
        # (133-284%: the refresh reads every CPU file before the other files, _Rising)
        assert all(pct is not None and pct > 120 for pct in percents.values()), percents
    else:
        assert all(pct is not None and abs(pct - 100) < 0.5 for pct in percents.values()), percents


@pytest.mark.parametrize("spare", [1000, 2])
def test_the_open_files_limit_is_raised_only_when_the_budget_runs_out(tmp_path, monkeypatch, spare):
    """`cgtop -b -n 1` on a host of a few hundred cgroups stays within the soft limit it was
    given (no `resource` module, no setrlimit); a sampler that needs more raises it, once."""
    root = tmp_path / "cgroup"
    make_v2(root, ("/", "/a", "/b"))
    raised: list[int] = []

    def fake_raise() -> int:
        raised.append(1)
        return sampler_module.FD_RESERVE + 1000

    monkeypatch.setattr(sampler_module, "_soft_nofile", lambda: sampler_module.FD_RESERVE + spare)
    monkeypatch.setattr(sampler_module, "raise_nofile_limit", fake_raise)
    with Sampler(cgroupfs.detect(root), fields=C.ALL, root_from_proc=False) as sampler:
        sampler.sample()
        assert sampler.read_by_name() == 0 and sampler.open_files() > 2  # all kept, either way
        assert raised == ([] if spare == 1000 else [1])
        sampler.reserve(10)  # the dashboard's poller asks for more: raised by then, never twice
    assert len(raised) == 1


def test_the_first_sample_walks_every_hierarchy_whatever_the_interval(layout):
    """The files each figure may come from are worked out by a full walk: the first one is,
    even when the interval would never ask for one (the cgroup2 count alone moved)."""
    with Sampler(layout, fields=C.ALL, root_from_proc=False, rewalk_interval=float("inf")) as sampler:
        c = sampler.sample().counters["/a/b"]
    assert c.cpu_ns is not None and c.memory is not None and c.tasks is not None


def test_a_file_that_fails_half_way_gives_no_figure_in_the_first_sample_either(tmp_path):
    """The first sample's figures come from the reads that opened the files: one whose parser
    wrote a figure and then failed (nr_throttled, then an odd throttled_usec) is not kept, and
    leaves nothing behind, as in every later sample."""
    root = tmp_path / "cgroup"
    make_v2(root, ("/", "/x"))
    (root / "x" / "cpu.stat").write_text("usage_usec 2500\nnr_throttled 3\nthrottled_usec odd\n")
    with Sampler(cgroupfs.detect(root), fields=C.ALL, root_from_proc=False, rewalk_interval=3600) as sampler:
        first, second = sampler.sample().counters["/x"], sampler.sample().counters["/x"]
    assert first == second and first.cpu_ns == 2_500_000 and first.nr_throttled is None


def test_joined_controllers_and_their_symlinks_are_found_as_systemd_mounts_them(tmp_path):
    """A hybrid host as systemd mounts it: cpu,cpuacct and net_cls,net_prio are one hierarchy
    each, with cpu, cpuacct... as symlinks to them; a stray file and a dangling link are not
    hierarchies; cgroup2 at unified."""
    root = tmp_path / "cgroup"
    for name in ("cpu,cpuacct", "memory", "pids", "net_cls,net_prio", "systemd"):
        _write(root / name, {"tasks": "", "cgroup.procs": ""})
    for link, target in (("cpu", "cpu,cpuacct"), ("cpuacct", "cpu,cpuacct"), ("net_cls", "net_cls,net_prio"),
                         ("net_prio", "net_cls,net_prio"), ("gone", "nowhere")):
        (root / link).symlink_to(target)
    (root / "notes").write_text("not a hierarchy\n")
    make_v2(root / "unified", ("/",))
    layout = cgroupfs.detect(root)
    r = str(root)
    assert layout.kind == "hybrid" and layout.unified_dir == f"{r}/unified"
    assert layout.v1_dirs == {"cpu": f"{r}/cpu,cpuacct", "cpuacct": f"{r}/cpu,cpuacct", "memory": f"{r}/memory",
                              "pids": f"{r}/pids", "net_cls": f"{r}/net_cls,net_prio",
                              "net_prio": f"{r}/net_cls,net_prio", "systemd": f"{r}/systemd"}
    assert layout.hierarchy_dirs()[0] == f"{r}/unified" and len(layout.hierarchy_dirs()) == 6


def _one_by_one(sampler: Sampler) -> Sampler:
    """SAMPLER reading every cgroup file by file, as before files were read a column at a time."""
    sampler._make_plan = lambda: []  # type: ignore[method-assign]
    return sampler


def test_files_read_a_column_at_a_time_give_what_one_by_one_reads_give(layout):
    with Sampler(layout, fields=C.ALL, root_from_proc=False, rewalk_interval=3600) as columns, \
            _one_by_one(Sampler(layout, fields=C.ALL, root_from_proc=False, rewalk_interval=3600)) as single:
        for _ in range(3):  # the first reads what opening read; the others read columns
            assert columns.sample().counters == single.sample().counters
        assert columns._plan and sum(len(g.paths) for g in columns._plan) == len(columns._entries)
        assert single._plan == []


def test_a_number_longer_than_a_column_reads_is_read_whole_as_before(tmp_path):
    root = tmp_path / "cgroup"
    make_v2(root, ("/", "/x", "/y"))
    (root / "x" / "memory.current").write_text("0" * 80 + "2048\n")  # int() reads it; 64 bytes would not
    with Sampler(cgroupfs.detect(root), root_from_proc=False, rewalk_interval=3600) as sampler:
        for _ in range(3):
            got = sampler.sample().counters
            assert (got["/x"].memory, got["/y"].memory, got["/x"].tasks) == (2048, 1048576, 4)
