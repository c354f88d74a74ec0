"""perf from the host, sampling only a machine's cgroup; top lists and flame graphs of the samples.

`perf record -a -e EVENT -G CGROUP` samples every CPU but only while a task of
that cgroup runs.  perf finds CGROUP under the v1 perf_event hierarchy if one
is mounted, else under cgroup2, where the perf_event controller is always on
(nothing to enable): the launcher puts machines in the v1 perf_event
hierarchy too where it exists, so both hosts work with the machine's one path.

The samples' mmap records carry the file names the mapping process saw (the
kernel writes them in the tracee's context).  Those names are the guest's,
and so are the files: reading them is a host-side read of guest files, so it
is confined like every other (system/confined.py).  `perf script` reads the
samples twice, both times as the unprivileged user nobody, never as root:
once with no files, which names the files the samples are in; then nsdash
opens each of those inside the machine's root (openat2 RESOLVE_IN_ROOT, a
regular file only) and gives perf a --symfs of links to those open files
(/proc/self/fd/N, the fds inherited).  A guest symlink to a host file
(libc.so.6 -> /root/x) resolves inside the machine, and whatever perf itself
would look up beside the --symfs (debug links, its build-ID cache: set to an
empty directory) it looks up as nobody, who cannot read root's files.  Kernel
frames come from a copy of the host's /proc/kallsyms.  `perf record` keeps no
build IDs (-B): collecting them would make root perf open every sampled file
by the guest's name.

Hardware cycle counters are missing in most VMs (no PMU given to the guest):
then the software cpu-clock event samples the same way, at the same rate.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from nsdash.errors import NsdashError
from nsdash.inside.debugging import tools
from nsdash.inside.debugging.pids import MachineProcesses
from nsdash.system import cgroupfs
from nsdash.system.text import escape

SOFTWARE_EVENT = "cpu-clock"
HARDWARE_EVENT = "cycles"
_HEADER = re.compile(r"^(?P<comm>.*?)\s+(?P<pid>\d+)/(?P<tid>\d+)\s*$")


class PerfFailed(NsdashError):
    """perf could not sample the machine."""


@dataclass(frozen=True)
class Frame:
    symbol: str  # '[unknown]' when perf found none
    dso: str  # the file as the machine names it, or [kernel.kallsyms]
    address: str = ""

    @property
    def name(self) -> str:
        """The function, or the address in its file when it has no symbol (stripped binaries)."""
        if self.symbol != "[unknown]":
            return self.symbol
        return f"{os.path.basename(self.dso.strip('[]')) or '?'}+0x{self.address}"


@dataclass(frozen=True)
class Sample:
    comm: str
    host_pid: int
    frames: tuple[Frame, ...] = field(default_factory=tuple)  # innermost first


@dataclass(frozen=True)
class Ranked:
    """One row of a top list: a name, its samples and their share of all."""

    name: str
    samples: int
    percent: float


@dataclass(frozen=True)
class Profile:
    """What one recording saw."""

    event: str
    seconds: float
    samples: tuple[Sample, ...]
    machine_pids: dict[int, int] = field(default_factory=dict)  # host PID -> the machine's, where known

    def top_functions(self, limit: int = 20) -> list[Ranked]:
        """The functions the samples were in (self time: the innermost frame)."""
        return _rank((s.frames[0].name for s in self.samples if s.frames), len(self.samples), limit)

    def top_processes(self, limit: int = 20) -> list[Ranked]:
        """Processes by samples, as 'comm (PID)' with the machine's PID ('comm' when it has gone)."""
        def label(s: Sample) -> str:
            pid = self.machine_pids.get(s.host_pid)
            return s.comm if pid is None else f"{s.comm} ({pid})"

        return _rank((label(s) for s in self.samples), len(self.samples), limit)

    def folded(self) -> list[str]:
        """Brendan Gregg's folded stacks ('comm;outer;...;inner COUNT'), the flame graph's input."""
        stacks = Counter(";".join([s.comm, *(f.name.replace(";", ":") for f in reversed(s.frames))])
                         for s in self.samples)
        return [f"{stack} {count}" for stack, count in sorted(stacks.items())]


