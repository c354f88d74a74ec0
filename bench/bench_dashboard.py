#!/usr/bin/env python3
"""The dashboard under load: refresh cost with many cgroups and machines, key latency, CPU at rest.

1. (--only load) N real cgroups (default 5000, made like bench_cgtop.py in every hierarchy):
   the poller's cost per refresh (HostReaders.snapshot: sample + tree walk +
   machine list, off the UI thread), then the UI's cost to apply that snapshot
   with M machines in the list (default 200; the extra machine rows are
   synthetic, the cgroups real), and key latency: a cgtop sort key pressed on
   the 5000-row table until the reordered table is rendered.
2. (--only rest) At rest: K real BusyBox machines (default 20, booted ephemeral from the demo
   tree), the real app headless at the default 1 s refresh for S seconds; the
   process's CPU time over wall time.  Measured with the machines in their first
   minute (uptimes in seconds, sparklines filling: every machine row changes each
   second) and, with --settle 70, again once machines and dashboard are 70 s old;
   --terminal does both for the real `nsdash` in tmux.  `make bench` reports both.
3. (--only first) Start to the first full frame of the real `nsdash` in tmux, with the style rules
   an earlier start kept (nsdash.tui.rulecache) and without (a new user's first start), alternated.
4. (--only flood) Key latency while the followed journal floods.
5. (--only quit) `q` to the shell's turn: the terminal restored and the process gone.

    .venv/bin/python bench/bench_dashboard.py
    .venv/bin/python bench/bench_dashboard.py --cgroups 500 --machines 50 --rest-machines 5 --rest-seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# --peer runs part 4 in a child over another checkout's nsdash (this bench's code, that nsdash).
sys.path.insert(0, os.environ.get("NSDASH_BENCH_CODE", str(REPO)))
sys.path.insert(0, str(REPO / "bench"))

from bench_cgtop import make_tree, remove_tree  # noqa: E402
from hoststate import Watch  # noqa: E402
from hoststate import Window as HostWindow  # noqa: E402
from report import Report, need_root, wants_json  # noqa: E402
from stopping import shielded  # noqa: E402

from nsdash.tui.messages import MachineInfo, SnapshotReady  # noqa: E402


def cpu_now() -> float:
    t = os.times()
    return t.user + t.system


def poller_cost(refreshes: int):
    from nsdash.tui.poller import HostReaders

    readers = HostReaders()
    try:
        readers.snapshot()
        wall, cpu = [], []
        snap = None
        for _ in range(refreshes):
            c0, w0 = cpu_now(), time.perf_counter()
            snap = readers.snapshot()
            wall.append(time.perf_counter() - w0)
            cpu.append(cpu_now() - c0)
        return snap, statistics.median(wall), statistics.median(cpu), statistics.mean(cpu), max(cpu)
    finally:
        readers.close()


async def ui_cost(snap, machines: int, refreshes: int):
    from nsdash.tui.app import NsdashApp
    from nsdash.tui.widgets.cpu_table import CpuTable

    fake = tuple(MachineInfo(f"bench-{i:03d}", "running", "busybox 1", f"10.0.{i // 250}.{i % 250 + 1}",
                             time.time() - 60 * i, None) for i in range(machines))
    app = NsdashApp(poll=False)
    costs = []
    async with app.run_test(size=(160, 50)) as pilot:
        for i in range(refreshes + 1):
            s = snap._replace(timestamp=snap.timestamp + i, machines=snap.machines + fake)
            t0 = time.perf_counter()
            app.on_snapshot_ready(SnapshotReady(s))
            await pilot.pause()
            if i:
                costs.append(time.perf_counter() - t0)
        table = app.screen.query_one(CpuTable)
        table.focus()
        await pilot.pause()
        latencies = []
        for key in ("m", "t", "p", "c") * 3:
            t0 = time.perf_counter()
            await pilot.press(key)
            await pilot.pause()
            latencies.append(time.perf_counter() - t0)
        rows = table.row_count
    return statistics.median(costs), statistics.median(latencies), max(latencies), rows


def thread_cpu(name: str) -> float:
    """CPU seconds of this process's Python thread NAME (from /proc: the thread itself cannot be asked)."""
    thread = next((t for t in threading.enumerate() if t.name == name), None)
    if thread is None or thread.native_id is None:
        return 0.0
    try:
        with open(f"/proc/self/task/{thread.native_id}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


WINDOWS = 4  # the at-rest time is measured in this many equal windows: their spread is the row's


Rest = tuple[float, float, float, tuple[float, float], HostWindow]


async def at_rest(seconds: float, settled_at: float | None = None) -> list[Rest]:
    """Percent of one core over SECONDS: the whole process, its UI thread, its poller thread,
    the least and most of the whole process over WINDOWS windows, and the host over the same
    window (bench/hoststate.py).  With SETTLED_AT (a time.monotonic() value), measured once more
    from then on: the same figures again."""
    from nsdash.tui import gcpause
    from nsdash.tui.app import NsdashApp

    # As `nsdash` starts it (cli/dashboard.py): the collector held until the first full frame,
    # then the start-up heap frozen.  Without that the at-rest figure also counted full
    # collections walking the start-up heap (about 2 ms/s more here), which `nsdash` never does.
    gcpause.hold()
    app = NsdashApp(interval=1.0)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause(3)  # start-up and the first refreshes are not "rest"
        out = [await _rest_windows(pilot, seconds)]
        if settled_at is not None:
            await pilot.pause(max(0.0, settled_at - time.monotonic()))
            out.append(await _rest_windows(pilot, seconds))
        return out


async def _rest_windows(pilot, seconds: float) -> Rest:
    host = Watch()
    c0, u0, p0, w0 = cpu_now(), time.thread_time(), thread_cpu("nsdash-poller"), time.perf_counter()
    windows = []
    for _ in range(WINDOWS):
        c, w = cpu_now(), time.perf_counter()
        await asyncio.sleep(seconds / WINDOWS)  # (not pilot.pause: see count_child)
        windows.append((cpu_now() - c) / (time.perf_counter() - w) * 100)
    wall = time.perf_counter() - w0
    ours = (cpu_now() - c0) / wall * 100
    return (ours, (time.thread_time() - u0) / wall * 100,
            (thread_cpu("nsdash-poller") - p0) / wall * 100, (min(windows), max(windows)), host.end(ours))


def start_machines(k: int, names: list[str]) -> None:
    """Boot K BusyBox machines, appending each name as it starts (so a failure still cleans up)."""
    from nsdash.demo import trees
    from nsdash.errors import NsdashError
    from nsdash.launcher.spec import ContainerSpec
    from nsdash.machines import client

    tree = trees.ensure("busybox")
    for i in range(k):
        name = f"bench-rest{os.getpid()}-{i:02d}"  # two benches at once (helpers, CI) never share a name
        names.append(name)
        try:
            client.spawn(ContainerSpec(directory=tree, machine=name, boot=True, ephemeral=True), detach=True,
                         timeout=30, notice=None)
        except NsdashError as e:
            print(f"  ({name} did not start: {e.oneline()})")


def stop_machines(names: list[str]) -> None:
    """Stop every machine named, to the last: a second Ctrl-C or kill waits until they are all
    stopped (bench/stopping.py); one that will not stop is still asked of the next."""
    from nsdash.errors import NsdashError
    from nsdash.machines import client

    with shielded():
        for name in names:
            with contextlib.suppress(NsdashError, OSError):
                client.terminate(name, wait=True)
            with contextlib.suppress(NsdashError, OSError):
                client.clean_if_orphan(name, notice=None)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cgroups", type=int, default=5000)
    ap.add_argument("--machines", type=int, default=200)
    ap.add_argument("--refreshes", type=int, default=10)
    ap.add_argument("--rest-machines", type=int, default=20)
    ap.add_argument("--rest-seconds", type=float, default=30.0)
    ap.add_argument("--settle", type=float, default=0.0, metavar="SECONDS",
                    help="part 2 measures again once the machines and the dashboard are SECONDS old (e.g. 70: "
                         "past their first minute, full sparklines), and the RSS then; --terminal too")
    ap.add_argument("--only", choices=("load", "rest", "first", "flood", "quit"),
                    help="run only part 1 (load), part 2 (rest), part 3 (first frame), part 4 (journal flood) "
                         "or part 5 (quit: `q` to the shell's turn)")
    ap.add_argument("--flood-rate", type=int, default=2000, help="part 4: journal lines a second (default 2000)")
    ap.add_argument("--flood-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--count", type=float, default=0.0, metavar="SECONDS",
                    help="part 2 also counted: the headless app under callgrind for SECONDS once the timed windows "
                         "are done, instructions per refresh of its UI and poller threads (no host's cache "
                         "penalty in a count; what its wall-clock timers do still varies, 60-83 M over 4 runs)")
    ap.add_argument("--count-still", action="store_true",
                    help="with --count, count once more with every snapshot replaced by the first: the UI's "
                         "cost a refresh when nothing it shows changes (the rest is what the host's changes cost)")
    ap.add_argument("--count-child", metavar="FLAG", help=argparse.SUPPRESS)
    ap.add_argument("--first-runs", type=int, default=7, help="starts timed for the first frame (default 7)")
    ap.add_argument("--module", action="store_true",
                    help="part 3 starts `python -m nsdash` (with site) instead of the checkout's bin/nsdash "
                         "as `make venv` installs it (`python -S`): the figures before session 9")
    ap.add_argument("--peer", type=Path, metavar="CHECKOUT",
                    help="part 3 also times the dashboard of another checkout (e.g. main), alternating run by "
                         "run; part 2 with --terminal runs its `nsdash` in tmux beside this one's, same windows; "
                         "--count counts its app beside this one's, over the same window")
    ap.add_argument("--terminal", action="store_true",
                    help="part 2 also with the real `nsdash` in a tmux terminal (160x50), its CPU from /proc")
    report = Report("dashboard", wants_json())
    args = ap.parse_args()
    if args.count_child:
        asyncio.run(count_child(args.count_child, still=args.count_still))
        return 0
    if args.flood_child:
        med, most, n = asyncio.run(flood_keys(args.flood_rate))
        print(f"{med} {most} {n}")
        return 0
    need_root("bench_dashboard", "it makes cgroups and machines")
    with report.capture():
        if args.only in (None, "first"):
            first(args, report)
        if args.only in (None, "quit"):
            quit_time(args, report)
        if args.only in (None, "load"):
            load(args, report)
        if args.only in (None, "rest"):
            rest(args, report)
        if args.only in (None, "flood"):
            flood(args, report)
    report.done()
    return 0


def rss_mib(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def first(args, report: Report) -> None:
    """Start to first full frame: the real `nsdash` in tmux 160x48, the screen read until every pane is
    filled.  Twice: with a warm rule cache (nsdash.tui.rulecache: a start after the first) and with none
    (a new user's first start, as issue 16 asks: every style source parsed), alternated start by start."""
    import compileall
    import shutil
    import tempfile

    # Bytecode compiled in both checkouts, as an installed wheel has it: with PYTHONDONTWRITEBYTECODE
    # set (as it may be), a checkout never run without it compiles all ~40 of its modules at every
    # start (about 30 ms of CPU here), which is not what a user's start pays.
    checkouts = [REPO, *([args.peer.resolve()] if args.peer else [])]
    for checkout in checkouts:
        compileall.compile_dir(str(checkout / "nsdash"), quiet=1)
    # Each checkout its own cache directory (the user's ~/.cache is neither read nor written): warmed
    # by one start not counted; a cold start gets a new empty one.
    scratch = tempfile.mkdtemp(prefix="nsdash-bench-first-")
    try:
        warm = {c: os.path.join(scratch, f"warm{i}") for i, c in enumerate(checkouts)}
        for i, checkout in enumerate(checkouts):
            first_frame(f"nsdash-bench-first-{os.getpid()}-prime{i}", repo=checkout, module=args.module,
                        cache=warm[checkout])
        runs: dict[tuple[Path, str], tuple[list[float], list[float]]] = {
            (c, temp): ([], []) for c in checkouts for temp in ("warm", "cold")}
        for i in range(args.first_runs):
            # Which goes first alternates too: the second start finds the first's files in the page cache.
            order = list(runs) if i % 2 == 0 else list(reversed(runs))
            for n, (checkout, temp) in enumerate(order):
                cache = warm[checkout] if temp == "warm" else tempfile.mkdtemp(dir=scratch, prefix="cold")
                walls, cpus = runs[checkout, temp]
                walls.append(first_frame(f"nsdash-bench-first-{os.getpid()}-{i}-{n}", repo=checkout,
                                         module=args.module, cache=cache))
                cpus.append(FIRST_CPU[-1])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    load_now = os.getloadavg()[0]
    for (checkout, temp), (walls, cpus) in runs.items():
        who = "this checkout" if checkout == REPO else str(checkout)
        print(f"  {who}, {temp} rule cache: median {statistics.median(walls) * 1000:.0f} ms "
              f"[{min(walls) * 1000:.0f}..{max(walls) * 1000:.0f}], CPU used by then median "
              f"{statistics.median(cpus) * 1000:.0f} ms [{min(cpus) * 1000:.0f}..{max(cpus) * 1000:.0f}]"
              f" (CPU: load-proof, unlike the wall time)")
    floor = [floor_frame(f"nsdash-bench-floor-{os.getpid()}-{i}") for i in range(args.first_runs)]
    print(f"  the method's floor (tmux started, a program that prints the frame at once, the same polling): "
          f"median {statistics.median(floor) * 1000:.0f} ms [{min(floor) * 1000:.0f}..{max(floor) * 1000:.0f}]")
    how = "python -m nsdash" if args.module else "bin/nsdash"
    for temp, label in (("warm", "a start after the first"), ("cold", "a new user's first start")):
        walls, cpus = runs[REPO, temp]
        med = statistics.median(walls)
        print(f"start to first full frame in tmux 160x48 ({how}), {temp} rule cache ({label}): "
              f"median {med * 1000:.0f} ms [{min(walls) * 1000:.0f}..{max(walls) * 1000:.0f}] over "
              f"{len(walls)} starts; load {load_now:.2f}")
        what = "start to first full frame (tmux 160x48)" + (", no rule cache (first start)" if temp == "cold" else "")
        report.row(f"dashboard: {what}", med * 1000, "goal", 250.0, "ms",
                   spread=(min(walls) / 0.25, max(walls) / 0.25),
                   note=f"ratio to the 250 ms goal; CPU by then {statistics.median(cpus) * 1000:.0f} ms")


def _full_frame(screen: str) -> bool:
    """Header, machine list, cgtop's root row, the tree's root node and the key footer all painted."""
    return ("q Quit" in screen and "▼ /" in screen and "Control Group" in screen
            and any(line.startswith("│ / ") or "││ / " in line for line in screen.splitlines())
            and ("Machine " in screen or "No machines" in screen))


FIRST_CPU: list[float] = []  # CPU seconds the dashboard had used at its first full frame, run by run
LAST_FRAME: list[str] = []  # the last full frame read (floor_frame prints it)


def _until(sock: str, done, t0: float, timeout: float, pause: float, what: str) -> tuple[float, str]:
    """Read the pane of SOCK's tmux server until DONE(screen): the seconds since T0 then and that
    screen; once TIMEOUT seconds from T0 have passed, the bench ends: WHAT did not happen."""
    import subprocess

    while time.perf_counter() - t0 < timeout:
        screen = subprocess.run(["tmux", "-L", sock, "capture-pane", "-p", "-t", "f"],
                                capture_output=True, text=True).stdout
        if done(screen):
            return time.perf_counter() - t0, screen
        time.sleep(pause)
    raise SystemExit(f"{what} within {timeout:.0f} s")


def _kill_server(sock: str) -> None:
    """End SOCK's tmux server and remove its socket (kill-server leaves the file behind)."""
    import subprocess

    with shielded():
        subprocess.run(["tmux", "-L", sock, "kill-server"], check=False)
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(os.environ.get("TMUX_TMPDIR") or "/tmp", f"tmux-{os.getuid()}", sock))


def _pane_cpu(sock: str) -> float:
    """CPU seconds (user + system) of the process in SOCK's pane: `exec env … python`, so the pane's pid."""
    import subprocess

    pid = subprocess.run(["tmux", "-L", sock, "list-panes", "-t", "f", "-F", "#{pane_pid}"],
                         capture_output=True, text=True).stdout.split()[0]
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def first_frame(sock: str, timeout: float = 20.0, repo: Path = REPO, module: bool = False,
                cache: str | None = None) -> float:
    """Seconds from `tmux new-session` to a full frame of REPO's nsdash; SOCK names a tmux server of its own;
    CACHE: its XDG_CACHE_HOME (where its rule cache is kept), else the caller's.

    Started as a user's `nsdash` starts: REPO's bin/nsdash run by this environment's python with
    -S, as `make venv` installs it (REPO first on the path); MODULE: `python -m nsdash` instead
    (the interpreter's site too: about 11 M instructions more, callgrind)."""
    import subprocess

    env = f"NSDASH_STATE_DIR={os.environ['NSDASH_STATE_DIR']} PYTHONPATH={repo}"
    if cache is not None:
        env += f" XDG_CACHE_HOME={cache}"
    command = f"{sys.executable} -m nsdash" if module else f"{sys.executable} -S {repo}/bin/nsdash"
    t0 = time.perf_counter()
    started = subprocess.run(["tmux", "-L", sock, "new-session", "-d", "-s", "f", "-x", "160", "-y", "48",
                              f"exec env {env} {command}"], cwd=repo, capture_output=True, text=True)
    if started.returncode != 0:
        raise SystemExit(f"tmux new-session failed: {started.stderr.strip()}")
    try:
        wall, screen = _until(sock, _full_frame, t0, timeout, 0.005, "no full frame")
        FIRST_CPU.append(_pane_cpu(sock))
        LAST_FRAME[:] = [screen]
        return wall
    finally:
        _kill_server(sock)


QUIT_MARK = "nsdash-bench-quit-done"


# The method's floor: a program that shows the frame and exits on the first byte typed.
FLOOR_QUIT = ("import sys, tty; sys.stdout.write(open(sys.argv[1]).read()); sys.stdout.flush(); "
              "tty.setraw(0); sys.stdin.buffer.raw.read(1); sys.stdout.write(chr(13) + chr(10))")  # (the mark on a line of its own)


def quit_frame(sock: str, repo: Path = REPO, timeout: float = 20.0, run: str | None = None) -> float:
    """Seconds from `q` sent to REPO's dashboard (in tmux 160x48, 1.5 s after its first full frame)
    to the shell's turn: a line the shell prints once nsdash has exited, read from the screen.
    RUN: another command in its place (the method's floor)."""
    import subprocess

    if run is None:
        run = f"env NSDASH_STATE_DIR={os.environ['NSDASH_STATE_DIR']} PYTHONPATH={repo} {sys.executable} -S {repo}/bin/nsdash"
    command = f"{run}; echo {QUIT_MARK}; exec sleep {timeout:.0f}"
    subprocess.run(["tmux", "-L", sock, "new-session", "-d", "-s", "f", "-x", "160", "-y", "48",
                    f"exec sh -c '{command}'"], cwd=repo, check=True)
    try:
        LAST_FRAME[:] = [_until(sock, _full_frame, time.perf_counter(), timeout, 0.01, "no full frame")[1]]
        time.sleep(1.5)  # past the start's own work: a user quits a dashboard that has been showing
        t0 = time.perf_counter()
        subprocess.run(["tmux", "-L", sock, "send-keys", "-t", "f", "q"], check=True)
        return _until(sock, lambda screen: QUIT_MARK in screen, t0, timeout, 0.002, "the dashboard did not quit")[0]
    finally:
        _kill_server(sock)


def floor_quit(sock: str) -> float:
    """quit_frame's own share: the same for a program that shows the last frame read and exits
    on the first byte typed."""
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".txt") as frame:
        frame.write(LAST_FRAME[0].rstrip("\n"))
        frame.flush()
        return quit_frame(sock, run=f"{sys.executable} -S -c \"{FLOOR_QUIT}\" {frame.name}")


