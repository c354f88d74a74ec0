#!/usr/bin/env python3
"""`nsdash trace` side by side with plain strace on the same machine process (root).

A BusyBox machine runs a fork-and-open loop (`cat /etc/hostname` forever).
For SECONDS each, three rounds, alternating:
  - strace -f -y --decode-pids=pidns -p HOSTPID, its output counted by `wc -l`
    (what a user types by hand; host PIDs and all);
  - nsdash trace -M NAME 1, counted the same way (machine PIDs, escaped).
Prints lines per second of each (how fast the traced loop runs under each, the
tracer's cost on the tracee) and the CPU the tracer stack spent per line
(strace alone; nsdash's Python plus its strace), median and spread.

    sudo .venv/bin/python bench/bench_trace.py [SECONDS]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nsdash.demo import trees  # noqa: E402

PY = sys.executable
LOOP = "while :; do cat /etc/hostname >/dev/null; done"


def count_lines(argv: list[str], seconds: float) -> tuple[int, float]:
    """Run ARGV | wc -l for SECONDS, stop it with SIGINT; (lines, CPU seconds of ARGV's process tree)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    tracer = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO)
    wc = subprocess.Popen(["wc", "-l"], stdin=tracer.stdout, stdout=subprocess.PIPE, text=True)
    assert tracer.stdout is not None
    tracer.stdout.close()
    time.sleep(seconds)
    tracer.send_signal(signal.SIGINT)
    tracer.wait(30)
    out, _ = wc.communicate(timeout=30)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return int(out.strip()), cpu


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("seconds", nargs="?", type=float, default=5.0,
                    help="how long each tracer runs a round (default 5)")
    seconds = ap.parse_args(argv).seconds
    name = f"bench-trace-{os.getpid()}"
    tmp = Path(tempfile.mkdtemp(prefix="nsdash-bench-trace-"))
    tree = tmp / name
    subprocess.run(["cp", "-a", str(trees.ensure("busybox")), str(tree)], check=True)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([PY, "-m", "nsdash", "spawn", "--detach", "-M", name, "-D", str(tree), "/bin/sh", "-c",
                        LOOP], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        return 1
    try:
        from nsdash.inside.target import resolve

        leader = resolve(name).leader
        strace = shutil.which("strace") or "strace"
        plain = [strace, "-f", "-y", "--decode-pids=pidns", "-o", "/dev/stdout", "-p", str(leader)]
        ours = [PY, "-m", "nsdash", "trace", "-M", name, "1"]
        rates: dict[str, list[float]] = {"strace": [], "nsdash trace": []}
        cpu: dict[str, list[float]] = {"strace": [], "nsdash trace": []}
        for _ in range(3):
            for label, argv in (("strace", plain), ("nsdash trace", ours)):
                lines, used = count_lines(argv, seconds)
                rates[label].append(lines / seconds)
                cpu[label].append(used / max(lines, 1) * 1e6)  # the tracer stack's CPU, µs per line
        print(f"{seconds:g} s x 3 rounds, BusyBox machine, fork+open loop (median, min..max):")
        print(f"  {'':<14} {'lines/s':>9}  {'':<13} {'tracer CPU µs/line':>18}")
        for label in rates:
            r, c = rates[label], cpu[label]
            print(f"  {label:<14} {statistics.median(r):>9.0f}  ({min(r):.0f}..{max(r):.0f})".ljust(42)
                  + f"{statistics.median(c):>10.0f}  ({min(c):.0f}..{max(c):.0f})")
    finally:
        subprocess.run([PY, "-m", "nsdash", "terminate", name], env=env, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