def _rank(names: Iterable[str], total: int, limit: int) -> list[Ranked]:
    counts = Counter(names)
    return [Ranked(name, n, 100.0 * n / total if total else 0.0) for name, n in counts.most_common(limit)]


def parse_script(text: str) -> list[Sample]:
    """`perf script -F comm,pid,tid,ip,sym,dso` output (with call chains) as samples.

    A sample is a header line 'COMM PID/TID' and one line per frame,
    'ADDRESS SYMBOL (DSO)', innermost first; a blank line ends it.  Names come
    from the guest: escaped here, once.
    """
    samples: list[Sample] = []
    head: re.Match[str] | None = None
    frames: list[Frame] = []

    def flush() -> None:
        if head is not None:
            samples.append(Sample(escape(head["comm"]), int(head["pid"]), tuple(frames)))

    for line in text.splitlines():
        if not line.strip():
            flush()
            head, frames = None, []
        elif line[0] in " \t":
            address, _, rest = line.strip().partition(" ")
            symbol, _, dso = rest.rpartition(" (")
            frames.append(Frame(escape(symbol or "[unknown]"), escape(dso.rstrip(")")), address))
        else:
            flush()
            head, frames = _HEADER.match(line), []
    flush()
    return samples


# ---- perf's command lines -------------------------------------------------------