def quit_time(args, report: Report) -> None:
    """Part 5: `q` to the shell's turn (the terminal restored and the process gone), alternated with
    --peer's; and the method's floor: the same for a program that exits at once on a key."""
    runs: dict[Path, list[float]] = {REPO: [], **({args.peer.resolve(): []} if args.peer else {})}
    for i in range(args.first_runs):
        for n, checkout in enumerate(list(runs) if i % 2 == 0 else list(reversed(runs))):
            runs[checkout].append(quit_frame(f"nsdash-bench-quit-{os.getpid()}-{i}-{n}", repo=checkout))
    floor = [floor_quit(f"nsdash-bench-quit-floor-{os.getpid()}-{i}") for i in range(args.first_runs)]
    print(f"  the method's floor (a program that shows the frame and exits on the key, the same polling): "
          f"median {statistics.median(floor) * 1000:.1f} ms [{min(floor) * 1000:.1f}..{max(floor) * 1000:.1f}]")
    for checkout, walls in runs.items():
        print(f"`q` to the shell's turn ({'this checkout' if checkout == REPO else checkout}): median "
              f"{statistics.median(walls) * 1000:.1f} ms [{min(walls) * 1000:.1f}..{max(walls) * 1000:.1f}] "
              f"over {len(walls)} quits; load {os.getloadavg()[0]:.2f}")
    ours = runs[REPO]
    theirs = runs.get(args.peer.resolve()) if args.peer else None
    report.row("dashboard: q to the shell's turn (tmux 160x48)", statistics.median(ours) * 1000,
               str(args.peer) if theirs else "-", statistics.median(theirs) * 1000 if theirs else None, "ms",
               spread=(min(ours) * 1000, max(ours) * 1000),
               note=f"spread: min..max of nsdash's; the method's floor {statistics.median(floor) * 1000:.0f} ms")


