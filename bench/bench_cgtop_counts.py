#!/usr/bin/env python3
"""What one `nsdash cgtop -b` refresh costs in counts, not time: instructions, system calls, Python calls.

bench_cgtop.py times the CPU of a refresh against systemd-cgtop; with other work on the
machine its figures move by more than the changes being judged.  Counts hardly move with
load, so two checkouts can be compared at any load.  For each checkout (this one, and
--peer DIR, e.g. /work/main as the base), on N real cgroups (bench_cgtop's tree, in every
counting hierarchy), the per-refresh figure is the difference of a run of K refreshes and a
run of 2, divided by K - 2:

  - instructions: callgrind's Ir (user space only: the kernel's work is not counted);
  - system calls: `strace -c -f`, all and by name (pread64, openat, ...);
  - Python calls: function calls a profile hook sees, Python's own and into C.

The runs show START (the bench's tree) and never walk the hierarchies again on time: a walk
comes every 5 s, so a run slowed by callgrind would walk more than the other.  Walks are
bench_cgtop's business (its runs span them).

Run as root: .venv/bin/python bench/bench_cgtop_counts.py [--size 5000] [--peer DIR]
(valgrind and strace must be installed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from bench_cgtop import make_tree, remove_tree  # noqa: E402
from report import need_root  # noqa: E402

# `nsdash cgtop -b -d 0.01 -n K START` in-process, its Sampler never walking again on time.
RUN = """import sys
from nsdash.cli import cgtop
made = cgtop.Sampler
cgtop.Sampler = lambda *a, **k: made(*a, **{**k, "rewalk_interval": 1e9})
calls = {"call": 0, "c_call": 0}
def count(frame, event, arg):
    if event in calls:
        calls[event] += 1
if sys.argv[1] == "calls":
    sys.setprofile(count)
cgtop.main(["-b", "-d", "0.01", "-n", sys.argv[2], sys.argv[3]])
sys.setprofile(None)
if sys.argv[1] == "calls":
    print(calls["call"], calls["c_call"], file=sys.stderr)
"""


def _run(repo: Path, argv: list[str], what: str, k: int, start: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(repo))
    out = subprocess.run([*argv, sys.executable, "-c", RUN, what, str(k), start], env=env, cwd="/",  # not a checkout:
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=900)  # it would come first
    if out.returncode != 0:
        raise SystemExit(f"bench_cgtop_counts: {what} run failed: {out.stderr[-400:]}")
    return out.stderr


def instructions(repo: Path, k: int, start: str) -> int:
    err = _run(repo, ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"], "plain", k, start)
    return int(next(line for line in err.splitlines() if "Collected :" in line).rsplit(":", 1)[1])


def syscalls(repo: Path, k: int, start: str) -> dict[str, int]:
    with tempfile.NamedTemporaryFile("r", prefix="cgtop-strace-") as f:
        _run(repo, ["strace", "-c", "-f", "-o", f.name], "plain", k, start)
        counts: dict[str, int] = {}
        for line in f.read().splitlines():
            words = line.split()
            # % time, seconds, usecs/call, calls, [errors,] name (the last line's name: total)
            if len(words) >= 5 and words[-1].isidentifier() and words[3].isdigit():
                counts[words[-1]] = int(words[3])
        return counts


def python_calls(repo: Path, k: int, start: str) -> tuple[int, int]:
    python, into_c = _run(repo, [], "calls", k, start).split()[-2:]
    return int(python), int(into_c)


def per_refresh(measure, repo: Path, k: int, start: str):
    """(MEASURE of K refreshes - MEASURE of 2) / (K - 2), for a number or a dict or tuple of them."""
    long, short = measure(repo, k, start), measure(repo, 2, start)
    if isinstance(long, dict):
        return {name: (long[name] - short.get(name, 0)) / (k - 2) for name in long}
    if isinstance(long, tuple):
        return tuple((a - b) / (k - 2) for a, b in zip(long, short, strict=True))
    return (long - short) / (k - 2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=5000, help="cgroups to make (default 5000)")
    ap.add_argument("--refreshes", type=int, default=12, help="K, the long run's refreshes (default 12)")
    ap.add_argument("--peer", type=Path, action="append", default=[], help="another checkout to count")
    args = ap.parse_args()
    need_root("bench_cgtop_counts", "it creates cgroups")
    for tool in ("valgrind", "strace"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench_cgtop_counts needs {tool} (apt-get install {tool})")
    repos = [REPO, *args.peer]
    top = f"nsbench-counts-{os.getpid()}"
    make_tree(top, args.size, False)
    try:
        time.sleep(0.2)
        start = "/" + top
        print(f"nsdash cgtop -b, per refresh on {args.size} cgroups ({args.refreshes} against 2 refreshes)")
        for repo in repos:
            ir = per_refresh(instructions, repo, args.refreshes, start)
            sc = per_refresh(syscalls, repo, args.refreshes, start)
            py, c = per_refresh(python_calls, repo, args.refreshes, start)
            busiest = sorted(((v, n) for n, v in sc.items() if n != "total" and v >= 0.5), reverse=True)[:4]
            top_calls = ", ".join(f"{n} {v:.0f}" for v, n in busiest)
            print(f"{str(repo):30s} instructions {ir / 1e6:7.1f} M   system calls {sc.get('total', 0):7.0f} "
                  f"({top_calls})   Python calls {py:7.0f} + into C {c:7.0f}", flush=True)
    finally:
        remove_tree(top, args.size, [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
