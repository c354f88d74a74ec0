"""`nsdash cgtop`: the top control groups by CPU, memory, tasks or I/O, like systemd-cgtop.

Batch mode (-b, or output not a terminal) prints the same text layout as
`systemd-cgtop -b`.  On a terminal it redraws the screen each refresh; keys:
p t c m i (order), % (CPU percent/time), + - (delay), space (refresh), q (quit).
"""

from __future__ import annotations

import gc
import posix
import sys
import time

from nsdash.cli.quickparse import SUPPRESS, Namespace, Parser
from nsdash.errors import UsageError
from nsdash.monitor import counters as C
from nsdash.monitor import display
from nsdash.monitor.rates import net_rates, rates_between
from nsdash.monitor.sampler import COUNT_ALL, COUNT_PIDS, COUNT_USERSPACE, Sample, Sampler
from nsdash.monitor.tree import normalize, primary_mount, user_path
from nsdash.system import bareos, cgroupfs

# Imported where they are needed, each a module that most runs (the defaults, a hybrid or v1
# host, cgroup names a host made) would load for nothing: nsdash.launcher.booleans (--recursive
# other than its default), nsdash.system.kernfiles (pids on a cgroup2-only host) and
# nsdash.system.text (a path that is not printable).

DIFFERENCES = """Differences from systemd-cgtop (252):
  - an idle cgroup shows 0.0 %CPU, not '-' or its last value;
  - v1 I/O comes from blkio.throttle.io_service_bytes_recursive (systemd reads
    blkio.io_service_bytes, which recent kernels lack, and shows '-');
  - on hybrid hosts a cgroup that exists only in cgroup2 gets CPU from cpu.stat;
  - with PATH the top row is '/PATH' (systemd prints '//PATH');
  - --cpu=time shows '-' for an unknown time (systemd prints 0);
  - an unknown PATH or machine is an error (systemd prints nothing);
  - parents always come before their children (systemd's sort mostly does);
  - --extra=limit,throttle,pressure,net adds columns after Output/s.
"""

# `cgtop -b -n 1` (batch, once) is short and read-only: it ends without the interpreter's teardown
# and with the garbage collector off, as the launcher starts it (nsdash.cli.run); every other
# run may last for days and turns the collector on (main).
TEARDOWN_FREE = True

_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "ms": 1e-3, "msec": 1e-3, "us": 1e-6, "usec": 1e-6,
          "min": 60.0, "m": 60.0, "h": 3600.0, "hr": 3600.0}


def parse_seconds(text: str) -> float:
    """systemd time spans as cgtop's --delay takes them: '1', '0.5', '500ms', '2s', '1min'."""
    # A number ([0-9]*.?[0-9]+), then a unit, spaces around either: read by hand, as re costs
    # every `nsdash cgtop` a millisecond to import.
    body = text.strip()
    n = 0
    while n < len(body) and body[n] in "0123456789.":
        n += 1
    number, unit = body[:n], body[n:].lstrip()
    whole, dot, fraction = number.partition(".")
    if not (bool(fraction) and "." not in fraction if dot else bool(whole)) or unit not in _UNITS:
        raise UsageError(f"invalid delay '{text}'", "give seconds, e.g. -d 1 or -d 500ms")
    value = float(number) * _UNITS[unit]
    if value <= 0:
        raise UsageError(f"invalid delay '{text}'", "the delay must be more than zero")
    return value