def floor_frame(sock: str, timeout: float = 20.0) -> float:
    """first_frame's own share: seconds from `tmux new-session` to the full frame read, for a
    pane whose program (cat) prints the last full frame first_frame read at once."""
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".txt") as frame:
        frame.write(LAST_FRAME[0].rstrip("\n"))
        frame.flush()
        t0 = time.perf_counter()
        subprocess.run(["tmux", "-L", sock, "new-session", "-d", "-s", "f", "-x", "160", "-y", "48",
                        f"exec sh -c 'cat {frame.name}; exec sleep {timeout:.0f}'"], check=True)
        try:
            return _until(sock, _full_frame, t0, timeout, 0.005, "the floor's frame was not read")[0]
        finally:
            _kill_server(sock)


class _FloodFeed:
    """A journal written at RATE lines a second: each read returns what was written since the last
    (at most 5,000); its descriptor is always readable, as a flooding journal's is."""

    def __init__(self, rate: int) -> None:
        self.rate, self.n, self.t = rate, 0, time.monotonic()
        self.r, self.w = os.pipe2(os.O_CLOEXEC)
        os.write(self.w, b"x")

    def tail(self, n: int):
        return ()

    def read_new(self):
        from nsdash.tui.messages import JournalLine

        now = time.monotonic()
        k = min(5000, int((now - self.t) * self.rate))
        if k == 0:
            time.sleep(0.001)
            return ()
        self.t = now
        start, self.n = self.n, self.n + k
        return [JournalLine(int(now * 1e6), "flood", 6, "flood", None, f"line {i} " + "x" * 60)
                for i in range(start, start + k)]

    def filenos(self) -> list[int]:
        return [self.r]

    def close(self) -> None:
        os.close(self.r)
        os.close(self.w)


