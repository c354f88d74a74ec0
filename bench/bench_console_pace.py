#!/usr/bin/env python3
"""What a guest's console writing costs its supervisor, counted (issue 16, ConsolePace).

A BusyBox machine (-x, ephemeral) runs one write pattern on /dev/console for --seconds; its
supervisor runs in a child of this script, from this checkout or --peer's, alternately.
Counted over the pattern's run: the looks that found bytes (each one log write and one frame
to every attacher), the bytes, and the supervisor's CPU (its main thread's
/proc/self/task/TID/schedstat, run time in ns); and, per look, the pattern's worst stretch:
the most looks more than ticks between any two looks (the bucket's bound is CONSOLE_BURST), and
what the first 64 looks read, in how long (the bucket's burst).

    .venv/bin/python bench/bench_console_pace.py --peer /work/wt/old --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Guest shell loops (BusyBox sh); each stops after the machine's --seconds.
PATTERNS = {
    "flood": "yes > /dev/console",
    "tiny-writes": "while :; do echo x; done > /dev/console",
    "paced-2ms": "while :; do echo x; usleep 2000; done > /dev/console",
    "bursts": ("while :; do i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); done; "
               "usleep 700000; done > /dev/console"),
}


def child(pattern: str, seconds: float, tree: str) -> None:
    """Run one machine with PATTERN under this process's nsdash; print the counts as JSON."""
    from nsdash.launcher.options import parse_spawn_args
    from nsdash.machines import supervisor as sup

    script = f"{PATTERNS[pattern]} & sleep {seconds}; kill $!; echo END > /dev/console"
    spec = parse_spawn_args(["-q", "-x", "-D", tree, "-M", f"pace{os.getpid()}", "/bin/sh", "-c", script])
    engine = sup.Supervisor(spec)
    looks: list[tuple[float, int]] = []
    tid = os.getpid()

    def cpu() -> int:
        with open(f"/proc/self/task/{tid}/schedstat") as f:
            return int(f.read().split()[0])

    start = [0, 0.0]

    def on_ready(_leader: int) -> None:
        log = engine.log
        assert log is not None
        write = log.write

        def counted(data: bytes) -> None:
            if b"-- nsdash: " not in data and engine.outcome is None:
                looks.append((time.monotonic(), len(data)))
            write(data)

        log.write = counted  # type: ignore[method-assign]
        start[:] = [cpu(), time.monotonic()]

    engine.on_ready = on_ready
    engine.run()
    used, took = cpu() - start[0], time.monotonic() - start[1]
    times = [t for t, _ in looks]
    tick = sup.CONSOLE_TICK
    worst = 0.0
    for i in range(len(times)):  # O(n^2) but n is at most a few thousand
        for j in range(i, len(times)):
            worst = max(worst, j - i - (times[j] - times[i]) / tick)
    first = looks[:sup.CONSOLE_BURST] if hasattr(sup, "CONSOLE_BURST") else looks[:64]
    print(json.dumps({"looks": len(looks), "bytes": sum(n for _, n in looks), "cpu_ms": used / 1e6,
                      "secs": took, "worst": worst, "first_kb": sum(n for _, n in first) / 1e3,
                      "first_ms": (first[-1][0] - first[0][0]) * 1e3 if first else 0.0}))


def run(checkout: Path, pattern: str, seconds: float, tree: str) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(checkout))
    out = subprocess.run([sys.executable, str(REPO / "bench" / "bench_console_pace.py"), "--child", pattern,
                          "--seconds", str(seconds), "--tree", tree],
                         env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer", type=Path, help="another checkout, run alternately")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--patterns", default=",".join(PATTERNS))
    ap.add_argument("--tree", help="a BusyBox tree (default: the cached one, used with -x)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.seconds, a.tree)
        return
    tree = a.tree or next(str(p) for p in Path("/var/cache/nsdash/trees").glob("busybox-*"))
    sides = [("this", REPO)] + ([("peer", a.peer)] if a.peer else [])
    with tempfile.TemporaryDirectory(prefix="nsdash-pace-") as state:
        os.environ["NSDASH_STATE_DIR"] = state
        for pattern in a.patterns.split(","):
            results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in sides}
            for _ in range(a.runs):
                for name, checkout in sides:
                    results[name].append(run(checkout, pattern, a.seconds, tree))
            for name, rs in results.items():
                rs.sort(key=lambda r: r["cpu_ms"])
                cells = "  ".join(f"looks/s {r['looks'] / r['secs']:6.0f} KB {r['bytes'] / 1e3:8.0f} "
                                  f"cpu {r['cpu_ms']:6.0f} ms worst {r['worst']:5.1f} "
                                  f"first 64: {r['first_kb']:5.0f} KB in {r['first_ms']:4.0f} ms" for r in rs)
                print(f"{pattern:12s} {name:5s} {cells}  load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