def build_parser() -> Parser:
    p = Parser("nsdash cgtop", "Show top control groups by their resource usage.", DIFFERENCES, raw=True,
               hint="see 'nsdash cgtop --help'")
    order = p.add_mutually_exclusive_group()
    p.add_argument("-b", "--batch", action="store_true", help="Run in batch mode, accepting no input")
    p.add_argument("-r", "--raw", action="store_true", help="Provide raw (not human-readable) numbers")
    for flag, name in (("-p", "path"), ("-t", "tasks"), ("-c", "cpu"), ("-m", "memory"), ("-i", "io")):
        order.add_argument(flag, dest="order", action="store_const", const=name,
                           help=f"Order by {name}")
    order.add_argument("--order", choices=display.ORDERS, help="Order by path, tasks, cpu, memory or io")
    p.add_argument("--cpu", nargs="?", const="time", default="percentage",
                   choices=("percentage", "time"), help="Show CPU usage as time or percentage")
    count = p.add_mutually_exclusive_group()
    count.add_argument("-P", dest="count", action="store_const", const=COUNT_USERSPACE,
                       help="Count userspace processes instead of tasks (excl. kernel)")
    count.add_argument("-k", dest="count", action="store_const", const=COUNT_ALL,
                       help="Count all processes instead of tasks (incl. kernel)")
    p.add_argument("--recursive", default="yes", help="Sum up process count recursively (yes|no)")
    p.add_argument("-d", "--delay", default="1", help="Delay between updates (default 1s)")
    p.add_argument("-n", "--iterations", type=int, default=0, help="Run for N iterations before exiting")
    p.add_argument("-1", dest="once", action="store_true", help="Shortcut for --iterations=1")
    p.add_argument("--depth", type=int, default=3, help="Maximum traversal depth (default: 3)")
    p.add_argument("-M", "--machine", help="Show container")
    p.add_argument("--extra", default="",
                   help="Extra columns (nsdash): comma list of " + ",".join(display.EXTRA_COLUMNS))
    p.add_argument("--cgroup-root", default=cgroupfs.DEFAULT_ROOT_DIR, help=SUPPRESS)
    p.add_argument("path", nargs="?", help="Control group to show (default: all)")
    return p


class Options(Namespace):
    batch: bool
    raw: bool
    order: str | None
    cpu: str
    count: str | None
    recursive: str
    delay: str
    iterations: int
    once: bool
    depth: int
    machine: str | None
    extra: str
    cgroup_root: str
    path: str | None


def main(argv: list[str]) -> int:
    opts = build_parser().parse_args(argv, namespace=Options())
    delay = parse_seconds(opts.delay)
    iterations = 1 if opts.once else opts.iterations
    if iterations < 0:
        raise UsageError(f"invalid iteration count {iterations}", "give a positive number")
    if opts.depth < 0:
        raise UsageError(f"invalid depth {opts.depth}", "give 0 or more")
    extras = _extras(opts.extra)
    layout = cgroupfs.detect(opts.cgroup_root)
    if layout.unified_dir is None and not layout.v1_dirs:
        raise UsageError(f"no cgroup hierarchy under {opts.cgroup_root}", "mount cgroupfs first")
    start = _start_path(opts, layout)
    count = opts.count or (COUNT_PIDS if _has_pids(layout) else COUNT_USERSPACE)
    fields = set(C.BASIC)
    for name in opts.extra.split(","):
        if name == "limit":
            fields.add("limit")
        elif name == "throttle":
            fields.add("throttle")
        elif name == "pressure":
            fields |= {"cpu_pressure", "memory_pressure", "io_pressure"}
    view = _View(order=opts.order or "cpu", cpu_time=opts.cpu == "time", raw=opts.raw,
                 recursive=_recursive(opts.recursive), count=count, extras=extras)
    interactive = not opts.batch and sys.stdout.isatty() and sys.stdin.isatty()
    if interactive or iterations != 1:
        gc.freeze()  # what the imports made lives as long as the process: no collection walks it
        # A refresh makes a few tuples per cgroup (counters, rates, rows) that die by the next one,
        # none in a cycle: at the default threshold (700) the collector walked them some thirty
        # times a refresh, 3 ms of 60 at 5,000 cgroups.  It runs when that many more objects live
        # than died, as before: a cycle left behind is still collected.
        gc.set_threshold(50_000, 10, 10)
        gc.enable()
    if "net" in opts.extra.split(","):
        view.net = _NetColumn(layout)
    try:
        # One refresh (-n 1) shows no rates: the figures its walk read are its own (Sampler).
        with Sampler(layout, start, opts.depth, fields, count, once=iterations == 1) as sampler:
            if interactive:
                return _interactive(sampler, view, delay, iterations)
            return _batch(sampler, view, delay, iterations)
    finally:
        if view.net is not None:
            view.net.close()