class _FloodReaders:
    def __init__(self, rate: int) -> None:
        self.rate, self.i = rate, 0

    def snapshot(self):
        from nsdash.tui import sample_data

        self.i += 1
        return sample_data.snapshot(self.i)

    def open_journal(self, machines):
        return _FloodFeed(self.rate)

    def close(self) -> None:
        pass


async def flood_keys(rate: int) -> tuple[float, float, int]:
    """Key latency while the followed journal floods: the real app and poller over a journal written
    at RATE lines/s; a cgtop sort key posted as the terminal driver does, until the table took it."""
    from nsdash.tui.app import NsdashApp
    from nsdash.tui.widgets.cpu_table import CpuTable

    app = NsdashApp(readers=_FloodReaders(rate), interval=1.0)
    latencies = []
    async with app.run_test(size=(160, 48)):
        await asyncio.sleep(1.0)
        app.follow_journal("flood")
        await asyncio.sleep(2.0)  # the flood is on
        table = app.screen.query_one(CpuTable)
        table.focus()
        for key in ("m", "c") * 10:
            t0 = time.perf_counter()
            app.simulate_key(key)
            want = "memory" if key == "m" else "cpu"
            while table.order != want and time.perf_counter() - t0 < 30:
                await asyncio.sleep(0.002)
            latencies.append(time.perf_counter() - t0)
            await asyncio.sleep(0.1)
    return statistics.median(latencies), max(latencies), len(latencies)


