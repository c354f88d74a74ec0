"""Per-cgroup counters: which file holds each figure on each layout, and pure parsers.

One `Counters` tuple per cgroup; unknown is None, never a sentinel number.

Where the figures come from (the first candidate that exists and parses wins):

| field           | cgroup2 (unified)        | v1 (hybrid / legacy)                          |
|-----------------|--------------------------|-----------------------------------------------|
| tasks           | pids.current             | pids/pids.current                             |
| cpu_ns          | cpu.stat usage_usec×1000 | cpuacct/cpuacct.usage (ns), else cgroup2      |
| memory          | memory.current           | memory/memory.usage_in_bytes                  |
| memory_limit    | memory.max               | memory/memory.limit_in_bytes                  |
| io read/write   | io.stat rbytes/wbytes    | blkio/blkio.throttle.io_service_bytes_recursive |
| throttling      | cpu.stat nr_throttled,   | cpu/cpu.stat nr_throttled, throttled_time     |
|                 | throttled_usec           |                                               |
| pressure avg10  | cpu/memory/io.pressure   | (none)                                        |

Memory follows systemd-cgtop (systemd 252, checked on this host): cgroup2
shows memory.current, v1 shows memory.usage_in_bytes as is (page cache
included, no inactive_file subtracted).  For the root cgroup systemd-cgtop
reads /proc instead (tasks: /proc/loadavg's thread total; CPU: /proc/stat's
user+nice+system+irq+softirq+steal; memory: MemTotal - MemAvailable) unless it
runs in a container, where it reads the root cgroup's own files; nsdash does
the same (see `root_from_proc`).
"""

from __future__ import annotations

import posix

from nsdash.system import bareos
from nsdash.system.records import Record

TYPE_CHECKING = False  # mypy reads this as True; typing and collections.abc stay unimported
if TYPE_CHECKING:
    from collections.abc import Callable

    # A parser gets the file's bytes and the list being filled; returns False when
    # the file does not hold what it should (then the next candidate is tried).
    Parser = Callable[[bytes, list], bool]
    Source = tuple[str, str, Parser]

# Field indexes into Counters, so the sampler can fill a plain list.
TASKS, CPU_NS, MEMORY, MEMORY_LIMIT, IO_READ, IO_WRITE, NR_THROTTLED, THROTTLED_USEC, \
    CPU_PRESSURE, MEMORY_PRESSURE, IO_PRESSURE = range(11)
NFIELDS = 11

# v1 reports "no limit" as a page-rounded LONG_MAX; treat anything this big as none.
_NO_LIMIT_FLOOR = 1 << 60
_CLK_TCK = posix.sysconf("SC_CLK_TCK")


class Counters(Record):
    """One cgroup's raw figures at one instant (cumulative counters stay cumulative)."""

    tasks: int | None = None
    cpu_ns: int | None = None  # cumulative CPU time, nanoseconds
    memory: int | None = None  # bytes
    memory_limit: int | None = None  # bytes; None when unlimited or unknown
    io_read_bytes: int | None = None  # cumulative
    io_write_bytes: int | None = None  # cumulative
    nr_throttled: int | None = None
    throttled_usec: int | None = None
    cpu_pressure: float | None = None  # "some avg10", percent
    memory_pressure: float | None = None
    io_pressure: float | None = None


# The fields each parser fills (read by `column`); _int_into's parsers are also by their field.
WRITES: dict[Parser, tuple[int, ...]] = {}
_INT_FIELD: dict[Parser, int] = {}
# How much of a one-number file a column reads: a 64-bit counter is at most 20 digits and a newline,
# and a small read costs the interpreter a small buffer instead of a page (a tenth of the pread here).
INT_READ = 64


def read_size(parse: Parser) -> int:
    """How many bytes `column` needs of each file PARSE reads."""
    return INT_READ if parse in _INT_FIELD else 4096


def column(parse: Parser, datas: list[bytes]) -> list[list]:
    """PARSE over many cgroups' files at once (the sampler's refresh): one list per field
    that PARSE fills (WRITES[PARSE]), each with a value per data, as PARSE would leave them in
    a list of Nones.  ValueError when a data does not parse where PARSE would raise or leave a
    figure unknown: the caller then reads those files one by one, as before.  The same bytes
    parse once (thousands of idle cgroups read 'Total 0' or the same few sizes)."""
    field = _INT_FIELD.get(parse)
    if field is not None:
        if datas and max(map(len, datas)) >= INT_READ:
            raise ValueError("not one number")  # (a file cut at INT_READ bytes)
        return [list(map(int, datas))]
    special = _COLUMNS.get(parse)
    if special is not None:
        return special(datas)
    fields = WRITES[parse]
    known: dict[bytes, tuple] = {}
    results = []
    for data in datas:
        result = known.get(data)
        if result is None:
            values = [None] * NFIELDS
            if not parse(data, values):
                raise ValueError("not a counter file")
            result = known[data] = tuple(values[f] for f in fields)
        results.append(result)
    return [list(col) for col in zip(*results, strict=True)] if results else [[] for _ in fields]


