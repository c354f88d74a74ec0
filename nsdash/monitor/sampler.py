"""The counter sampler: counter files stay open and each refresh re-reads them with pread.

A refresh costs at most one pread per counter per cgroup, made for all the cgroups with the
same files in one go and parsed a column at a time (_Group).  CPU time, the recursive I/O files,
tasks and memory are read wave by wave from the top instead (_Rising): the kernel's sums let an
unchanged CPU or I/O figure, or a task count or memory of 0, vouch for the whole subtree below it,
whose files are then not read (counters.RISING, counters.ZERO_BELOW).  The hierarchies are walked
again only when the set of cgroups may have changed: at once when the cgroup2
root's cgroup.stat reports a different number of descendants (one pread), and
otherwise every `rewalk_interval` seconds (v1-only cgroups have no such
signal).  A cgroup that vanished is noticed when its kept-open files are read:
they answer ENODEV, and it is dropped and its files closed; one made again under its
name is noticed by the walk (another inode number), its files opened again.

Thousands of cgroups need tens of thousands of open files: the sampler raises
its soft RLIMIT_NOFILE to the hard limit, keeps a reserve of descriptors free
for everyone else, and once the budget is spent (or open() says EMFILE/ENFILE)
the remaining counters are read open-read-close instead: slower, never failing.
"""

from __future__ import annotations

import errno
import posix
import time
from itertools import repeat

from nsdash.monitor import counters as C
from nsdash.monitor.tree import list_cgroups, normalize, primary_mount
from nsdash.system import bareos, cgroupfs
from nsdash.system.frozen import Frozen

TYPE_CHECKING = False  # mypy reads this as True; collections.abc stays unimported at run time
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

_GONE = (errno.ENOENT, errno.ENODEV, errno.ESTALE)
_NO_FDS = (errno.EMFILE, errno.ENFILE)
FD_RESERVE = 256  # descriptors left free for the rest of the process (sockets, PTYs, ...)
_PF_KTHREAD = 0x00200000

FULL, QUICK = "full", "quick"  # how the hierarchies are walked again (Sampler._rewalk)

# How tasks are counted, as systemd-cgtop's default, -P and -k.
COUNT_PIDS, COUNT_USERSPACE, COUNT_ALL = "pids", "userspace", "all"

# A class's __dict__ is a read-only mapping proxy: the type that types.MappingProxyType names
# (types.py spells it this way), without importing types on `nsdash cgtop -b`'s path.
MappingProxyType = type(type.__dict__)


class Sample(Frozen):
    """Every sampled cgroup's Counters at one instant (time.monotonic() seconds).

    Frozen, not a dataclass: `nsdash cgtop -b` would import dataclasses (inspect, ast)
    for it alone."""

    timestamp: float
    counters: Mapping[str, C.Counters]
    unreadable: frozenset[str] = frozenset()  # cgroups whose listing or files were refused
    start: str = "/"
    depth: int | None = None

    def paths(self) -> list[str]:
        return list(self.counters)


class _Entry:
    """One cgroup's open counter files (mutable: the sampler fills and repairs it)."""

    __slots__ = ("fds", "names", "parsers", "kinds", "procs_fd", "procs_name", "incomplete", "fresh")

    def __init__(self, keep_reads: bool) -> None:
        self.fds: list[int] = []  # -1: not kept open, read by name each time
        self.names: list[str] = []
        self.parsers: list[C.Parser] = []
        self.kinds: list[str | None] = []  # a RISING or ZERO_BELOW file: its mount and name (_Rising's key)
        # KEEP_READS (a sampler sampled once): what opening the files read (each is read to see
        # that it parses) is the figures of the sample that opened them, which then reads none
        # of them again.  None after it, and always on a sampler whose samples give rates.
        self.fresh: list | None = [None] * C.NFIELDS if keep_reads else None
        self.procs_fd = -1  # cgroup.procs, when tasks are counted from processes
        self.procs_name = ""  # set when cgroup.procs is read by name (no descriptor to spare)
        self.incomplete = False  # a file could not be opened even for a moment (EMFILE): retry