def flood(args, report: Report) -> None:
    """Part 4, in a child per checkout (this one and --peer's), alternating."""
    import subprocess

    def child(code: Path) -> tuple[float, float]:
        out = subprocess.run([sys.executable, __file__, "--flood-child", "--flood-rate", str(args.flood_rate)],
                             env={**os.environ, "NSDASH_BENCH_CODE": str(code)}, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"flood child over {code} failed: {out.stderr.strip()[-400:]}")
        med, most, _ = out.stdout.split()[-3:]
        return float(med), float(most)

    runs: dict[Path, list[tuple[float, float]]] = {REPO: []}
    if args.peer:
        runs[args.peer.resolve()] = []
    for _ in range(3):
        for code in runs:
            runs[code].append(child(code))
    for code, got in runs.items():
        meds = [m for m, _ in got]
        print(f"key latency while the journal floods at {args.flood_rate} lines/s ({code}): median "
              f"{statistics.median(meds) * 1000:.0f} ms [{min(meds) * 1000:.0f}..{max(meds) * 1000:.0f} over 3 runs], "
              f"max {max(m for _, m in got) * 1000:.0f} ms; load {os.getloadavg()[0]:.2f}")
    meds = [m for m, _ in runs[REPO]]
    report.row(f"dashboard key latency, journal flood {args.flood_rate} lines/s", statistics.median(meds) * 1000,
               "goal", 100.0, "ms", spread=(min(meds) * 1000, max(meds) * 1000), note="spread: min..max over runs")


