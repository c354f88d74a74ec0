#!/usr/bin/env python3
"""The dashboard's UI work a refresh at rest, counted in Python calls (issue 16): no machines,
no timing, the same figure every run.

The real app over the sample data (nsdash.tui.sample_data) with 20 idle machines, the first
one selected: the same snapshot each refresh (the floor: nothing shown changes); four of them
trading places at 0.0/0.1 %CPU each refresh (the selected machine's row among them); and that
with a cgroup coming or going each refresh (a transient unit, another tool's container: what
a busy host does).  Counted: every Python function call
the app's thread makes from the snapshot posted to its frame written, over --refreshes
refreshes.  With --peer the other checkout's app is counted the same way (a child each).

    .venv/bin/python bench/bench_rest_calls.py --peer /work/main
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from report import Report, wants_json  # noqa: E402

CASES = {"still": "nothing shown changing", "trading": "idle machines trading places",
         "churn": "and a cgroup coming or going"}


async def counted(refreshes: int, case: str) -> float:
    """Python calls a refresh of the app (this process's nsdash) over REFRESHES refreshes of CASE."""
    from nsdash.monitor.counters import Counters
    from nsdash.monitor.display import Row
    from nsdash.tui import sample_data as sd
    from nsdash.tui.app import NsdashApp
    from nsdash.tui.messages import MachineInfo, SnapshotReady

    def scope(i: int) -> str:
        return f"/machine.slice/machine-idle\\x2d{i:02d}.scope"

    def rows(step: int) -> tuple[Row, ...]:
        step = 0 if case == "still" else step
        idle = tuple(Row(scope(i), 4, (0.0, 0.1)[(i + step) % 2] if i < 4 else 0.0, None, 720_000 + 4096 * i,
                         0.0, 0.0, Counters()) for i in range(20))
        coming = (Row(f"/transient-{step // 2}.service", 1, 0.0, None, 4096, 0.0, 0.0, Counters()),)
        return (*sd.ROWS, *idle, *(coming if case == "churn" and step % 2 else ()))

    machines = tuple(MachineInfo(f"idle-{i:02d}", "running", "busybox 1", "-", sd.T0 - 100, scope(i), 100 + i)
                     for i in range(20))
    calls = 0

    def count(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    app = NsdashApp(poll=False, clock=lambda: sd.T0)
    async with app.run_test(size=(160, 48)) as pilot:
        for step in range(4):  # the table and its caches filled, every row seen at both places
            app.post_message(SnapshotReady(sd.snapshot(5)._replace(machines=machines, rows=rows(step))))
            await pilot.pause()
            await pilot.pause()
        app.selected = "idle-00"
        await pilot.pause()
        await pilot.pause()
        for step in range(4, 4 + refreshes):
            sys.setprofile(count)
            app.post_message(SnapshotReady(sd.snapshot(5)._replace(machines=machines, rows=rows(step))))
            await pilot.pause()
            await pilot.pause()
            sys.setprofile(None)
    return calls / refreshes


def child(checkout: Path, refreshes: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", "--refreshes", str(refreshes)], cwd="/",
                         env=dict(os.environ, PYTHONPATH=str(checkout)), capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(out.stdout.splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--refreshes", type=int, default=20)
    ap.add_argument("--peer", type=Path, metavar="CHECKOUT", help="also count another checkout's app (e.g. main)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args([a for a in sys.argv[1:] if a != "--json"])
    if args.child:
        print(json.dumps({case: asyncio.run(counted(args.refreshes, case)) for case in CASES}))
        return
    report = Report("rest_calls", wants_json())
    with report.capture():
        ours = child(REPO, args.refreshes)
        theirs = child(args.peer, args.refreshes) if args.peer else None
        for case, what in CASES.items():
            peer = f", {args.peer}: {theirs[case]:.0f}" if theirs else ""
            print(f"at rest, 20 idle machines ({what}): {ours[case]:.0f} Python calls a refresh{peer}")
            report.row(f"dashboard UI at rest, 20 idle machines, {what}: Python calls a refresh (sample data)",
                       ours[case], str(args.peer) if theirs else "-", theirs[case] if theirs else None, "calls",
                       note=f"{args.refreshes} refreshes; counted, not timed")
    report.done()


if __name__ == "__main__":
    main()
