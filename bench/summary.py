#!/usr/bin/env python3
"""Every bench in one table: `make bench`.

Runs each bench with `--json` (its own output goes to stderr, shown as it
runs), collects the rows and prints one Markdown table: what was measured,
nsdash's figure, the peer and its figure, the ratio (median; for speeds,
higher is better and says so) with its spread, and the load average while
that row was measured.  The machine (CPUs, memory, kernel) and the load over
the whole run head the table.

With `--readme README.md` the table also replaces the text between the
`<!-- bench-summary:begin -->` and `<!-- bench-summary:end -->` lines of
the README's Performance section.

    .venv/bin/python bench/summary.py                      # the default sizes (several minutes)
    .venv/bin/python bench/summary.py --quick              # smaller sizes and fewer runs
    .venv/bin/python bench/summary.py --only verbs,cgtop   # some benches
    .venv/bin/python bench/summary.py --from results.json  # print a table from saved results
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PY = sys.executable
BEGIN, END = "<!-- bench-summary:begin -->", "<!-- bench-summary:end -->"

# name -> (arguments by default, arguments with --quick)
BENCHES: dict[str, tuple[list[str], list[str]]] = {
    "verbs": (["--runs", "15"], ["--runs", "7"]),
    "nested": (["--runs", "15"], ["--runs", "7"]),  # list/status against machinectl on a systemd host
    "spawn": (["--runs", "20", "--boots", "9"], ["--runs", "9", "--boots", "2"]),  # 9 boots: 3 let one stray boot set the median
    # empty cgroups, and with a sleeping process in each (no zero task count vouches for a subtree)
    "cgtop": (["--repeat", "3", "--procs-sizes", "500,5000"],
              ["--sizes", "500", "--repeat", "3", "--iterations", "42", "--procs-sizes", "500"]),
    "journal": (["--runs", "3"], ["--entries", "20000", "--runs", "3"]),
    "console": ([], ["4"]),
    # At rest twice: the machines (and the dashboard) in their first minute, when every machine row
    # changes each second, and settled, past it (--settle): both rows, labelled.
    # --count: then the same at rest under callgrind, instructions a refresh (no host's cache penalty in it).
    "dashboard": (["--terminal", "--rest-seconds", "52", "--settle", "70", "--count", "40"],
                  ["--cgroups", "500", "--machines", "50", "--rest-machines", "5", "--rest-seconds", "10",
                   "--settle", "62", "--first-runs", "5"]),
    # The poller at rest, counted (strace -c): system calls a snapshot with 20 machines; a count,
    # so the host's cache penalty after each 1 s asleep (bench/hoststate.py) is not in it.
    "poller_calls": (["--seconds", "30", "--runs", "2"], ["--machines", "5", "--seconds", "10", "--runs", "1"]),
    "rest_calls": ([], ["--refreshes", "10"]),  # the dashboard's UI a refresh at rest, in Python calls
    "flood_keys": (["--rounds", "4", "--keys", "25"], ["--rounds", "2", "--keys", "10"]),
    "seccomp": (["--runs", "20"], ["--runs", "9"]),
    "userns": (["--runs", "5"], ["--runs", "2"]),
    "remote": (["--runs", "15"], ["--runs", "7"]),
    "multihost": (["--window", "20", "--rounds", "2"], ["--window", "10", "--rounds", "1"]),
    "boot": (["--runs", "9"], []),  # bench_boot.py: the guest matrix, when it exists (9 pairs: at 5 a median swung 0.98-1.02 run to run)
}


def run_bench(name: str, args: list[str]) -> dict | None:
    script = BENCH / f"bench_{name}.py"
    if not script.exists():
        return None
    print(f"== {script.name} {' '.join(args)}", file=sys.stderr, flush=True)
    proc = subprocess.run([PY, str(script), *args, "--json"], stdout=subprocess.PIPE, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        print(f"   {script.name} failed (exit {proc.returncode}); its rows are missing", file=sys.stderr)
        return {"bench": name, "load": [], "rows": [], "failed": proc.returncode or 1}
    result: dict = json.loads(lines[-1])
    return result


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model or platform.machine()}), {mem:.0f} GiB, Linux {platform.release()}"


def _figure(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("ms", "%", "MiB", "MB/s") and value >= 100:
        return f"{value:,.0f} {unit}"
    return f"{value:.3g} {unit}" if value < 10 else f"{value:.1f} {unit}"


def table(results: list[dict]) -> str:
    loads = [x for r in results for x in r.get("load", [])]
    starts = [r["started"] for r in results if r.get("started")]
    when = datetime.datetime.fromtimestamp(min(starts), datetime.UTC) if starts else datetime.datetime.now(datetime.UTC)
    head = [f"Measured {when:%Y-%m-%d %H:%M} UTC on {machine()}; "
            f"load average {min(loads, default=0):.1f}-{max(loads, default=0):.1f} during the run.",
            "Ratios are nsdash / peer (speeds: nsdash's over the peer's, higher is better); "
            "medians, [min..max] over the runs or pairs.", "",
            "| bench | what | nsdash | peer | peer's figure | ratio | spread | load | note |",
            "|---|---|---|---|---|---|---|---|---|"]
    lines = []
    for r in results:
        if r.get("failed"):
            lines.append(f"| {r['bench']} | (failed, exit {r['failed']}) | | | | | | | |")
        for row in r["rows"]:
            ratio = row.get("ratio")
            spread = row.get("spread")
            ratio_text = "-" if ratio is None else f"{ratio:.2f}" + (" (higher is better)"
                                                                     if row.get("better") == "higher" else "")
            spread_text = "-" if not spread else f"{spread[0]:.2f}..{spread[1]:.2f}"
            lines.append(f"| {row['bench']} | {row['what']} | {_figure(row['nsdash'], row['unit'])} | "
                         f"{row['peer']} | {_figure(row['peer_value'], row['unit'])} | {ratio_text} | "
                         f"{spread_text} | {row['load']:.1f} | {row.get('note', '')} |")
    return "\n".join(head + lines) + "\n"


def write_readme(path: Path, text: str) -> None:
    readme = path.read_text()
    if BEGIN not in readme or END not in readme:
        raise SystemExit(f"{path} has no {BEGIN} ... {END} block to replace")
    before, rest = readme.split(BEGIN, 1)
    _, after = rest.split(END, 1)
    path.write_text(f"{before}{BEGIN}\n{text}{END}{after}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes and fewer runs")
    ap.add_argument("--only", help="comma-separated bench names (default: all)")
    ap.add_argument("--readme", type=Path, help="rewrite this README's summary block")
    ap.add_argument("--save", type=Path, help="also write the raw results (JSON) here")
    ap.add_argument("--from", dest="source", type=Path, help="print the table from saved results")
    args = ap.parse_args()
    if args.source:
        results = json.loads(args.source.read_text())
    else:
        names = args.only.split(",") if args.only else list(BENCHES)
        unknown = [n for n in names if n not in BENCHES]
        if unknown:
            raise SystemExit(f"unknown bench {unknown[0]}; one of {', '.join(BENCHES)}")
        results = []
        for name in names:
            found = run_bench(name, BENCHES[name][1 if args.quick else 0])
            if found is not None:
                results.append(found)
        if args.save:
            args.save.write_text(json.dumps(results, indent=1))
    text = table(results)
    sys.stdout.write(text)
    if args.readme:
        write_readme(args.readme, text)
    return 1 if any(r.get("failed") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