def hardware_counters(perf: str) -> bool:
    """Whether the CPU cycle counter can be sampled here (`perf stat -e cycles` counts it)."""
    try:
        r = subprocess.run([perf, "stat", "-x,", "-e", HARDWARE_EVENT, "true"], capture_output=True,
                           text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0 and "<not supported>" not in r.stderr and "<not counted>" not in r.stderr


def perf_event_cgroup(cgroup: str, layout: cgroupfs.Layout | None = None) -> str:
    """The -G argument for the machine's CGROUP, checked against the hierarchy perf will use."""
    layout = layout or cgroupfs.detect()
    where = layout.v1_path("perf_event", cgroup) if "perf_event" in layout.v1 else layout.unified_path(cgroup)
    if where is None:
        raise PerfFailed("this host has no perf_event cgroup hierarchy (no cgroup2, no v1 perf_event)",
                         "mount cgroup2, or the v1 perf_event controller, to profile one machine")
    if not where.is_dir():
        raise PerfFailed(f"the machine's cgroup is missing in the perf_event hierarchy ({where})",
                         "restart the machine with this nsdash, which places it there")
    return cgroup


def record_argv(perf: str, output: Path, cgroup: str, seconds: float, event: str = SOFTWARE_EVENT,
                frequency: int = 99) -> list[str]:
    """Sample every CPU, only in CGROUP, with call chains, for SECONDS (perf times itself with sleep).

    -B: no build IDs, whose collection opens every sampled file by the guest's name, as root."""
    return [perf, "record", "-q", "-B", "-o", str(output), "-e", event, "-F", str(frequency), "-a", "-g",
            "-G", cgroup, "--", "sleep", f"{seconds:g}"]


def script_argv(perf: str, work: Path) -> list[str]:
    """`perf script` on WORK/perf.data with WORK/symfs, WORK/kallsyms and an empty build-ID cache."""
    return [perf, "--buildid-dir", str(work / "buildid"), "script", "-i", str(work / "perf.data"),
            "-F", "comm,pid,tid,ip,sym,dso", f"--symfs={work / 'symfs'}", f"--kallsyms={work / 'kallsyms'}"]


MAX_DSOS = 1024  # files opened for one symbol read (each an fd while perf runs)
_DSO = re.compile(r"\((/[^()]*)\)$")


def sampled_files(text: str) -> list[str]:
    """The absolute file names in `perf script` output's frame lines, each once ([kernel.kallsyms],
    [vdso] and names with a '(deleted)' or a '..' component are left out)."""
    seen: dict[str, None] = {}
    for line in text.splitlines():
        if line[:1] in (" ", "\t"):
            m = _DSO.search(line.rstrip())
            if m and ".." not in m.group(1).split("/") and m.group(1) not in seen:
                seen[m.group(1)] = None
    return list(seen)[:MAX_DSOS]


class SymbolView:
    """A scratch directory for one `perf script` as nobody: perf.data, a copy of kallsyms, an
    empty build-ID cache, and a --symfs of links to the guest's files opened confined."""

    def __init__(self, work: Path, nobody: tuple[int, int]) -> None:
        self.work = work
        self.uid, self.gid = nobody
        self.fds: list[int] = []
        work.chmod(0o711)  # nobody passes through to its own files, and lists nothing
        for sub in ("symfs", "buildid"):
            (work / sub).mkdir(mode=0o755)
        os.chown(work / "buildid", self.uid, self.gid)
        with open("/proc/kallsyms", "rb") as src, open(work / "kallsyms", "wb") as dst:
            shutil.copyfileobj(src, dst)  # read as root: nobody would see every address as 0
        for name in ("kallsyms", "perf.data"):
            os.chown(work / name, self.uid, self.gid)  # perf reads data only its user (or root) owns

    def link(self, root: Path, names: list[str]) -> list[str]:
        """Open each of NAMES inside ROOT and link it into the --symfs; why others were not."""
        from nsdash.system import confined

        refused: list[str] = []
        try:
            root_fd = confined.open_root(root)
        except OSError as e:
            return [f"the machine's root: {e.strerror}"]
        try:
            for name in names:
                try:
                    fd = confined.open_in_root(root_fd, name)
                except OSError as e:
                    refused.append(f"{escape(name)}: {e.strerror}")
                    continue
                self.fds.append(fd)
                where = self.work / "symfs" / name.lstrip("/")
                where.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
                with contextlib.suppress(FileExistsError):
                    where.symlink_to(f"/proc/self/fd/{fd}")
        finally:
            os.close(root_fd)
        return refused

    def run(self, argv: list[str]) -> subprocess.CompletedProcess[bytes]:
        """Run ARGV as nobody, the linked files' fds inherited at their numbers."""
        return subprocess.run(argv, capture_output=True, timeout=120, stdin=subprocess.DEVNULL,
                              user=self.uid, group=self.gid, extra_groups=[], pass_fds=self.fds,
                              env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.work / "buildid"),
                                   "LC_ALL": "C"}, cwd="/")

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def nobody() -> tuple[int, int]:
    """The unprivileged user (and group) perf reads the guest's files as."""
    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


def read_samples(perf: str, work: Path, root: Path) -> str:
    """`perf script`'s text for WORK/perf.data, with the guest's symbols read confined (see above)."""
    view = SymbolView(work, nobody())
    try:
        first = view.run(script_argv(perf, work))  # no files linked yet: names only
        if first.returncode != 0:
            raise PerfFailed("perf script could not read the samples: "
                             + escape(first.stderr.decode(errors="replace").strip()[-200:]))
        view.link(root, sampled_files(first.stdout.decode(errors="replace")))
        if not view.fds:
            return first.stdout.decode(errors="replace")
        second = view.run(script_argv(perf, work))
        if second.returncode != 0:
            raise PerfFailed("perf script could not read the samples: "
                             + escape(second.stderr.decode(errors="replace").strip()[-200:]))
        return second.stdout.decode(errors="replace")
    finally:
        view.close()


def flame_svg(profile: Profile, title: str) -> str:
    """The flame graph of PROFILE as SVG, drawn by inferno (PyPI pyinferno)."""
    try:
        from pyinferno import flamegraph_from_lines
    except ImportError as e:
        raise PerfFailed("flame graphs need the 'pyinferno' package", "pip install pyinferno") from e
    lines = profile.folded()
    if not lines:
        raise PerfFailed("no samples to draw", "profile longer, or while the machine is busy")
    return str(flamegraph_from_lines(lines, title=title))


