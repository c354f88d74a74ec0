"""Where a spawn's time goes, nsdash against systemd-nspawn: the phases around the guest's PID 1.

Each run is watched through the kernel's scheduler tracepoints only (perf trace
--no-syscalls: sched_process_exec, _fork and _exit), so no system call of either
tool is slowed, and split in four:

  start       the tool's exec to the fork of the process that becomes PID 1
  set-up      that fork to PID 1's exec of the payload (nsdash: the child's mounts and
              sandbox; systemd-nspawn forks PID 1 early and sets up around it)
  exit        PID 1's exit to the tool's exit (the kernel's teardown of the machine's
              namespaces, then the tool's own: cgroups, state, its process)
  total       the tool's exec to its exit

for `spawn -D TREE /bin/true` on the BusyBox tree and, with --boot, for a boot of the
Debian tree to poweroff.target.  The tools alternate, each on its own copy of the tree;
--peer CHECKOUT adds another checkout's nsdash (e.g. /work/main) to the alternation.
Medians with the spread (min..max) and the machine's load; count rather than time on
a busy host (strace -c, tests/_calls.py).

Run as root: .venv/bin/python bench/bench_phases.py [--runs N] [--boot] [--peer CHECKOUT]
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_boot import nsdash_command, nspawn_env  # noqa: E402
from bench_spawn import clean_nspawn_leftovers, copy_tree, nsdash_env, system_bus  # noqa: E402
from report import need_root  # noqa: E402

from nsdash.demo import trees  # noqa: E402

EVENT = re.compile(r"\s*([\d.]+) \S+/(\d+) sched:sched_process_(exec|exit|fork)\((.*)")
PHASES = ("start", "set-up", "exit", "total")


def phases(trace: str, payload: str) -> dict[str, float]:
    """PHASES (ms) from perf trace's lines of one run: the first event is the tool's exec; PID 1 is
    the process that execs PAYLOAD (a path, or a name it ends with)."""
    events = [(float(m[1]), int(m[2]), m[3], m[4]) for m in map(EVENT.match, trace.splitlines()) if m]
    t0, tool = events[0][0], events[0][1]
    pexec = next((e for e in events if e[2] == "exec" and e[1] != tool and f'{payload}"' in e[3]), None)
    if pexec is None:
        raise ValueError(f"no exec of {payload} in the trace: the run failed, or the payload is named otherwise")
    pid1 = pexec[1]
    fork = next(e[0] for e in events if e[2] == "fork" and f"child_pid: {pid1} " in e[3])
    pexit = [e[0] for e in events if e[2] == "exit" and e[1] == pid1][-1]
    texit = [e[0] for e in events if e[2] == "exit" and e[1] == tool][-1]
    return dict(zip(PHASES, (fork - t0, pexec[0] - fork, texit - pexit, texit - t0), strict=True))


def traced(argv: list[str], env: dict[str, str], payload: str, out: Path) -> dict[str, float]:
    subprocess.run(["perf", "trace", "--no-syscalls", "-o", str(out), "-e",
                    "sched:sched_process_exec,sched:sched_process_fork,sched:sched_process_exit", "--", *argv],
                   env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                   check=True, timeout=120)
    return phases(out.read_text(), payload)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=9, help="runs per tool after a warm-up (default 9)")
    ap.add_argument("--boot", action="store_true", help="also boot the Debian tree to poweroff.target")
    ap.add_argument("--peer", type=Path, metavar="CHECKOUT", help="another checkout's nsdash in the alternation")
    args = ap.parse_args()
    need_root("bench_phases", "it starts machines")
    if shutil.which("perf") is None:
        sys.exit("bench_phases: perf is not installed; install linux-perf")
    tools = {"nsdash": (nsdash_command(), {**nsdash_env(), "PYTHONPATH": str(ROOT)})}
    if args.peer:
        tools[f"nsdash {args.peer}"] = (nsdash_command(), {**nsdash_env(), "PYTHONPATH": str(args.peer.resolve())})
    tools["systemd-nspawn"] = (["systemd-nspawn", "-q", "--keep-unit", "--register=no"], nspawn_env())
    cases = [("spawn -D busybox /bin/true", "busybox", ["/bin/true"], "/bin/true")]
    if args.boot:
        cases.append(("boot -D debian to poweroff.target", "debian", ["-b", "systemd.unit=poweroff.target"],
                      "/systemd"))
    for checkout in (ROOT, *([args.peer.resolve()] if args.peer else [])):
        compileall.compile_dir(str(checkout / "nsdash"), quiet=1)  # as an installed wheel has it
    tag = f"bench{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="nsdash-bench-", dir="/var/tmp") as tmp, system_bus():
        try:
            for label, tree, extra, payload in cases:
                copies = {tool: copy_tree(trees.ensure(tree), Path(tmp) / f"{tree}-{i}") for i, tool in enumerate(tools)}
                runs: dict[str, list[dict[str, float]]] = {tool: [] for tool in tools}
                for i in range(1 + args.runs):
                    for n, tool in enumerate(list(tools) if i % 2 == 0 else list(tools)[::-1]):
                        command, env = tools[tool]
                        verb = [] if tool == "systemd-nspawn" else ["spawn", "-q"]
                        argv = [*command, *verb, "-M", f"{tag}-{n}", "-D", str(copies[tool]), *extra]
                        split = traced(argv, env, payload, Path(tmp) / "trace")
                        if i:
                            runs[tool].append(split)
                print(f"{label}: ms, median [min..max] of {args.runs}; load {os.getloadavg()[0]:.1f}")
                for tool, splits in runs.items():
                    print(f"  {tool:<24}" + "  ".join(
                        f"{p} {statistics.median(s[p] for s in splits):6.1f} "
                        f"[{min(s[p] for s in splits):.1f}..{max(s[p] for s in splits):.1f}]" for p in PHASES))
        finally:
            clean_nspawn_leftovers(tag)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