class _Rising:
    """One kind of counters.RISING or ZERO_BELOW file (one name in one hierarchy) of the cgroups
    in the plan.

    A refresh reads the files of the cgroups with no parent here (the tops) and then, wave by
    wave, the children of those that do not vouch for their subtree.  A RISING file vouches when
    it reads as it did last time: its subtree keeps its last figures unread (a host's idle
    cgroups, most of them).  The children come after their parent, so each kept figure was read
    after the parent's figure it is judged by.  A ZERO_BELOW file vouches when it reads 0: its
    subtree is 0 (empty cgroups)."""

    __slots__ = ("parse", "zero", "fields", "size", "fds", "last", "values", "children", "tops", "_parent",
                 "_slot_of")

    def __init__(self, parse: C.Parser, zero: bool = False) -> None:
        self.parse = parse
        self.zero = zero  # ZERO_BELOW (else RISING)
        self.fields = C.WRITES[parse]
        self.size = C.read_size(parse)
        self.fds: list[int] = []  # by slot, parents before children
        self.last: list[bytes | None] = []  # what each file read last (None: nothing yet, read it)
        self.values: list[list] = [[] for _ in self.fields]  # its figures, by field and slot
        self.children: list[list[int]] = []
        self.tops: list[int] = []  # read every refresh
        self._parent: list[int] = []  # -1: a top
        self._slot_of: dict[str, int] = {}

    def add(self, path: str, fd: int, kept: tuple | None) -> int:
        """PATH's file (after its parent's); KEPT: (data, figures) from the last plan, if any."""
        slot = len(self.fds)
        self.fds.append(fd)
        self.children.append([])
        self._slot_of[path] = slot
        parent = self._slot_of.get(path.rsplit("/", 1)[0] or "/", -1)
        self._parent.append(parent)
        if parent < 0:
            self.tops.append(slot)
        else:
            self.children[parent].append(slot)
        if self.zero:
            self.last.append(None)  # (unused: nothing is kept from one refresh to the next)
            self.values[0].append(None)
        elif kept is None:
            self.last.append(None)
            for values in self.values:
                values.append(None)
            # Its ancestors read again, with every child of theirs: read before them, this file
            # could miss what they count (the rule above).
            while parent >= 0 and self.last[parent] is not None:
                self.last[parent] = None
                parent = self._parent[parent]
        else:
            self.last.append(kept[0])
            for values, value in zip(self.values, kept[1], strict=True):
                values.append(value)
        return slot

    def read(self) -> None:
        """Read the files that may have moved (OSError or ValueError: this kind's state is void)."""
        if self.zero:
            self._read_zero()
            return
        fds, last, children, parse = self.fds, self.last, self.children, self.parse
        todo = self.tops
        while todo:
            datas = list(map(posix.pread, map(fds.__getitem__, todo), repeat(self.size), _ZERO))
            moved: list[int] = []
            moved_datas: list[bytes] = []
            for slot, data in zip(todo, datas, strict=True):
                if data != last[slot]:
                    last[slot] = data
                    moved.append(slot)
                    moved_datas.append(data)
            for values, column in zip(self.values, C.column(parse, moved_datas), strict=True):
                for slot, value in zip(moved, column, strict=True):
                    values[slot] = value
            todo = [child for slot in moved for child in children[slot]]

    def _read_zero(self) -> None:
        fds, children, values = self.fds, self.children, self.values[0]
        todo = self.tops
        while todo:
            datas = list(map(posix.pread, map(fds.__getitem__, todo), repeat(self.size), _ZERO))
            below = []
            for slot, value in zip(todo, C.column(self.parse, datas)[0], strict=True):
                values[slot] = value
                if value:
                    below += children[slot]
                else:  # its subtree is 0: made so, down to what is 0 already (its own subtree is)
                    stack = list(children[slot])
                    while stack:
                        child = stack.pop()
                        if values[child] != 0:
                            values[child] = 0
                            stack += children[child]
            todo = below

    def kept(self, into: dict[int, tuple], released: set[int]) -> None:
        """Each file's (data, figures) by descriptor, for the next plan (RELEASED: closed since)."""
        if self.zero:
            return
        for slot, fd in enumerate(self.fds):
            if fd not in released:
                into[fd] = (self.last[slot], tuple(values[slot] for values in self.values))


