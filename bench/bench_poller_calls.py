#!/usr/bin/env python3
"""System calls a second of the dashboard's poller at rest (issue 16), counted, not timed.

K real BusyBox machines (default 20) are booted; then, for this checkout and
(--peer) another side by side, a child makes the dashboard's HostReaders and takes
a snapshot every second, as the poller does at rest, under `strace -c -f` for
S seconds (default 30).  Both count at the same time: what other processes do to
the host (cgroups made, processes started) moves a count, not the load; after each
1 s sleep every call is a cache-cold one (rest24: 1.15 ms a snapshot back to back,
11.4 ms after a sleep), so fewer calls is what makes the poller cheaper at rest.

    .venv/bin/python bench/bench_poller_calls.py --peer /work/main --seconds 30 --runs 2
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_dashboard import start_machines, stop_machines  # noqa: E402
from report import Report, need_root, wants_json  # noqa: E402

# Run in /: `-c` puts the working directory on the path before PYTHONPATH (a checkout's own code).
CHILD = """
import sys, time
from nsdash.tui.host_readers import HostReaders
r = HostReaders()
r.snapshot()
print("ready", flush=True)
sys.stdin.readline()  # the parent attached strace
end = time.monotonic() + float(sys.argv[1])
n = 0
while time.monotonic() < end:
    r.snapshot()
    n += 1
    time.sleep(1.0)
r.close()
print(n, flush=True)
"""


def count(codes: list[Path], seconds: float, log: str | None = None) -> list[tuple[int, dict[str, int]]]:
    """For each checkout in CODES, at the same time (the same host, the same changes in it):
    snapshots taken (a second apart) and its system calls by name over SECONDS (strace -c);
    LOG: one checkout's every call written there with its paths instead (strace -yy), not counted."""
    children = [subprocess.Popen([sys.executable, "-S", "-c", CHILD, str(seconds)], text=True, cwd="/",
                                 env=dict(os.environ, PYTHONPATH=str(code)),
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE) for code in codes]
    with contextlib.ExitStack() as files:
        outs = [files.enter_context(tempfile.NamedTemporaryFile("r", suffix=".strace")) for _ in codes]
        traces = []
        for child, out in zip(children, outs, strict=True):
            assert child.stdout is not None
            child.stdout.readline()
            how = ["-yy", "-o", log] if log else ["-c", "-o", out.name]
            traces.append(subprocess.Popen(["strace", "-f", *how, "-p", str(child.pid)], stderr=subprocess.DEVNULL))
        time.sleep(1.0)  # strace attached
        for child in children:
            assert child.stdin is not None
            child.stdin.write("\n")
            child.stdin.flush()
        taken = []
        for child, trace in zip(children, traces, strict=True):
            assert child.stdout is not None
            taken.append(int(child.stdout.readline()))
            child.wait()
            trace.wait()
        return [(n, _parse(out.read())) for n, out in zip(taken, outs, strict=True)]


def _parse(text: str) -> dict[str, int]:
    calls: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0].replace(".", "").isdigit() and parts[-1] != "total":
            calls[parts[-1]] = int(parts[3])
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--machines", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=2, help="runs (both checkouts at once each time)")
    parser.add_argument("--log", metavar="FILE", help="also trace this checkout's poller for --seconds, every call "
                        "with its paths written to FILE (where the calls go)")
    parser.add_argument("--peer", metavar="CHECKOUT", help="also count another checkout's poller (e.g. main)")
    args = parser.parse_args([a for a in sys.argv[1:] if a != "--json"])
    need_root("bench_poller_calls", "it boots machines and traces the poller")
    report = Report("poller_calls", wants_json())
    sides = [("this", REPO)] + ([("peer", Path(args.peer))] if args.peer else [])
    names: list[str] = []
    with report.capture():
        try:
            start_machines(args.machines, names)
            time.sleep(3.0)  # the machines' boots settle
            per: dict[str, list[float]] = {s: [] for s, _ in sides}
            last: dict[str, dict[str, int]] = {}
            for _ in range(args.runs):
                for (side, _), (snapshots, calls) in zip(sides, count([c for _, c in sides], args.seconds), strict=True):
                    per[side].append(sum(calls.values()) / snapshots)
                    last[side] = {k: round(v / snapshots, 1) for k, v in calls.items()}
            if args.log:
                count([REPO], args.seconds, args.log)
            for side, _ in sides:
                top = sorted(last[side].items(), key=lambda kv: -kv[1])[:12]
                print(f"{side}: system calls a snapshot {statistics.median(per[side]):.0f} "
                      f"(runs {', '.join(f'{v:.0f}' for v in per[side])}); most: "
                      + ", ".join(f"{k} {v:g}" for k, v in top))
            ours = statistics.median(per["this"])
            peer = statistics.median(per["peer"]) if args.peer else None
            report.row(f"poller at rest, {len(names)} machines, system calls a second", ours,
                       "main" if args.peer else "-", peer, "calls",
                       spread=(min(per["this"]), max(per["this"])))
        finally:
            stop_machines(names)
    report.done()


if __name__ == "__main__":
    main()
