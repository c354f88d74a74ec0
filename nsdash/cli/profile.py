"""`nsdash profile -M NAME [UNIT] [-d SECONDS] [--flame FILE.svg]`: where a machine spends its CPU time.

perf samples every CPU for SECONDS but only the machine's cgroup; the top
lists show the hottest functions (self time, symbols from the machine's own
binaries and libraries) and processes.
"""

from __future__ import annotations

import argparse
import sys

from nsdash.cli.args import ArgumentParser, output_file
from nsdash.errors import UsageError


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="nsdash profile", description="Sample a machine's CPU use with perf, from the host, "
                "and list its hottest functions and processes.")
    p.add_argument("-M", "--machine", required=True, metavar="NAME", help="the machine")
    p.add_argument("-d", "--duration", type=float, default=5.0, metavar="SECONDS",
                   help="how long to sample (default 5)")
    p.add_argument("-F", "--frequency", type=int, default=99, metavar="HZ",
                   help="samples per second and CPU (default 99)")
    p.add_argument("-n", "--lines", type=int, default=15, metavar="N", help="rows in each top list (default 15)")
    p.add_argument("--flame", metavar="FILE.svg", help="also write a flame graph there")
    p.add_argument("--perf-path", metavar="PATH", help="the host's perf to run (default: perf on PATH)")
    p.add_argument("unit", nargs="?", metavar="UNIT", help="sample only this unit of the machine (its cgroup)")
    return p


def main(argv: list[str]) -> int:
    ns = build_parser().parse_args(argv)
    if not 0 < ns.duration <= 3600:
        raise UsageError(f"--duration {ns.duration:g} is out of range", "give 0 < SECONDS <= 3600")
    if not 1 <= ns.frequency <= 10000 or ns.lines < 1:
        raise UsageError("--frequency must be 1..10000 and --lines at least 1")
    if ns.flame:
        output_file(ns.flame, "--flame")
    from nsdash.inside.debugging.perf import Profiler, flame_svg, render_top
    from nsdash.inside.debugging.pids import MachineProcesses
    from nsdash.inside.debugging.tools import interrupt_on_hangup
    from nsdash.inside.target import resolve

    profiler = Profiler(MachineProcesses(resolve(ns.machine)), ns.perf_path, ns.frequency, ns.unit)
    if profiler.note:
        sys.stderr.write(f"nsdash: {profiler.note}\n")
    sys.stderr.write(f"nsdash: sampling machine '{ns.machine}' ({profiler.cgroup}) for {ns.duration:g} s "
                     "(Ctrl-C ends it early)\n")
    sys.stderr.flush()
    interrupt_on_hangup()  # over -H the far side hangs up on us: perf must stop then too
    profile = profiler.record(ns.duration)  # Ctrl-C ends it early, with what was sampled
    sys.stdout.write(render_top(profile, ns.lines))
    if ns.flame:
        svg = flame_svg(profile, f"machine {ns.machine}: {profile.event}, {ns.duration:g} s")
        with open(ns.flame, "w") as f:
            f.write(svg)
        sys.stderr.write(f"nsdash: flame graph written to {ns.flame}\n")
    return 0