def _extras(spec: str) -> list[display.Extra]:
    cols: list[display.Extra] = []
    for name in filter(None, spec.split(",")):
        if name not in display.EXTRA_COLUMNS:
            raise UsageError(f"unknown extra column '{name}'",
                             "choose from " + ", ".join(display.EXTRA_COLUMNS))
        cols.extend(display.EXTRA_COLUMNS[name])
    return cols


def _recursive(value: str) -> bool:
    if value == "yes":  # the default
        return True
    from nsdash.launcher.booleans import parse_boolean

    return parse_boolean(value, "--recursive")


def _has_pids(layout: cgroupfs.Layout) -> bool:
    if "pids" in layout.v1_dirs:
        return True
    if layout.unified_dir is not None:
        from nsdash.system.kernfiles import read_value

        return "pids" in (read_value(layout.unified_dir + "/cgroup.controllers") or "").split()
    return False


def _start_path(opts: Options, layout: cgroupfs.Layout) -> str:
    path = user_path(opts.path or "/")
    if opts.machine is not None:
        from nsdash.monitor.machines import MachineMap, machine_cgroup  # -M only: it reads machine state

        path = normalize(machine_cgroup(opts.machine, layout.hierarchy_dirs(), MachineMap()) + path)
    if not any(bareos.isdir(m + ("" if path == "/" else path)) for m in layout.hierarchy_dirs()):
        raise UsageError(f"control group '{path}' does not exist", "see 'nsdash cgls' for the tree")
    return path


class _NetColumn:
    """--extra=net: each machine's network rates on its top cgroup's row."""

    def __init__(self, layout: cgroupfs.Layout) -> None:
        from nsdash.monitor.net import NetSampler

        self.mount = primary_mount(layout)
        self.sampler = NetSampler()
        self.last: tuple[float, dict] | None = None

    def annotate(self, rows: list[display.Row], sample: Sample) -> list[display.Row]:
        from nsdash.monitor.machines import MachineMap, process_cgroup, registered_leaders
        from nsdash.monitor.net import leaders_from_cgroups

        mm = MachineMap()
        tops = {}
        for path in sample.counters:
            name = mm.machine_of(path)
            parent = path.rsplit("/", 1)[0] or "/"
            if name is not None and mm.machine_of(parent) != name:
                tops[name] = path
        now = time.monotonic()
        leaders = leaders_from_cgroups(tops, self.mount)
        for name, pid in registered_leaders().items():
            # The recorded leader, while it still lives in the machine's cgroup.
            if name in tops and mm.machine_of(process_cgroup(pid) or "") == name:
                leaders[name] = pid
        counters = self.sampler.sample(leaders)
        rates = net_rates(self.last[1] if self.last else None, counters,
                          now - self.last[0] if self.last else 0.0)
        self.last = (now, counters)
        by_path = {path: rates.get(name, (None, None)) for name, path in tops.items()}
        return [r._replace(extra={"net_rx_bps": by_path[r.path][0], "net_tx_bps": by_path[r.path][1]})
                if r.path in by_path else r for r in rows]

    def close(self) -> None:
        self.sampler.close()