def _int_into(field: int) -> Parser:
    def parse(data: bytes, out: list) -> bool:
        try:
            out[field] = int(data)
        except ValueError:
            return False
        return True
    WRITES[parse] = (field,)
    _INT_FIELD[parse] = field
    return parse


def parse_cpu_stat_usage(data: bytes, out: list) -> bool:
    # The kernel always puts usage_usec first.
    fields = data.split(None, 2)
    if len(fields) < 2 or fields[0] != b"usage_usec":
        return False
    out[CPU_NS] = int(fields[1]) * 1000
    return True


def _cpu_stat_usage_column(datas: list[bytes]) -> list[list]:
    """parse_cpu_stat_usage over a column: every cgroup's cpu.stat differs (no two parse alike),
    and a call and a list per cgroup cost 0.6 us each (cgroup2 hosts: every cgroup's CPU)."""
    usage = []
    for data in datas:
        fields = data.split(None, 2)
        if len(fields) < 2 or fields[0] != b"usage_usec":
            raise ValueError("not cpu.stat")
        usage.append(int(fields[1]) * 1000)
    return [usage]


def parse_throttling(data: bytes, out: list) -> bool:
    """cgroup2 cpu.stat (throttled_usec) or v1 cpu.stat (throttled_time, ns)."""
    words = data.split()
    keyed = dict(zip(words[::2], words[1::2], strict=False))
    if b"nr_throttled" not in keyed:
        return False
    out[NR_THROTTLED] = int(keyed[b"nr_throttled"])
    if b"throttled_usec" in keyed:
        out[THROTTLED_USEC] = int(keyed[b"throttled_usec"])
    elif b"throttled_time" in keyed:
        out[THROTTLED_USEC] = int(keyed[b"throttled_time"]) // 1000
    return True


def parse_limit(data: bytes, out: list) -> bool:
    text = data.strip()
    if text == b"max":
        out[MEMORY_LIMIT] = None
        return True
    try:
        value = int(text)
    except ValueError:
        return False
    out[MEMORY_LIMIT] = None if value >= _NO_LIMIT_FLOOR else value
    return True


def parse_io_stat(data: bytes, out: list) -> bool:
    """cgroup2 io.stat: one line per device, `MAJ:MIN rbytes=N wbytes=N ...`; summed."""
    rd = wr = 0
    for word in data.split():
        if word.startswith(b"rbytes="):
            rd += int(word[7:])
        elif word.startswith(b"wbytes="):
            wr += int(word[7:])
    out[IO_READ], out[IO_WRITE] = rd, wr
    return True


def parse_blkio(data: bytes, out: list) -> bool:
    """v1 blkio.*io_service_bytes: `MAJ:MIN Read N` lines plus a Total; summed per op."""
    if data == b"Total 0\n":  # a cgroup that never did I/O: most of them, every refresh
        out[IO_READ] = out[IO_WRITE] = 0
        return True
    rd = wr = 0
    for line in data.splitlines():
        parts = line.split()
        if len(parts) == 3:
            if parts[1] == b"Read":
                rd += int(parts[2])
            elif parts[1] == b"Write":
                wr += int(parts[2])
    out[IO_READ], out[IO_WRITE] = rd, wr
    return True


def _pressure_into(field: int) -> Parser:
    def parse(data: bytes, out: list) -> bool:
        # "some avg10=0.00 avg60=0.00 avg300=0.00 total=0"
        start = data.find(b"avg10=")
        if not data.startswith(b"some") or start < 0:
            return False
        end = data.find(b" ", start)
        out[field] = float(data[start + 6:end if end > 0 else None])
        return True
    WRITES[parse] = (field,)
    return parse


# --- the root cgroup read from /proc, as systemd-cgtop does outside containers

def parse_proc_loadavg_tasks(data: bytes, out: list) -> bool:
    # "0.70 0.34 0.19 2/100 15521": running/total threads
    try:
        out[TASKS] = int(data.split()[3].split(b"/")[1])
    except (IndexError, ValueError):
        return False
    return True