class _Group:
    """Cgroups with the same kept-open files: every file of all of them is read in one go and
    parsed a column at a time (counters.column), the Counters made without a Python call each.
    Their counters.RISING files are read by _Rising first; the group takes their figures.

    The reads go cgroup by cgroup, each cgroup's files one after another: file by file (all the
    cgroups' memory.usage_in_bytes, then all their pids.current, ...) took the kernel a fifth
    longer here, its structures of each cgroup fetched again for each file."""

    __slots__ = ("paths", "parsers", "fds", "sizes", "rising", "_row_sizes")

    def __init__(self, parsers: list[C.Parser], rising: list[_Rising]) -> None:
        self.paths: list[str] = []
        self.parsers = list(parsers)  # the files read here
        self.fds: list[int] = []  # each cgroup's files in a row
        self.sizes: list[int] = []  # how much of each to read
        self.rising: list[tuple[_Rising, list[int]]] = [(kind, []) for kind in rising]  # each kind's slot of each cgroup
        self._row_sizes = [C.read_size(parse) for parse in parsers]

    def add(self, path: str, fds: list[int], slots: list[int]) -> None:
        self.paths.append(path)
        self.fds += fds
        self.sizes += self._row_sizes
        for (_, kind_slots), slot in zip(self.rising, slots, strict=True):
            kind_slots.append(slot)

    def read(self) -> list[C.Counters]:
        """Every cgroup's Counters, in the order added (OSError or ValueError: read them one by one)."""
        if not self.parsers and not self.rising:  # no file at all: every figure unknown
            return [C.Counters() for _ in self.paths]
        columns: list[Iterable] = [_NONE] * C.NFIELDS
        if self.parsers:
            datas = list(map(posix.pread, self.fds, self.sizes, _ZERO))
            step = len(self.parsers)
            for first, parse in enumerate(self.parsers):
                for field, values in zip(C.WRITES[parse], C.column(parse, datas[first::step]), strict=True):
                    columns[field] = values
        for kind, slots in self.rising:
            for field, values in zip(kind.fields, kind.values, strict=True):
                columns[field] = list(map(values.__getitem__, slots))
        return list(map(_tuple_new, repeat(C.Counters), zip(*columns, strict=False)))  # (the unknown ones repeat)


_NONE = repeat(None)
_ZERO = repeat(0)
_tuple_new = tuple.__new__


def _soft_nofile() -> int:
    """The soft RLIMIT_NOFILE now in force (sysconf's OPEN_MAX is getrlimit's soft limit)."""
    try:
        soft = posix.sysconf("SC_OPEN_MAX")
    except (ValueError, OSError):
        soft = -1
    return soft if soft >= 0 else 1024


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit now in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        want = hard if hard != resource.RLIM_INFINITY else 1 << 20
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def _read_by_name(filename: str) -> bytes:
    fd = posix.open(filename, posix.O_RDONLY | posix.O_CLOEXEC)
    try:
        return _pread_all(fd)
    finally:
        posix.close(fd)