class _View:
    """What the user chose to see; keys in interactive mode change it."""

    def __init__(self, *, order: str, cpu_time: bool, raw: bool, recursive: bool, count: str,
                 extras: list[display.Extra]) -> None:
        self.order, self.cpu_time, self.raw = order, cpu_time, raw
        self.recursive, self.count, self.extras = recursive, count, extras
        self.net: _NetColumn | None = None

    @property
    def count_label(self) -> str:
        return {COUNT_PIDS: "Tasks", COUNT_USERSPACE: "Procs"}.get(self.count, "Proc+")

    def rows(self, prev, cur) -> list[display.Row]:
        rows = display.rows_from(cur.counters, rates_between(prev, cur))
        if self.net is not None:
            rows = self.net.annotate(rows, cur)
        parents_first = self.order != "tasks" or self.recursive
        ordered = display.order_rows(rows, self.order, self.cpu_time, parents_first)
        # A guest names its own cgroups: the paths are shown escaped (ordered on the real ones).
        if all(r.path.isprintable() for r in ordered):
            return ordered
        from nsdash.system.text import escape

        return [r if r.path.isprintable() else r._replace(path=escape(r.path)) for r in ordered]


def _screen(view: _View, rows: list[display.Row], columns: int) -> list[str]:
    """The table for a terminal: header, and paths cut to what the width leaves (systemd's sums)."""
    cpu_width = display.cpu_time_width(rows, view.raw) if view.cpu_time else 6
    cpu_width = max(cpu_width, len("CPU Time")) if view.cpu_time else cpu_width
    width = max(10, columns - 36 - cpu_width - sum(c.width + 1 for c in view.extras))
    header = display.header_line(width, view.count_label, view.cpu_time, cpu_width, view.extras,
                                 view.order, ansi=True)
    return display.render(rows, cpu_time=view.cpu_time, raw=view.raw, path_width=width,
                          header=display.HOME_CLEAR + header, extras=view.extras, cpu_width=cpu_width)


def _batch(sampler: Sampler, view: _View, delay: float, iterations: int) -> int:
    tty = sys.stdout.isatty()
    out = sys.stdout
    prev = None
    done = 0
    while True:
        began = time.monotonic()
        cur = sampler.sample()
        done += 1
        rows = view.rows(prev, cur)
        if tty:
            import shutil  # a terminal only: shutil brings bz2, lzma and zlib with it

            lines = _screen(view, rows, shutil.get_terminal_size().columns)
        else:
            lines = display.render(rows, cpu_time=view.cpu_time, raw=view.raw, extras=view.extras)
        text = "\n".join(lines) + "\n" if lines else ""
        if iterations and done >= iterations:
            out.write(text)
            out.flush()
            return 0
        if not tty:
            text += "\n"
        out.write(text)
        out.flush()
        prev = cur
        time.sleep(max(0.0, delay - (time.monotonic() - began)))


def _interactive(sampler: Sampler, view: _View, delay: float, iterations: int) -> int:
    import shutil
    import termios
    import tty

    from nsdash.system.ready import readable

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    out = sys.stdout
    prev = None
    done = 0
    try:
        while True:
            cur = sampler.sample()
            done += 1
            size = shutil.get_terminal_size()
            rows = view.rows(prev, cur)[:max(4, size.lines - 6)]
            lines = _screen(view, rows, size.columns)
            out.write("\n".join(lines) + "\n")
            out.flush()
            prev = cur
            if iterations and done >= iterations:
                return 0
            deadline = time.monotonic() + delay
            while (left := deadline - time.monotonic()) > 0:
                ready = readable([fd], left)
                if not ready:
                    break
                key = posix.read(fd, 1).decode(errors="replace")
                if key in ("q", "Q"):
                    return 0
                if key == " ":
                    break
                if key in "ptcmi" and key:
                    view.order = {"p": "path", "t": "tasks", "c": "cpu", "m": "memory", "i": "io"}[key]
                    break
                if key == "%":
                    view.cpu_time = not view.cpu_time
                    break
                if key == "+":
                    delay = delay + 1 if delay >= 1 else delay + 0.1
                    break
                if key == "-":
                    delay = max(0.1, delay - 1 if delay > 1 else delay - 0.1)
                    break
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