def parse_proc_stat_cpu(data: bytes, out: list) -> bool:
    line = data.split(b"\n", 1)[0].split()
    if len(line) < 9 or line[0] != b"cpu":
        return False
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in line[1:9])
    ticks = user + nice + system + irq + softirq + steal
    out[CPU_NS] = -(-ticks * 1_000_000_000 // _CLK_TCK)  # rounded up, like systemd
    return True


def parse_proc_meminfo_used(data: bytes, out: list) -> bool:
    total = avail = None
    for line in data.splitlines():
        if line.startswith(b"MemTotal:"):
            total = int(line.split()[1]) * 1024
        elif line.startswith(b"MemAvailable:"):
            avail = int(line.split()[1]) * 1024
    if total is None or avail is None:
        return False
    out[MEMORY] = total - avail
    return True


# Parsers with a column of their own (counters.column): the same answers, written for many files.
_COLUMNS: dict[Parser, Callable[[list[bytes]], list[list]]] = {parse_cpu_stat_usage: _cpu_stat_usage_column}

WRITES.update({parse_cpu_stat_usage: (CPU_NS,), parse_throttling: (NR_THROTTLED, THROTTLED_USEC),
               parse_limit: (MEMORY_LIMIT,), parse_io_stat: (IO_READ, IO_WRITE), parse_blkio: (IO_READ, IO_WRITE),
               parse_proc_loadavg_tasks: (TASKS,), parse_proc_stat_cpu: (CPU_NS,),
               parse_proc_meminfo_used: (MEMORY,)})

# Candidate sources per figure: (hierarchy key, file name, parser): Source, for mypy.
# Hierarchy key "" is cgroup2; anything else is a v1 controller name.

SOURCES: dict[str, tuple[Source, ...]] = {
    "tasks": (("pids", "pids.current", _int_into(TASKS)),
              ("", "pids.current", _int_into(TASKS))),
    "cpu": (("cpuacct", "cpuacct.usage", _int_into(CPU_NS)),
            ("", "cpu.stat", parse_cpu_stat_usage)),
    "memory": (("", "memory.current", _int_into(MEMORY)),
               ("memory", "memory.usage_in_bytes", _int_into(MEMORY))),
    "limit": (("", "memory.max", parse_limit),
              ("memory", "memory.limit_in_bytes", parse_limit)),
    "io": (("", "io.stat", parse_io_stat),
           ("blkio", "blkio.throttle.io_service_bytes_recursive", parse_blkio),
           ("blkio", "blkio.io_service_bytes_recursive", parse_blkio),
           ("blkio", "blkio.throttle.io_service_bytes", parse_blkio)),
    "throttle": (("", "cpu.stat", parse_throttling),
                 ("cpu", "cpu.stat", parse_throttling)),
    "cpu_pressure": (("", "cpu.pressure", _pressure_into(CPU_PRESSURE)),),
    "memory_pressure": (("", "memory.pressure", _pressure_into(MEMORY_PRESSURE)),),
    "io_pressure": (("", "io.pressure", _pressure_into(IO_PRESSURE)),),
}

# The files whose figures only grow and take in every descendant's (a read of the parent flushes
# cgroup2's per-CPU figures of the whole subtree first): while a cgroup's file reads the same, none
# of its descendants' can have moved, and the sampler keeps their last figures without reading
# them.  Not v1's blkio.throttle.io_service_bytes (its own I/O only), nor v1's cpu.stat or cgroup2's
# throttling (its own throttling); the root cgroup is never taken as the judge (sampler._open_entry):
# cgroup2's root reads the host-wide figures (CPU from the tick accounting, I/O from the disks),
# counted elsewhere and at other moments than its children's.
RISING = frozenset({("cpuacct.usage", SOURCES["cpu"][0][2]), ("cpu.stat", parse_cpu_stat_usage),
                    ("io.stat", parse_io_stat), ("blkio.throttle.io_service_bytes_recursive", parse_blkio),
                    ("blkio.io_service_bytes_recursive", parse_blkio)})

# The files that count a cgroup's whole subtree and never go below zero (tasks, and memory's page
# counter, charged to every ancestor at once): a cgroup that reads 0 has 0 in every descendant, which
# the sampler then does not read (empty subtrees).  v1's memory only where memory.use_hierarchy is 1
# (the kernel's only choice since 5.11; sampler._open_entry checks the root's).
ZERO_BELOW = frozenset({("pids.current", SOURCES["tasks"][0][2]), ("pids.current", SOURCES["tasks"][1][2]),
                        ("memory.current", SOURCES["memory"][0][2]),
                        ("memory.usage_in_bytes", SOURCES["memory"][1][2])})

# The cgroup2 files above that a controller provides: a cgroup has them only where that controller
# is enabled, never when the hierarchy's root does not list it in cgroup.controllers (hybrid hosts
# often list none).  cpu.stat and the *.pressure files belong to every cgroup.
V2_CONTROLLER_OF = {"pids.current": "pids", "memory.current": "memory", "memory.max": "memory", "io.stat": "io"}

# What the root cgroup reads from /proc instead (outside containers).
ROOT_PROC_SOURCES: dict[str, tuple[str, Parser]] = {
    "tasks": ("loadavg", parse_proc_loadavg_tasks),
    "cpu": ("stat", parse_proc_stat_cpu),
    "memory": ("meminfo", parse_proc_meminfo_used),
}

BASIC = frozenset({"tasks", "cpu", "memory", "io"})
EXTRAS = frozenset({"limit", "throttle", "cpu_pressure", "memory_pressure", "io_pressure"})
ALL = BASIC | EXTRAS


def in_container(root: str = "/") -> bool:
    """Whether we run inside a container, by the signs systemd's detect_container() trusts."""
    for sign in ("run/systemd/container", "run/host/container-manager",
                 "run/.containerenv", ".dockerenv"):
        if bareos.exists(bareos.join(root, sign)):
            return True
    try:
        with open(bareos.join(root, "proc/1/environ"), "rb") as f:
            return any(v.startswith(b"container=") for v in f.read().split(b"\0"))
    except OSError:
        return False


def root_from_proc(root: str = "/") -> bool:
    """systemd-cgtop reads the root cgroup's figures from /proc unless in a container."""
    return not in_container(root)
