"""What a guest's shutdown does under nsdash and under systemd-nspawn, counted: the processes it
runs from the typed `poweroff` to its PID 1's exit, and the mounts it sees.

A guest's shutdown is the guest's own code, but what it finds is the tool's: Debian's sysvinit
umountfs runs a grep for every line of /proc/mounts, so each mount the tool adds is one more
process at every shutdown (a millisecond or more each), and the timings of one shutdown spread
too widely (host-wide sync() calls, other load) for a few milliseconds to show.  Counted instead,
per tool: the guest's mounts (/proc/PID1/mountinfo, read from the host once the guest is at its
shell prompt), the programs exec'd from the guest's `poweroff` to its PID 1's exit (perf trace
--no-syscalls: the scheduler's exec and exit tracepoints, neither tool slowed), and which programs
ran a different number of times under the two tools.  Runs where the guest waited for processes
that outlived its SIGTERM (bench_boot.SURVIVORS: a race inside the guest under either tool) are
counted apart.  Each tool boots its own copy of the cached tree, alternating, as bench_boot.py does.

Run as root: .venv/bin/python bench/bench_shutdown_execs.py [--runs N] [GUEST...]   (default: sysvinit bullseye)
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_boot as bb  # noqa: E402
from bench_spawn import clean_nspawn_leftovers, copy_tree, system_bus  # noqa: E402
from report import need_root  # noqa: E402

from nsdash.demo import trees  # noqa: E402

EVENT = re.compile(r"\s*[\d.]+ \S+/(\d+) sched:sched_process_(exec|exit)\((.*)\)")
FILENAME = re.compile(r'filename: "([^"]*)"')
POWEROFF = ("/sbin/poweroff", "/usr/sbin/poweroff", "/bin/poweroff", "/usr/bin/poweroff")


def shutdown_execs(trace: str, pid1: int | None) -> collections.Counter[str] | None:
    """The programs exec'd (by path) from the first exec of poweroff to the exit of the guest's
    PID 1 (host PID PID1; the last exit in the trace if unknown); None without a poweroff."""
    counts: collections.Counter[str] = collections.Counter()
    started = False
    for m in map(EVENT.match, trace.splitlines()):
        if m is None:
            continue
        pid, kind, args = int(m[1]), m[2], m[3]
        if kind == "exec":
            name = FILENAME.search(args)
            path = name[1] if name else "?"
            started = started or path in POWEROFF
            if started:
                counts[path] += 1
        elif started and pid1 is not None and pid == pid1:
            return counts
    return counts if started else None


def child_of(pid: int) -> int | None:
    """PID's first child (perf's: the tool it runs)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = f.read().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def one_run(tool: str, tree: Path, name: str, out: Path) -> tuple[int | None, collections.Counter[str] | None, bool]:
    """(the guest's mounts, its shutdown's programs, survivors) of one boot to poweroff."""
    command = ["perf", "trace", "--no-syscalls", "-o", str(out), "-e",
               "sched:sched_process_exec,sched:sched_process_exit", "--", *bb.argv(tool, tree, name)]
    run = bb.Run(command, bb.nsdash_boot_env() if tool == "nsdash" else bb.nspawn_env())
    try:
        run.expect(bb.LOGIN, 0, "login prompt")
        mark = len(run.out)
        run.type(b"root\r")
        run.expect(bb.PROMPT, mark, "root shell")
        traced = child_of(run.pid)
        pid1 = bb.guest_pid1(traced) if traced is not None else None
        mounts = None
        if pid1 is not None:
            with open(f"/proc/{pid1}/mountinfo") as f:
                mounts = sum(1 for _ in f)
        mark = len(run.out)
        run.type(b"poweroff\r")
        run.wait_exit()
    finally:
        run.close()
    return mounts, shutdown_execs(out.read_text(), pid1), bool(bb.SURVIVORS.search(run.out, mark))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("guests", nargs="*", metavar="GUEST", help=f"{', '.join(trees.MATRIX)} (default: sysvinit bullseye)")
    ap.add_argument("--runs", type=int, default=3, help="runs per tool and guest (default 3)")
    args = ap.parse_args()
    need_root("bench_shutdown_execs", "it boots guests under both tools")
    if shutil.which("perf") is None:
        sys.exit("bench_shutdown_execs: perf is not installed; install linux-perf")
    guests = args.guests or ["sysvinit", "bullseye"]
    unknown = [g for g in guests if g not in trees.MATRIX]
    if unknown:
        ap.error(f"unknown guest {unknown[0]!r}; choose from {', '.join(trees.MATRIX)}")
    tag = f"bs{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="nsdash-bench-shutdown-", dir="/var/tmp") as tmp, system_bus():
        try:
            for guest in guests:
                report(guest, measure(guest, max(1, args.runs), Path(tmp), tag))
        finally:
            clean_nspawn_leftovers(tag)
    return 0


def measure(guest: str, runs: int, tmp: Path, tag: str) -> dict[str, list[tuple[int | None, collections.Counter[str] | None, bool]]]:
    copies = {tool: copy_tree(trees.ensure(guest), tmp / f"{guest}-{tool}") for tool in bb.TOOLS}
    results: dict[str, list[tuple[int | None, collections.Counter[str] | None, bool]]] = {t: [] for t in bb.TOOLS}
    try:
        for i in range(runs):
            for tool in (bb.TOOLS if i % 2 == 0 else bb.TOOLS[::-1]):
                try:
                    results[tool].append(one_run(tool, copies[tool], f"{tag}-{'a' if tool == 'nsdash' else 'b'}",
                                                 tmp / "trace"))
                except bb.Failed as e:
                    print(f"  {guest} {tool} run {i}: {e}", file=sys.stderr)
    finally:
        for copy in copies.values():
            shutil.rmtree(copy, ignore_errors=True)
    return results


def report(guest: str, results: dict[str, list[tuple[int | None, collections.Counter[str] | None, bool]]]) -> None:
    print(f"{guest} ({trees.MATRIX[guest]}), load {os.getloadavg()[0]:.1f}:")
    per_tool: dict[str, collections.Counter[str]] = {}
    for tool, runs in results.items():
        mounts = [m for m, _, _ in runs if m is not None]
        clean = [c for _, c, survivors in runs if c is not None and not survivors]
        total: collections.Counter[str] = collections.Counter()
        for c in clean:
            total.update(c)
        per_tool[tool] = total
        execs = [sum(c.values()) for c in clean]
        print(f"  {tool:<15} mounts {statistics.median(mounts) if mounts else '-'}; processes from poweroff to "
              f"PID 1's exit {statistics.median(execs) if execs else '-'} (runs without survivors: {len(clean)} "
              f"of {len(runs)})")
    runs_of = {tool: max(1, sum(1 for _, c, s in results[tool] if c is not None and not s)) for tool in results}
    programs = sorted(set().union(*per_tool.values()))
    differ = [(p, per_tool["nsdash"][p] / runs_of["nsdash"], per_tool["systemd-nspawn"][p] / runs_of["systemd-nspawn"])
              for p in programs]
    differ = [(p, a, b) for p, a, b in differ if a != b]
    if differ:
        print("  per run, where they differ: " + ", ".join(f"{p} {a:g} against {b:g}" for p, a, b in differ))


if __name__ == "__main__":
    raise SystemExit(main())