class Sampler:
    """Samples every cgroup under START (DEPTH levels deep) on every layout.

    `fields` picks figures from counters.SOURCES (counters.BASIC by default;
    extras cost one more pread each).  `count` is how tasks are counted:
    COUNT_PIDS (pids.current), COUNT_USERSPACE (processes without kernel
    threads, like `systemd-cgtop -P`) or COUNT_ALL (`-k`); process counts are
    summed up the tree like systemd-cgtop's --recursive=yes.

    `once`: only one sample will be taken (`cgtop -b -n 1`): the figures its walk read while
    opening the files are its own, each file read once.  Samples that are compared read every
    file after their timestamp, the first one too: figures the walk read, up to its whole
    length earlier, made the first rate count the walk's time as well (a busy loop given 40%
    of a core showed 100-590% on cgtop's second refresh, 5,000 cgroups on a loaded host).
    """

    def __init__(self, layout: cgroupfs.Layout | None = None, start: str = "/",
                 depth: int | None = None, fields: Iterable[str] = C.BASIC,
                 count: str = COUNT_PIDS, proc: str = "/proc",
                 root_from_proc: bool | None = None, rewalk_interval: float = 5.0,
                 once: bool = False) -> None:
        self.layout = layout or cgroupfs.detect()
        self.start = normalize(start)
        self.depth = depth
        self.fields = frozenset(fields) & C.ALL
        self.count = count
        self.proc = proc
        self.rewalk_interval = rewalk_interval
        self.once = once
        if root_from_proc is None:
            root_from_proc = self.layout.root_dir == cgroupfs.DEFAULT_ROOT_DIR and C.root_from_proc()
        self._root_from_proc = root_from_proc and self.start == "/"
        self._procs_mount = primary_mount(self.layout)
        self._hierarchies: dict[str, object] = {}  # mount -> _hierarchy(mount)
        self._mount_of_key = self._resolve_keys()
        self._v2_controllers: frozenset[str] | None = None  # read by each full walk (the first comes first)
        self._files: list[tuple[str, list[tuple[str, str, C.Parser, str | None]]]] | None = None  # by full walks
        self._walk_mounts = self._mounts_to_walk()
        # Each key's hierarchy as walked (cpu and cpuacct share one mount, walked once).
        walked = {self._hierarchy(m): m for m in self._walk_mounts}
        self._walk_of_key = {k: walked[r] for k, m in self._mount_of_key.items()
                             if (r := self._hierarchy(m)) in walked}
        # cgroup2's mount among them, when there are others to spare on a quick walk.
        unified = self._mount_of_key.get("")
        self._unified_walk = unified if unified in self._walk_mounts and len(self._walk_mounts) > 1 else None
        self._elsewhere: list[str] = []  # found by the last full walk in v1 hierarchies only
        self._unreadable_elsewhere: set[str] = set()
        self._entries: dict[str, _Entry] = {}
        self._plan: list[_Group] | None = None  # sample()'s groups; None: made again (entries changed)
        self._rising: list[_Rising] = []  # the plan's RISING files, read before its groups
        self._released: set[int] = set()  # descriptors closed since the plan was made
        self._unreadable: frozenset[str] = frozenset()
        self._last_walk = -1e18
        self._stat_fd = self._open_descendant_counter()
        self._descendants: bytes | None = None
        self._inodes: dict[str, dict[str, int]] = {}  # walked mount -> its cgroups' inode numbers at the last walk
        self._kthread: dict[int, bool] = {}
        self._judges = C.RISING | C.ZERO_BELOW
        memory = self.layout.v1_dirs.get("memory")
        if memory is not None and not _hierarchical(memory):  # (a kernel before 5.11)
            self._judges = self._judges - {("memory.usage_in_bytes", C.SOURCES["memory"][1][2])}
        # Counter files kept open, and how many may be: past that, open-read-close.  The budget
        # starts from the soft limit as it is (sysconf reads it: no `resource` module) and is
        # raised to the hard limit only when it runs out (_raise_budget): a host of a few
        # hundred cgroups, and every `cgtop -b -n 1`, never needs more.
        self._kept = 0
        self._incomplete = False  # some entry lacks files for want of descriptors
        self._fd_budget = max(0, _soft_nofile() - FD_RESERVE)
        self._budget_raised = False

    # ------------------------------------------------------------ public

    def sample(self) -> Sample:
        """Read every counter once; walk the hierarchies first if they may have changed."""
        how = self._needs_walk()
        if how is not None:
            self._rewalk(how)
        if self._plan is None:
            self._plan = self._make_plan()
        plan = self._plan
        now = time.monotonic()
        fast: dict[str, C.Counters] = {}
        try:
            for kind in self._rising:
                kind.read()
        except (OSError, ValueError):
            # Read one by one this time, and every file of the next plan (what a wave read is
            # no judge of what it did not come to read).
            self._rising, self._plan, plan = [], None, []
        for group in plan:
            try:
                fast.update(zip(group.paths, group.read(), strict=True))
            except (OSError, ValueError):
                self._plan = None  # its cgroups are read one by one below (a gone one is dropped)
        gone: list[str] = []
        unreadable = set(self._unreadable)
        if len(plan) == 1 and len(fast) == len(self._entries):
            out = fast  # one kind of cgroup, every one read at once: already in the entries' order
        else:
            out = {}
            for path, entry in self._entries.items():
                counters = fast.get(path)
                if counters is None:
                    counters = self._read_entry(entry, path, unreadable)
                    if counters is None:
                        gone.append(path)
                        continue
                out[path] = counters
        for path in gone:
            self._close_entry(self._entries.pop(path))
        if gone:
            # Gone although no walk saw it go: removed since, or removed and made again under its
            # name (a restarted unit: the count of descendants the same). Walk at the next refresh.
            if self._stat_fd >= 0:
                self._descendants = None  # a quick walk (cgroup2's)
            else:
                self._last_walk = -1e18  # a full one
        if self.count != COUNT_PIDS:
            out = _sum_tasks_up(out)
        return Sample(now, MappingProxyType(out), frozenset(unreadable), self.start, self.depth)

    def _make_plan(self) -> list[_Group]:
        """The cgroups whose files are all kept open, grouped by which files they have, for
        sample() to read a file of all of them at once; the others (just opened, read by name,
        processes counted) are read one by one."""
        kept: dict[int, tuple] = {}
        for old in self._rising:
            old.kept(kept, self._released)
        self._released.clear()
        self._rising = []
        if self.count != COUNT_PIDS:
            return []
        rising: dict[str, _Rising] = {}
        groups: dict[tuple, _Group] = {}
        for path, entry in self._entries.items():  # (parents first)
            if entry.fresh is not None or -1 in entry.fds:
                continue
            key = tuple(zip(entry.parsers, entry.kinds, strict=True))
            group = groups.get(key)
            if group is None:
                kinds = [rising.get(k) or rising.setdefault(k, _Rising(p, (k[k.rfind("/") + 1:], p) in C.ZERO_BELOW))
                         for p, k in key if k is not None]
                group = groups[key] = _Group([p for p, k in key if k is None], kinds)
            fds, slots = [], []
            for fd, kind in zip(entry.fds, entry.kinds, strict=True):
                if kind is None:
                    fds.append(fd)
                else:
                    slots.append(rising[kind].add(path, fd, kept.get(fd)))
            group.add(path, fds, slots)
        self._rising = list(rising.values())
        return list(groups.values())

    def _read_entry(self, entry: _Entry, path: str, unreadable: set[str]) -> C.Counters | None:
        """One cgroup's figures, file by file (None: it is gone)."""
        values = entry.fresh
        files: Iterable[tuple[int, str, C.Parser]] = ()  # the walk that opened them read them
        if values is None:
            values = [None] * C.NFIELDS
            files = zip(entry.fds, entry.names, entry.parsers, strict=True)
        else:
            entry.fresh = None
            self._plan = None  # it joins a group from the next refresh
        pread = posix.pread
        counting = self.count != COUNT_PIDS
        try:
            for fd, name, parse in files:
                try:
                    parse(pread(fd, 4096, 0) if fd >= 0 else _read_by_name(name), values)
                except ValueError:
                    continue  # a figure the kernel wrote oddly stays unknown
                except OSError as e:
                    if fd >= 0 or e.errno not in _NO_FDS:
                        raise
                    unreadable.add(path)  # no descriptor free even for a moment: unknown now
            if counting and entry.procs_fd >= 0:
                values[C.TASKS] = self._count_procs(_pread_all(entry.procs_fd))
            elif counting and entry.procs_name:
                values[C.TASKS] = self._count_procs(_read_by_name(entry.procs_name))
        except OSError as e:
            if e.errno in _GONE:
                return None
            unreadable.add(path)  # keep what was read; the rest stays None
        return C.Counters._make(values)

    def reserve(self, wanted: int) -> int:
        """Give up to WANTED descriptors of this sampler's budget to another keeper of files
        (the poller's kept cgroup.procs, tree.KeptProcs): at most half of what is left, so
        the two together never eat the reserve the rest of the process needs."""
        self._raise_budget()  # (the dashboard's poller: it will keep thousands)
        given = max(0, min(wanted, (self._fd_budget - self._kept) // 2))
        self._fd_budget -= given
        return given

    def close(self) -> None:
        for entry in self._entries.values():
            self._close_entry(entry)
        self._entries.clear()
        if self._stat_fd >= 0:
            posix.close(self._stat_fd)
            self._stat_fd = -1

    def __enter__(self) -> Sampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open_files(self) -> int:
        """How many counter files are open (for tests and the benchmark)."""
        return sum(sum(fd >= 0 for fd in e.fds) + (e.procs_fd >= 0) for e in self._entries.values())

    def read_by_name(self) -> int:
        """How many counter files are read open-read-close for want of descriptors."""
        return sum(sum(fd < 0 for fd in e.fds) + bool(e.procs_name) for e in self._entries.values())

    # ------------------------------------------------------------ walking

    def _resolve_keys(self) -> dict[str, str]:
        keys: dict[str, str] = {}
        if self.layout.unified_dir is not None:
            keys[""] = self.layout.unified_dir
        for ctrl, path in self.layout.v1_dirs.items():
            keys[ctrl] = path
        return keys

    def _available_v2_controllers(self) -> frozenset[str] | None:
        """The controllers cgroup2's root offers (None: unknown, every file is tried)."""
        unified = self._mount_of_key.get("")
        if unified is None:
            return None
        try:
            return frozenset(_read_by_name(unified + "/cgroup.controllers").decode().split())
        except (OSError, UnicodeDecodeError):
            return None

    def _mounts_to_walk(self) -> list[str]:
        """One mount per distinct hierarchy that holds a wanted file (cpu,cpuacct share one)."""
        wanted = {key for f in self.fields for key, _, _ in C.SOURCES[f]}
        candidates = [self._mount_of_key[k] for k in sorted(wanted) if k in self._mount_of_key]
        mounts: dict[object, str] = {}
        for mount in [self._procs_mount, *candidates]:
            mounts.setdefault(self._hierarchy(mount), mount)
        return list(mounts.values())

    def _hierarchy(self, mount: str) -> object:
        """What MOUNT is, so that two names of one hierarchy (cpu -> cpu,cpuacct) compare equal:
        its directory's device and inode, one stat (realpath made an lstat per component, of
        every controller's name, some hundred at each start); unknown, its name."""
        known = self._hierarchies.get(mount)
        if known is None:
            try:
                st = posix.stat(mount)
                known = (st.st_dev, st.st_ino)
            except OSError:
                known = mount
            self._hierarchies[mount] = known
        return known

    def _open_descendant_counter(self) -> int:
        unified = self._mount_of_key.get("")
        if unified is None:
            return -1
        try:
            return posix.open(_dir(unified, self.start) + "/cgroup.stat", posix.O_RDONLY | posix.O_CLOEXEC)
        except OSError:
            return -1

    def _needs_walk(self) -> str | None:
        """None, FULL (every hierarchy) or QUICK (cgroup2 only: its descendant count moved)."""
        if self._files is None or time.monotonic() - self._last_walk >= self.rewalk_interval or self._incomplete:
            return FULL  # (the first walk is a full one, whatever the interval: it works out _files)
        if self._stat_fd >= 0:
            try:
                data = posix.pread(self._stat_fd, 4096, 0)
            except OSError:
                return FULL
            line = data.split(b"\n", 1)[0]  # nr_descendants N
            if line != self._descendants:
                return QUICK
        return None

    def _rewalk(self, how: str = FULL) -> None:
        """List the cgroups again.  A QUICK walk lists cgroup2 alone and keeps the cgroups the
        last full walk found only in v1 hierarchies (their own change is seen by the next full
        walk, every rewalk_interval; a gone one answers ENODEV at once): cgroups made and
        removed anywhere on a hybrid host cost one hierarchy's walk, not five."""
        quick = how == QUICK and self._unified_walk is not None
        if not quick:
            self._last_walk = time.monotonic()
            self._v2_controllers = self._available_v2_controllers()  # for the cgroups opened now
            self._files = self._file_candidates()
        if self._stat_fd >= 0:
            try:
                self._descendants = posix.pread(self._stat_fd, 4096, 0).split(b"\n", 1)[0]
            except OSError:
                self._descendants = None
        seen: list[str] = []
        unreadable: set[str] = set()
        members: dict[str, set[str]] | None = None  # walked mount -> its cgroups, on a full walk
        inodes: dict[str, dict[str, int]] = {}  # walked mount -> its cgroups' inode numbers
        if quick:
            assert self._unified_walk is not None
            inodes[self._unified_walk] = {}
            list_cgroups(self._unified_walk, self.start, self.depth, seen, unreadable, inodes[self._unified_walk])
            seen += self._elsewhere
            unreadable |= self._unreadable_elsewhere
        else:
            members = {}
            in_unified: set[str] = set()
            bad_in_unified: set[str] = set()
            for mount in self._walk_mounts:
                first = len(seen)
                inodes[mount] = {}
                list_cgroups(mount, self.start, self.depth, seen, unreadable, inodes[mount])
                members[mount] = set(seen[first:])
                if mount == self._unified_walk:
                    in_unified, bad_in_unified = members[mount], set(unreadable)
            if self._unified_walk is not None:
                self._elsewhere = [p for p in dict.fromkeys(seen) if p not in in_unified]
                self._unreadable_elsewhere = unreadable - bad_in_unified
        present = dict.fromkeys(seen)
        # A cgroup removed and made again under its name since the last walk has another inode
        # number: the kept files are the old one's (answering ENODEV, but only when read: below
        # an idle parent nothing reads them).
        remade: set[str] = set()
        for mount, found in inodes.items():
            last = self._inodes.get(mount)
            if last is not None:
                remade.update(p for p, _ in found.items() - last.items() if p in last)
            self._inodes[mount] = found
        for path in [p for p, entry in self._entries.items() if p not in present or entry.incomplete or p in remade]:
            self._close_entry(self._entries.pop(path))  # (the plan is made again)
        self._incomplete = False
        if len(present) != len(self._entries):
            # Keep parents before children: rebuild the dict in path order.
            entries: dict[str, _Entry] = {}
            for path in sorted(present, key=_path_key):
                entry = self._entries.get(path)
                if entry is None:
                    entry = self._open_entry(path, unreadable, members)
                    self._incomplete |= entry.incomplete
                entries[path] = entry
            self._entries = entries
            self._plan = None
        self._unreadable = frozenset(unreadable)

    def _open_entry(self, path: str, unreadable: set[str], members: dict[str, set[str]] | None = None) -> _Entry:
        """PATH's counter files.  MEMBERS (from a full walk just made): the cgroups in each
        hierarchy, so a file is not tried where PATH's directory was not found (on a hybrid
        host the cgroups a guest's own systemd makes live in cgroup2 alone: five failed
        opens each, in the v1 hierarchies, otherwise)."""
        entry = _Entry(self.once)
        from_proc = self._root_from_proc and path == "/"
        for name, candidates in self._files or ():
            if from_proc and name in C.ROOT_PROC_SOURCES:
                fname, parser = C.ROOT_PROC_SOURCES[name]
                self._try_open(entry, bareos.join(self.proc, fname), parser, unreadable, path)
                continue
            for mount, slash_name, parser, walked in candidates:
                if members is not None and walked is not None and path not in members[walked]:
                    continue  # PATH is not in that hierarchy
                # (the root cgroup's figures are no judge of its children's: counters.RISING)
                kind = mount + slash_name if path != "/" and (slash_name[1:], parser) in self._judges else None
                if self._try_open(entry, _dir(mount, path) + slash_name, parser, unreadable, path, kind):
                    break
        if self.count != COUNT_PIDS:
            filename = _dir(self._procs_mount, path) + "/cgroup.procs"
            try:
                fd = self._open_counter(filename)
                if fd >= 0:
                    entry.procs_fd = fd
                else:
                    posix.close(posix.open(filename, posix.O_RDONLY | posix.O_CLOEXEC))  # readable at all?
                    entry.procs_name = filename
            except OSError as e:
                if e.errno in (errno.EACCES, errno.EPERM):
                    unreadable.add(path)
                elif e.errno in _NO_FDS:
                    entry.incomplete = True
        return entry

    def _file_candidates(self) -> list[tuple[str, list[tuple[str, str, C.Parser, str | None]]]]:
        """Each wanted figure (in name order) and the files that may hold it, in the order tried:
        (mount, '/' + file name, parser, the mount as walked).  Worked out once a full walk (the
        controllers cgroup2 offers may have changed), not once a cgroup."""
        offered = None if self._v2_controllers is None else self._v2_controllers | {""}
        files = []
        for name in sorted(self.fields):
            if name == "tasks" and self.count != COUNT_PIDS:
                continue  # counted from cgroup.procs instead
            candidates = []
            for key, fname, parser in C.SOURCES[name]:
                mount = self._mount_of_key.get(key)
                if mount is None:
                    continue
                if key == "" and offered is not None and C.V2_CONTROLLER_OF.get(fname, "") not in offered:
                    continue  # its controller is not in this hierarchy: no cgroup has the file
                candidates.append((mount, "/" + fname, parser, self._walk_of_key.get(key)))
            files.append((name, candidates))
        return files

    def _raise_budget(self) -> None:
        """Raise the soft RLIMIT_NOFILE (once) and the budget with it."""
        if not self._budget_raised:
            self._budget_raised = True
            self._fd_budget = max(self._fd_budget, raise_nofile_limit() - FD_RESERVE)

    def _open_counter(self, filename: str) -> int:
        """An fd to keep for FILENAME, or -1 when none can be spared (read it by name)."""
        if self._kept >= self._fd_budget:
            self._raise_budget()
            if self._kept >= self._fd_budget:
                return -1
        try:
            fd = posix.open(filename, posix.O_RDONLY | posix.O_CLOEXEC)
        except OSError as e:
            if e.errno not in _NO_FDS:
                raise
            # The process ran out before our budget did (others hold many): stop keeping files.
            self._fd_budget = max(0, self._kept - FD_RESERVE)
            return -1
        self._kept += 1
        return fd

    def _try_open(self, entry: _Entry, filename: str, parser: C.Parser, unreadable: set[str], path: str,
                  kind: str | None = None) -> bool:
        fd = -1
        try:
            fd = self._open_counter(filename)
            data = posix.pread(fd, 4096, 0) if fd >= 0 else _read_by_name(filename)
            # Parsed into a copy of what the entry's other files gave: kept only if it parses (a
            # parser that fails half-way leaves nothing behind).
            values: list = [None] * C.NFIELDS if entry.fresh is None else entry.fresh.copy()
            ok = parser(data, values)
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EPERM):
                unreadable.add(path)
            elif e.errno in _NO_FDS:
                entry.incomplete = True  # not even one descriptor free: open it again next time
                unreadable.add(path)
            ok = False
        except ValueError:
            ok = False
        if not ok:
            if fd >= 0:
                self._release(fd)
            return False
        entry.fds.append(fd)
        entry.names.append(filename)
        entry.parsers.append(parser)
        entry.kinds.append(kind)
        if entry.fresh is not None:
            entry.fresh = values
        return True

    def _release(self, fd: int) -> None:
        posix.close(fd)
        self._kept -= 1
        self._released.add(fd)  # (its number may come back for another file: _Rising.kept)

    def _close_entry(self, entry: _Entry) -> None:
        self._plan = None  # it may hold these descriptors (numbers the next open reuses)
        for fd in entry.fds:
            if fd >= 0:
                self._release(fd)
        entry.fds.clear()
        entry.names.clear()
        entry.parsers.clear()
        entry.kinds.clear()
        if entry.procs_fd >= 0:
            self._release(entry.procs_fd)
            entry.procs_fd = -1
        entry.procs_name = ""

    # ------------------------------------------------------------ process counting

    def _count_procs(self, data: bytes) -> int | None:
        pids = data.split()
        if self.count == COUNT_ALL:
            return len(pids) or None
        n = 0
        for pid in pids:
            if not self._is_kthread(int(pid)):
                n += 1
        return n or None

    def _is_kthread(self, pid: int) -> bool:
        known = self._kthread.get(pid)
        if known is not None:
            return known
        try:
            with open(f"{self.proc}/{pid}/stat", "rb") as f:
                stat = f.read()
            flags = int(stat[stat.rindex(b")") + 2:].split()[6])
            known = bool(flags & _PF_KTHREAD)
        except (OSError, ValueError, IndexError):
            return False
        if len(self._kthread) > 65536:
            self._kthread.clear()
        self._kthread[pid] = known
        return known


def _hierarchical(memory: str) -> bool:
    """Whether v1's memory charges every cgroup's ancestors too (memory.use_hierarchy 1 at the root)."""
    try:
        return _read_by_name(memory + "/memory.use_hierarchy").strip() == b"1"
    except OSError:
        return False


def _dir(mount: str, path: str) -> str:
    return mount if path == "/" else mount + path


def _path_key(path: str) -> tuple[str, ...]:
    return tuple(path.split("/"))


def _pread_all(fd: int) -> bytes:
    chunks = []
    offset = 0
    while True:
        data = posix.pread(fd, 65536, offset)
        if not data:
            break
        chunks.append(data)
        offset += len(data)
    return b"".join(chunks)


def _sum_tasks_up(counters: dict[str, C.Counters]) -> dict[str, C.Counters]:
    """Add each cgroup's process count into its ancestors' (systemd-cgtop --recursive=yes)."""
    totals = {p: (c.tasks or 0) for p, c in counters.items()}
    for path in sorted(counters, key=lambda p: -p.count("/")):
        if path == "/":
            continue
        parent = path.rsplit("/", 1)[0] or "/"
        if parent in totals and totals[path]:
            totals[parent] += totals[path]
    return {p: c._replace(tasks=totals[p] or None) for p, c in counters.items()}