def load(args, report: Report) -> None:
    top = f"nsdash-bench-dash-{os.getpid()}"
    make_tree(top, args.cgroups, procs=False)
    try:
        snap, wall, cpu, mean, most = poller_cost(args.refreshes)
        print(f"poller, {len(snap.rows)} cgroups: {wall * 1000:.0f} ms wall, {cpu * 1000:.0f} ms CPU per refresh"
              f" (median; mean {mean * 1000:.0f} ms, max {most * 1000:.0f} ms with the tree walk; off the UI thread)")
        apply_s, lat_med, lat_max, rows = asyncio.run(ui_cost(snap, args.machines, args.refreshes))
        print(f"UI, {rows} table rows + {args.machines + len(snap.machines)} machines: "
              f"{apply_s * 1000:.0f} ms to apply a refresh")
        print(f"key latency (cgtop sort key on {rows} rows, pressed until rendered): "
              f"median {lat_med * 1000:.0f} ms, max {lat_max * 1000:.0f} ms")
        rss = rss_mib()
        print(f"memory: {rss:.0f} MiB resident (this process: the headless app with {rows} table rows and "
              f"{args.machines + len(snap.machines)} machine rows, the poller's readers, the bench)")
        report.row(f"dashboard poller CPU per refresh, {len(snap.rows)} cgroups", cpu * 1000, "-", None, "ms",
                   note=f"wall {wall * 1000:.0f} ms, max {most * 1000:.0f} ms")
        report.row(f"dashboard key latency, {rows} rows", lat_med * 1000, "-", None, "ms",
                   spread=(lat_med * 1000, lat_max * 1000), note="spread: median..max")
        report.row(f"dashboard RSS, {rows} cgroups + {args.machines} machines (headless)", rss, "-", None, "MiB")
    finally:
        with shielded():
            remove_tree(top, args.cgroups, [])


def rest(args, report: Report) -> None:
    """Part 2.  In a machine's first minute its uptime shows seconds and, in the dashboard's first
    minute, its sparklines fill: every machine row changes every second.  Both are reported, as
    labelled rows: the first window starts with the machines just booted, the second (--settle S)
    once they and the dashboard are S seconds old."""
    names: list[str] = []
    try:
        start_machines(args.rest_machines, names)
        booted = time.monotonic()
        load_before = os.getloadavg()[0]
        settled_at = booted + args.settle if args.settle else None
        measured = asyncio.run(at_rest(args.rest_seconds, settled_at))
        n = len(names)
        pct, ui, poller, spread, host = measured[0]
        print(f"at rest, {n} machines in their first minute, 1 s refresh: {pct:.1f}% of one core "
              f"(UI thread {ui:.1f}%, poller {poller:.1f}%; load average {load_before:.2f} before, "
              f"{os.getloadavg()[0]:.2f} after)\n  {host.line()}")
        report.row(f"dashboard at rest, {n} machines in their first minute (headless), % of a core", pct,
                   "goal", 1.0, "%", spread=spread,
                   note=f"UI {ui:.1f}%, poller {poller:.1f}%; uptimes in seconds, sparklines filling; "
                        f"spread over {WINDOWS} windows; {host.note()}")
        if settled_at is not None:
            pct, ui, poller, spread, host = measured[1]
            rss = rss_mib()
            print(f"at rest, settled (the {n} machines and the dashboard {args.settle:g} s old): {pct:.1f}% of "
                  f"one core (UI thread {ui:.1f}%, poller {poller:.1f}%; load {os.getloadavg()[0]:.2f}); "
                  f"{rss:.0f} MiB resident (headless app and bench)\n  {host.line()}")
            report.row(f"dashboard at rest, {n} machines settled (older than a minute; headless), % of a core",
                       pct, "goal", 1.0, "%", spread=spread,
                       note=f"UI {ui:.1f}%, poller {poller:.1f}%; machines and dashboard {args.settle:g} s old; "
                            f"spread over {WINDOWS} windows; {host.note()}")
            report.row(f"dashboard RSS, {n} machines {args.settle:g} s old (headless)", rss, "-", None, "MiB")
        if args.terminal:
            first, settled, rss, age = in_tmux(args.rest_seconds, args.settle, booted, args.peer)
            pct, spread, machines_age, host = first
            print(f"at rest in tmux (160x50, real terminal output), {n} machines {machines_age:.0f} s old, "
                  f"the dashboard in its first minute: {pct:.1f}% of one core [{spread[0]:.1f}..{spread[1]:.1f}]"
                  f"\n  {host.line()}")
            report.row(f"dashboard at rest in tmux, {n} machines, the dashboard in its first minute, % of a core",
                       pct, "goal", 1.0, "%", spread=spread,
                       note=f"sparklines filling; machines {machines_age:.0f} s old; spread over {WINDOWS} windows; "
                            f"{host.note()}")
            if settled is not None:
                pct, spread, machines_age, host = settled
                print(f"at rest in tmux, settled (the dashboard {args.settle:g} s old, {n} machines "
                      f"{machines_age:.0f} s old): {pct:.1f}% of one core [{spread[0]:.1f}..{spread[1]:.1f}]"
                      f"\n  {host.line()}")
                report.row(f"dashboard at rest in tmux, {n} machines settled (older than a minute), % of a core",
                           pct, "goal", 1.0, "%", spread=spread,
                           note=f"dashboard {args.settle:g} s old; spread over {WINDOWS} windows; {host.note()}")
            print(f"  tmux: {rss:.0f} MiB resident after {age:.0f} s")
            report.row(f"dashboard RSS after {age:.0f} s, {n} machines (tmux)", rss, "-", None, "MiB")
        if args.count:
            counted(args.count, n, booted, report, peer=args.peer)
            if args.count_still:
                counted(args.count, n, booted, report, still=True, peer=args.peer)
    finally:
        stop_machines(names)


