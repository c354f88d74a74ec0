"""Which counter files a refresh reads: a CPU or recursive I/O file only where the parent's moved.

The kernel's rule the sampler leans on (counters.RISING): such a file only grows and takes in
every descendant's, so a parent that reads the same vouches for its subtree.  The fixture trees
here keep that rule where a test says so (a change is written into the cgroup and every ancestor
but the root), and break it where a test shows what is not read.
"""

from __future__ import annotations

import errno
import os
import posix
from pathlib import Path

import pytest

from nsdash.monitor import counters as C
from nsdash.monitor.sampler import QUICK, Sampler
from nsdash.system import cgroupfs
from tests.unit.test_monitor_layouts import make_v1, make_v2

TREE = ("/", "/a", "/a/b", "/a/c", "/a/b/d", "/z", "/z/y")


class Reads:
    """The files os.pread reads, by name (os.open is watched to name the descriptors)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.names: dict[int, str] = {}
        self.read: list[str] = []
        self.fail: set[str] = set()  # names whose next read answers ENODEV
        real_open, real_pread = os.open, os.pread

        def recording_open(path, *args, **kwargs):
            fd = real_open(path, *args, **kwargs)
            self.names[fd] = str(path)
            return fd

        def recording_pread(fd, size, offset):
            name = self.names.get(fd, "?")
            self.read.append(name)
            if name in self.fail:
                self.fail.discard(name)
                raise OSError(errno.ENODEV, "gone")
            return real_pread(fd, size, offset)

        monkeypatch.setattr(posix, "open", recording_open)
        monkeypatch.setattr(posix, "pread", recording_pread)

    def of(self, root: Path, file: str) -> list[str]:
        """The cgroups whose FILE (under ROOT) was read since the last call, sorted."""
        found = sorted("/" + str(Path(n).parent.relative_to(root)).lstrip(".")
                       for n in self.read if n.startswith(str(root) + "/") and n.endswith("/" + file))
        return [p if p != "/" else "/" for p in found]

    def clear(self) -> None:
        self.read.clear()


def _bump(root: Path, path: str, usec: int) -> None:
    """PATH used USEC more CPU: in its cpu.stat and its ancestors' (the root's is host-wide)."""
    while path != "/":
        f = root / path.lstrip("/") / "cpu.stat"
        used = int(f.read_text().split()[1]) + usec
        f.write_text(f"usage_usec {used}\nuser_usec {used}\nsystem_usec 0\n")
        path = path.rsplit("/", 1)[0] or "/"


@pytest.fixture
def unified(tmp_path) -> Path:
    root = tmp_path / "cgroup"
    make_v2(root, TREE)
    return root


def _sampler(root: Path, **kwargs) -> Sampler:
    return Sampler(cgroupfs.detect(root), root_from_proc=False, rewalk_interval=3600, **kwargs)


def test_an_unchanged_parent_keeps_its_subtree_unread(unified, monkeypatch):
    reads = Reads(monkeypatch)
    with _sampler(unified) as sampler:
        first = sampler.sample().counters
        reads.clear()
        second = sampler.sample().counters
    # The root and its children every time (the root is no judge); below them nothing had moved.
    assert reads.of(unified, "cpu.stat") == reads.of(unified, "io.stat") == ["/", "/a", "/z"]
    # Memory and tasks go up and down: read everywhere, every time.
    assert reads.of(unified, "memory.current") == reads.of(unified, "pids.current") == sorted(TREE)
    assert second == first and second["/a/b/d"].cpu_ns == 2_500_000


def test_a_moved_cgroup_reads_its_ancestors_and_their_children(unified, monkeypatch):
    reads = Reads(monkeypatch)
    with _sampler(unified) as sampler:
        sampler.sample()
        _bump(unified, "/a/b/d", 1000)
        reads.clear()
        got = sampler.sample().counters
        assert reads.of(unified, "cpu.stat") == ["/", "/a", "/a/b", "/a/b/d", "/a/c", "/z"]
        assert (got["/a/b/d"].cpu_ns, got["/a/b"].cpu_ns, got["/a/c"].cpu_ns) == (3_500_000, 3_500_000, 2_500_000)
        # A leaf's own change without its parent's is what the kernel never does: not read.
        (unified / "a/c/cpu.stat").write_text("usage_usec 9999\n")
        reads.clear()
        assert sampler.sample().counters["/a/c"].cpu_ns == 2_500_000
        assert reads.of(unified, "cpu.stat") == ["/", "/a", "/z"]


def test_a_new_cgroup_is_read_after_its_ancestors_and_the_others_stay_unread(unified, monkeypatch):
    reads = Reads(monkeypatch)
    with _sampler(unified) as sampler:
        sampler.sample()
        sampler.sample()
        make_v2(unified, ("/a/b/e",))
        sampler._rewalk(QUICK)  # (cgroup2's count of descendants moved; a full walk reads every file)
        reads.clear()
        assert "/a/b/e" in sampler.sample().counters
        # Its ancestors and their children once (read after them, it is judged by them), /z's not.
        assert reads.of(unified, "cpu.stat") == ["/", "/a", "/a/b", "/a/b/d", "/a/b/e", "/a/c", "/z"]
        reads.clear()
        sampler.sample()
        assert reads.of(unified, "cpu.stat") == ["/", "/a", "/z"]


def test_a_cgroup_made_again_under_its_name_is_opened_again_by_the_walk(unified, monkeypatch):
    """/a/b/d removed and made again below an idle /a/b: nothing reads its old files (its
    parent's CPU reads the same), so only the walk can tell, by the directory's inode number;
    then the new one's figures are read, and /z's subtree stays unread."""
    import shutil

    reads = Reads(monkeypatch)
    with _sampler(unified) as sampler:
        sampler.sample()
        sampler.sample()
        (unified / "a/b/d").rename(unified / "old")  # (the new directory cannot take its inode)
        make_v2(unified, ("/a/b/d",))
        shutil.rmtree(unified / "old")
        (unified / "a/b/d/cpu.stat").write_text("usage_usec 7\nuser_usec 7\nsystem_usec 0\n")
        sampler._rewalk()
        reads.clear()
        assert sampler.sample().counters["/a/b/d"].cpu_ns == 7000
        assert reads.of(unified, "cpu.stat") == ["/", "/a", "/a/b", "/a/b/d", "/a/c", "/z"]
        sampler._rewalk()  # (the same directory: the files stay open, nothing read again)
        reads.clear()
        sampler.sample()
        assert reads.of(unified, "cpu.stat") == ["/", "/a", "/z"]


def test_a_descriptor_number_reused_by_a_new_cgroup_carries_nothing_over(unified, monkeypatch):
    """/z/y removed and /a/b/e made in its stead (the count of cgroups the same): the new one's
    files take the numbers /z/y's closed; the figures kept across the plan by descriptor are
    /z/y's and must not become /a/b/e's."""
    import shutil

    numbers = Reads(monkeypatch).names
    with _sampler(unified) as sampler:
        sampler.sample()
        sampler.sample()
        old = {fd for fd, name in numbers.items() if name.startswith(str(unified / "z/y") + "/")}
        shutil.rmtree(unified / "z/y")
        make_v2(unified, ("/a/b/e",))
        (unified / "a/b/e/cpu.stat").write_text("usage_usec 7\nuser_usec 7\nsystem_usec 0\n")
        sampler._rewalk(QUICK)
        new = {fd for fd, name in numbers.items() if name.startswith(str(unified / "a/b/e") + "/")}
        assert old & new, (old, new)  # (the numbers came back: what this test is about)
        got = sampler.sample().counters
        assert "/z/y" not in got and got["/a/b/e"].cpu_ns == 7000


def test_a_walk_that_finds_the_same_cgroups_keeps_the_plan(unified):
    with _sampler(unified) as sampler:
        sampler.sample()
        plan = sampler._plan
        sampler._rewalk()
        assert sampler._plan is plan
        make_v2(unified, ("/z/x",))
        sampler._rewalk()
        assert sampler._plan is None


def test_a_failed_read_reads_every_file_of_the_next_refresh(unified, monkeypatch):
    reads = Reads(monkeypatch)
    with _sampler(unified) as sampler:
        sampler.sample()
        sampler.sample()
        _bump(unified, "/a/b", 1000)
        reads.fail.add(str(unified / "a/b/cpu.stat"))
        reads.clear()
        got = sampler.sample().counters  # that refresh read one by one (the file answers again)
        assert got["/a/b"].cpu_ns == 3_500_000 and set(got) == set(TREE)
        reads.clear()
        sampler.sample()
        assert reads.of(unified, "cpu.stat") == sorted(TREE)  # what a broken wave read vouches for nothing
        reads.clear()
        sampler.sample()
        assert reads.of(unified, "cpu.stat") == ["/", "/a", "/z"]


@pytest.mark.parametrize("recursive", [True, False])
def test_only_recursive_blkio_files_vouch_for_a_subtree(tmp_path, monkeypatch, recursive):
    root = tmp_path / "cgroup"
    make_v1(root, TREE)
    if not recursive:  # only the cgroup's own I/O: nothing to judge children by
        for cg in TREE:
            d = root / "blkio" / cg.lstrip("/")
            (d / "blkio.throttle.io_service_bytes").write_text("Total 0\n")
            (d / "blkio.throttle.io_service_bytes_recursive").unlink()
    reads = Reads(monkeypatch)
    with _sampler(root, fields=C.ALL) as sampler:
        sampler.sample()
        reads.clear()
        sampler.sample()
    assert reads.of(root / "cpuacct", "cpuacct.usage") == ["/", "/a", "/z"]
    blkio = "blkio.throttle.io_service_bytes" + ("_recursive" if recursive else "")
    assert reads.of(root / "blkio", blkio) == (["/", "/a", "/z"] if recursive else sorted(TREE))
    assert reads.of(root / "cpu", "cpu.stat") == sorted(TREE)  # throttling: the cgroup's own


def test_figures_kept_unread_are_those_a_read_of_every_file_gives(unified):
    """Changes that keep the kernel's rule, sampled by the pruning sampler and by one reading
    every file one by one: the same figures every refresh (/z's subtree empty throughout)."""
    _empty(unified, "/z", "/z/y")
    with _sampler(unified, fields=C.ALL) as pruned, _sampler(unified, fields=C.ALL) as single:
        single._make_plan = lambda: []  # type: ignore[method-assign]
        for step, moved in enumerate(["", "/a/b/d", "/z/y", "/a/c", "", "/a/b", "/a/b/d"]):
            if moved:
                _bump(unified, moved, 10 * step + 1)
            assert pruned.sample().counters == single.sample().counters, (step, moved)
        assert pruned._rising and single._rising == []


def _empty(root: Path, *paths: str) -> None:
    for path in paths:
        d = root / path.lstrip("/")
        (d / "pids.current").write_text("0\n")
        (d / "memory.current").write_text("0\n")


def test_an_empty_cgroup_reads_no_tasks_nor_memory_below_it(unified, monkeypatch):
    """Tasks and memory are counted up every ancestor and never below zero (counters.ZERO_BELOW):
    a cgroup that reads 0 has 0 in each descendant, which is not read."""
    _empty(unified, "/a", "/a/b", "/a/c", "/a/b/d")
    reads = Reads(monkeypatch)
    with _sampler(unified) as sampler:
        sampler.sample()
        reads.clear()
        got = sampler.sample().counters
        assert reads.of(unified, "pids.current") == reads.of(unified, "memory.current") == ["/", "/a", "/z", "/z/y"]
        assert {p: (got[p].tasks, got[p].memory) for p in ("/a/b", "/a/b/d")} == {"/a/b": (0, 0), "/a/b/d": (0, 0)}
        # A process starts in /a/b/d: counted there and in every ancestor, read down to it.
        for path in ("/a", "/a/b", "/a/b/d"):
            (unified / path.lstrip("/") / "pids.current").write_text("1\n")
        reads.clear()
        got = sampler.sample().counters
        assert reads.of(unified, "pids.current") == ["/", "/a", "/a/b", "/a/b/d", "/a/c", "/z", "/z/y"]
        assert (got["/a/b/d"].tasks, got["/a/c"].tasks, got["/a/b/d"].memory) == (1, 0, 0)
        # It ends: /a reads 0 again, and so does everything below it, unread.
        for path in ("/a", "/a/b", "/a/b/d"):
            (unified / path.lstrip("/") / "pids.current").write_text("0\n")
        reads.clear()
        got = sampler.sample().counters
        assert reads.of(unified, "pids.current") == ["/", "/a", "/z", "/z/y"]
        assert (got["/a/b"].tasks, got["/a/b/d"].tasks) == (0, 0)


@pytest.mark.parametrize("hierarchical", [True, False])
def test_v1_memory_judges_only_where_it_is_charged_up_the_tree(tmp_path, monkeypatch, hierarchical):
    """v1's memory.use_hierarchy 0 (kernels before 5.11 let a cgroup choose it) leaves a parent
    at 0 with children using memory: then every cgroup's memory is read."""
    root = tmp_path / "cgroup"
    make_v1(root, TREE)
    (root / "memory" / "memory.use_hierarchy").write_text("1\n" if hierarchical else "0\n")
    for cg in ("/a", "/a/b", "/a/c", "/a/b/d"):
        (root / "memory" / cg.lstrip("/") / "memory.usage_in_bytes").write_text("0\n")
    reads = Reads(monkeypatch)
    with _sampler(root) as sampler:
        sampler.sample()
        reads.clear()
        sampler.sample()
    expected = ["/", "/a", "/z", "/z/y"] if hierarchical else sorted(TREE)
    assert reads.of(root / "memory", "memory.usage_in_bytes") == expected
    assert reads.of(root / "pids", "pids.current") == sorted(TREE)  # (7 tasks in each)