class Profiler:
    """Records one machine's cgroup, again and again if asked (the dashboard's live list)."""

    NO_PMU = ("no hardware cycle counter here (a VM without a PMU, or perf_event_paranoid): "
              "sampling the cpu-clock software event instead")

    def __init__(self, procs: MachineProcesses, perf_path: str | None = None, frequency: int = 99,
                 unit: str | None = None) -> None:
        """UNIT: sample only that unit's cgroup (a service's processes) instead of the whole machine."""
        self.perf = tools.find("perf", perf_path)
        self.procs = procs
        relative = procs.unit_cgroup(unit) if unit else ""
        self.cgroup = perf_event_cgroup(procs.cgroup + relative.rstrip("/"), procs.layout)
        self.root = procs.target.root
        self.frequency = frequency
        hardware = hardware_counters(self.perf)
        self.event = HARDWARE_EVENT if hardware else SOFTWARE_EVENT
        self.note = None if hardware else self.NO_PMU
        self._running: subprocess.Popen[bytes] | None = None
        self._cancelled = False

    def record(self, seconds: float) -> Profile:
        """Sample for SECONDS (less if cancelled), then read the samples with the machine's symbols."""
        if self._cancelled:
            return Profile(self.event, 0.0, ())
        with tempfile.TemporaryDirectory(prefix="nsdash-perf-") as tmp:
            data = Path(tmp) / "perf.data"
            argv = record_argv(self.perf, data, self.cgroup, seconds, self.event, self.frequency)
            # A session of its own, so cancel() stops perf and its sleep together.
            started = time.monotonic()
            self._running = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.PIPE, start_new_session=True)
            try:
                try:
                    _, err = self._running.communicate(timeout=seconds + 60)
                except KeyboardInterrupt:
                    # Ctrl-C (it reaches nsdash only: perf has a session of its own) ends the
                    # sampling early; what was sampled is still shown.
                    self.cancel()
                    _, err = self._running.communicate(timeout=30)
            except BaseException:
                self._kill(signal.SIGKILL)
                self._running.wait()
                raise
            finally:
                code, self._running = self._running.returncode, None
                seconds = min(seconds, time.monotonic() - started)
            if code != 0 and not (self._cancelled and data.exists()):
                text = err.decode(errors="replace").strip().splitlines()
                raise PerfFailed(f"perf record failed: {escape(text[-1]) if text else f'exit status {code}'}",
                                 "run it by hand: " + " ".join(argv))
            script = read_samples(self.perf, Path(tmp), self.root)
        samples = tuple(parse_script(script))
        pids = {}
        for host_pid in {s.host_pid for s in samples}:
            inner = self.procs.machine_pid(host_pid) if self.procs.belongs(host_pid) else None
            if inner is not None:
                pids[host_pid] = inner
        return Profile(self.event, seconds, samples, pids)

    def cancel(self) -> None:
        """Stop a recording under way early (its samples so far are still read)."""
        self._cancelled = True
        self._kill(signal.SIGINT)

    def _kill(self, sig: int) -> None:
        process = self._running
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)


def render_top(profile: Profile, limit: int = 15) -> str:
    """The two top lists as text: functions (self time) and processes."""
    total = len(profile.samples)
    out = [f"{total} samples of {profile.event} in {profile.seconds:.1f} s", ""]
    for title, rows in (("FUNCTION", profile.top_functions(limit)), ("PROCESS", profile.top_processes(limit))):
        out.append(f"{'SAMPLES':>7} {'%':>6}  {title}")
        out += [f"{r.samples:>7} {r.percent:>5.1f}%  {r.name}" for r in rows]
        out.append("")
    if not total:
        out.append("(no samples: the machine used no CPU while it was sampled)")
    return "\n".join(out) + "\n"