# Percent of a core, its least..most, the machines' age, the host over the window (bench/hoststate.py).
Window = tuple[float, tuple[float, float], float, HostWindow]


async def count_child(flag: str, still: bool = False) -> None:
    """--count-child FLAG: the headless app at rest (as at_rest runs it) under callgrind with its
    instrumentation off; once three snapshots are applied it writes its pid to FLAG.ready (the parent
    then turns the counting on), and when FLAG.stop appears, the snapshots applied since to FLAG.count.
    STILL: every snapshot is the first one again (only the clock moves)."""
    from nsdash.tui import gcpause
    from nsdash.tui.app import NsdashApp

    applied = [0]
    first: list[SnapshotReady] = []

    class Counted(NsdashApp):
        # Only counts: Textual runs NsdashApp's own handler after this one (it calls the handler of
        # each class up the MRO), so calling it here too applied every snapshot twice.
        def on_snapshot_ready(self, message: SnapshotReady) -> None:
            applied[0] += 1
            if still:
                first[:] = first or [message]
                message.snapshot = first[0].snapshot

    gcpause.hold()
    app = Counted(interval=1.0)
    # Waits by asyncio.sleep, not pilot.pause: each pause posts a callback to every widget, waits
    # for them all and forces a screen update, work `nsdash` never does (a third of the UI count).
    async with app.run_test(size=(160, 50)):
        while applied[0] < 3:
            await asyncio.sleep(0.5)
        start = applied[0]
        Path(flag + ".ready").write_text(str(os.getpid()))
        while not os.path.exists(flag + ".stop"):
            await asyncio.sleep(0.5)
        Path(flag + ".count").write_text(str(applied[0] - start))


def counted(seconds: float, n: int, booted: float, report: Report, still: bool = False,
            peer: Path | None = None) -> None:
    """Part 2 counted: instructions per refresh of the headless app's UI thread and poller thread
    (callgrind, one output per thread) over SECONDS with the same N machines.  The timed rows move
    with the host (bench/hoststate.py: the same refresh cost 1.1 ms back to back and 7.7-11 ms after
    a second asleep); a count has no cache penalty in it.  It is not exact either: the app runs ~50x
    slower under callgrind, so what its wall-clock timers and coalesced snapshots do per refresh
    varies (settled, 20 machines: 60.3 and 82.7 M, session 11's code 74.3 and 68.9 M, alternated
    under load 3), and so does what the host does meanwhile (other processes' cgroups coming and
    going are rows to add and drop).  PEER: another checkout's app counted at the same time over the
    same window (the same machines, the same changes in the host), printed beside this one's.
    Kernel work (the poller's reads) is not in it.  STILL: count_child's."""
    import shutil
    import subprocess
    import tempfile

    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("at rest, counted: valgrind not found, no count rows (apt-get install valgrind)")
        return
    codes = [REPO, *([peer.resolve()] if peer else [])]
    with tempfile.TemporaryDirectory(prefix="nsdash-bench-count-") as tmp:
        flags = [os.path.join(tmp, f"flag{i}") for i in range(len(codes))]
        children = [subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--separate-threads=yes", "--instr-atstart=no",
             f"--callgrind-out-file={tmp}/cg{i}.out", sys.executable, __file__, "--count-child", flag,
             *(["--count-still"] if still else [])],
            env={**os.environ, "NSDASH_BENCH_CODE": str(code)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for i, (code, flag) in enumerate(zip(codes, flags, strict=True))]
        try:
            deadline = time.monotonic() + 300
            while not all(os.path.exists(f + ".ready") for f in flags) and time.monotonic() < deadline \
                    and all(c.poll() is None for c in children):
                time.sleep(0.5)
            if not all(os.path.exists(f + ".ready") for f in flags):
                print("at rest, counted: the app under callgrind did not start; no count rows")
                return
            age = time.monotonic() - booted
            for child in children:
                subprocess.run(["callgrind_control", "-i", "on", str(child.pid)], check=True, capture_output=True)
            time.sleep(seconds)
            for flag in flags:
                Path(flag + ".stop").touch()
            for child in children:
                child.wait(timeout=300)
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait()
        counts = []  # per checkout: refreshes, UI thread's instructions, the other threads'
        for i, flag in enumerate(flags):
            refreshes = int(Path(flag + ".count").read_text())
            per_thread = sorted(Path(tmp).glob(f"cg{i}.out-*"))  # -01 the main (UI) thread, then the others
            totals = [_callgrind_total(f) for f in per_thread]
            if refreshes < 1 or not totals:
                print(f"at rest, counted: {refreshes} refreshes, {len(totals)} threads counted; no count rows")
                return
            counts.append((refreshes, totals[0] / refreshes / 1e6, sum(totals[1:]) / refreshes / 1e6))
    what = f"{n} machines, nothing shown changing (the first snapshot again)" if still else f"{n} machines"
    for code, (refreshes, ui, others) in zip(codes, counts, strict=True):
        print(f"at rest, counted{'' if code == REPO else f' ({code}, the same window)'} (callgrind, {what}, "
              f"{age:.0f} s old, {refreshes} refreshes): {ui + others:.1f} M instructions a refresh "
              f"(UI thread {ui:.1f} M, the poller and any other thread {others:.1f} M)")
    refreshes, ui, others = counts[0]
    theirs = counts[1] if peer else None
    note = f"callgrind over {refreshes} refreshes, machines {age:.0f} s old; user space only"
    if theirs:
        note += f"; the peer's counted at the same time ({theirs[0]} refreshes)"
    report.row(f"dashboard at rest, {what}, UI thread instructions a refresh (headless)", ui,
               str(peer) if peer else "-", theirs[1] if theirs else None, "M instr", note=note)
    report.row(f"dashboard at rest, {what}, poller instructions a refresh (headless)", others,
               str(peer) if peer else "-", theirs[2] if theirs else None, "M instr",
               note=note + "; every thread but the UI's (at rest: the poller)")


