#!/usr/bin/env python3
"""CPU time per refresh: `nsdash cgtop -b` against `systemd-cgtop -b`, on N real cgroups.

Creates N cgroups (in cgroup2 and in every v1 hierarchy with counters: cpu,
cpuacct, memory, pids, blkio), each with its counters to read, optionally a
sleeping process in each (--procs).  Runs each tool with `-b -d 0.1 -n K` for
a large K and for K=2; per-refresh cost = (cpu(K) - cpu(2)) / (K - 2), so the
start-up cost cancels out.  CPU time is the child's user+system time from
wait4().  Removes everything it made, on every path.

    .venv/bin/python bench/bench_cgtop.py            # N = 500 and 5000
    .venv/bin/python bench/bench_cgtop.py --sizes 500 --iterations 40
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

sys.path.insert(0, str(REPO / "bench"))

from report import Report, need_root, wants_json  # noqa: E402

from nsdash.system import cgroupfs  # noqa: E402

COUNTED = ("cpu", "cpuacct", "memory", "pids", "blkio")


def hierarchies() -> list[Path]:
    layout = cgroupfs.detect()
    found = [layout.unified] if layout.unified else []
    for ctrl in COUNTED:
        p = layout.v1.get(ctrl)
        if p is not None and p.resolve() not in [f.resolve() for f in found]:
            found.append(p)
    return [p for p in found if p is not None]


def make_tree(top: str, n: int, procs: bool) -> list[int]:
    dirs = hierarchies()
    for h in dirs:
        (h / top).mkdir()
        for i in range(n):
            (h / top / f"g{i}").mkdir()
    pids: list[int] = []
    if procs:
        for i in range(n):
            pid = os.fork()
            if pid == 0:
                try:
                    for h in dirs:
                        with open(h / top / f"g{i}" / "cgroup.procs", "w") as f:
                            f.write("0")
                    signal.pause()
                finally:
                    os._exit(0)
            pids.append(pid)
    return pids


def remove_tree(top: str, n: int, pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    for h in hierarchies():
        base = h / top
        if not base.exists():
            continue
        for i in range(n):
            d = base / f"g{i}"
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
        base.rmdir()


def cpu_of(argv: list[str]) -> float:
    """User+system CPU seconds of one run of ARGV (output discarded)."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed with {proc.returncode}")
    return usage.ru_utime + usage.ru_stime


def per_refresh(argv: list[str], many: int, repeat: int) -> list[float]:
    """Seconds of CPU per refresh, REPEAT times: (cpu(many) - cpu(2)) / (many - 2); callers take the best."""
    found = []
    for _ in range(repeat):
        long = cpu_of([*argv, "-n", str(many)])
        short = cpu_of([*argv, "-n", "2"])
        found.append((long - short) / (many - 2))
    return found


def main() -> int:
    report = Report("cgtop", wants_json())
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="500,5000")
    ap.add_argument("--iterations", type=int, default=0, help="K for the long run (default: by size)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--procs", action="store_true", help="a sleeping process in every cgroup")
    ap.add_argument("--procs-sizes", default="",
                    help="sizes to run again with a sleeping process in every cgroup (rows of their own): "
                         "no cgroup then reads 0 tasks, so none vouches for an empty subtree")
    args = ap.parse_args()
    need_root("bench_cgtop", "it creates cgroups")
    nsdash = [sys.executable, "-m", "nsdash", "cgtop", "-b", "-d", "0.1"]
    systemd = ["systemd-cgtop", "-b", "-d", "0.1"]
    results = {}
    with report.capture():
        runs = [(int(s), args.procs) for s in args.sizes.split(",")]
        runs += [(int(s), True) for s in args.procs_sizes.split(",") if s and not args.procs]
        for n, procs in runs:
            top = f"nsbench-{os.getpid()}"
            many = args.iterations or (102 if n <= 1000 else 62)  # long runs span rewalks
            pids = make_tree(top, n, procs)
            try:
                time.sleep(0.2)
                sds = per_refresh(systemd, many, args.repeat)
                nss = per_refresh(nsdash, many, args.repeat)
            finally:
                remove_tree(top, n, pids)
            ns, sd = min(nss), min(sds)
            if not procs or args.procs:
                results[n] = (ns, sd)
            each = ", a sleeping process in each" if procs else ""
            print(f"N={n:5d}{each}  nsdash {ns * 1000:7.2f} ms/refresh   systemd-cgtop {sd * 1000:7.2f} ms/refresh"
                  f"   ratio {ns / sd:.3f}", flush=True)
            ratios = [a / b for a, b in zip(nss, sds, strict=True)]
            report.row(f"cgtop CPU per refresh, {n} cgroups{each}", ns * 1000, "systemd-cgtop", sd * 1000, "ms",
                       ratio=ns / sd, spread=(min(ratios), max(ratios)), note=f"best of {args.repeat}")
        sizes = sorted(results)
        if len(sizes) >= 2:
            a, b = sizes[0], sizes[-1]
            for name, idx in (("nsdash", 0), ("systemd-cgtop", 1)):
                growth = results[b][idx] / results[a][idx]
                print(f"{name}: cost x{growth:.1f} from N={a} to N={b} (N x{b / a:.0f})")
    report.done()
    return 0


if __name__ == "__main__":
    sys.exit(main())