def _callgrind_total(path: Path) -> int:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    return 0


def in_tmux(seconds: float, settle: float, booted: float,
            peer: Path | None = None) -> tuple[Window, Window | None, float, float]:
    """The real `nsdash` in a detached tmux session: its CPU time over SECONDS of wall time (percent,
    the least and most over WINDOWS windows, and the machines' age then, from BOOTED), first from 8 s
    after its start (its sparklines filling) and, with SETTLE, again once it is SETTLE seconds old;
    then its resident memory (MiB) and its age (s).  With PEER (another checkout, e.g. main), that
    checkout's `nsdash` runs at the same time in a second session over the same machines and is
    measured over the same windows (printed: both see the same load, so their ratio holds)."""
    import subprocess

    env = f"NSDASH_STATE_DIR={os.environ['NSDASH_STATE_DIR']}"
    repos = [REPO, *([peer.resolve()] if peer else [])]
    sessions = [f"nsdash-bench-{os.getpid()}{'-peer' if i else ''}" for i in range(len(repos))]
    try:
        for session, repo in zip(sessions, repos, strict=True):
            subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "50",
                            f"env {env} PYTHONPATH={repo} {sys.executable} -m nsdash"], check=True, cwd=repo)
        born = time.monotonic()
        pane_pids = [int(subprocess.run(["tmux", "list-panes", "-t", session, "-F", "#{pane_pid}"],
                                        capture_output=True, text=True, check=True).stdout.split()[0])
                     for session in sessions]
        time.sleep(8)  # start-up and the first refreshes are not "at rest"
        pids = [_python_of(pane_pid) for pane_pid in pane_pids]

        def ticks(pid: int) -> int:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])  # utime + stime

        def measure() -> list[Window]:
            age = time.monotonic() - booted
            host = Watch()
            t0, c0 = time.monotonic(), [ticks(pid) for pid in pids]
            windows: list[list[float]] = [[] for _ in pids]
            for _ in range(WINDOWS):
                t, c = time.monotonic(), [ticks(pid) for pid in pids]
                time.sleep(seconds / WINDOWS)
                for i, pid in enumerate(pids):
                    windows[i].append(100 * (ticks(pid) - c[i]) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - t))
            wall = time.monotonic() - t0
            pcts = [100 * (ticks(pid) - c0[i]) / os.sysconf("SC_CLK_TCK") / wall for i, pid in enumerate(pids)]
            seen = host.end(sum(pcts))  # both dashboards (with --peer) are ours, not the host's others
            return [(pct, (min(windows[i]), max(windows[i])), age, seen) for i, pct in enumerate(pcts)]

        first = measure()
        settled = None
        if settle:
            time.sleep(max(0.0, born + settle - time.monotonic()))
            settled = measure()
        if peer:
            for what, got in (("the dashboards in their first minute", first), ("settled", settled)):
                if got is not None:
                    (ours, _, _, _), (theirs, _, _, _) = got
                    print(f"  at rest in tmux, {what}, side by side over the same windows: this checkout "
                          f"{ours:.2f}%, {peer} {theirs:.2f}% (ratio {ours / theirs if theirs else float('nan'):.2f}); "
                          f"load {os.getloadavg()[0]:.2f}")
        return first[0], settled[0] if settled else None, rss_mib(pids[0]), time.monotonic() - born
    finally:
        with shielded():
            for session in sessions:
                subprocess.run(["tmux", "kill-session", "-t", session], check=False, capture_output=True)


def _python_of(pid: int) -> int:
    """The deepest process under PID: tmux runs the command through a shell and env."""
    while True:
        kids: list[str] = []
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += f.read().split()
        if not kids:
            return pid
        pid = int(kids[0])


if __name__ == "__main__":
    sys.exit(main())
