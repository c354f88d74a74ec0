#!/usr/bin/env python3
"""The read-only verbs against their C peers, as a user runs them: whole processes, side by side.

Each pair runs alternately (A B B A ...) after a warm-up run, so the
machine's drift hits both; the ratio is taken pair by pair and its median
reported with its spread.  Wall time is what a user waits for; CPU time
(user + system of the finished child, from wait4) is printed beside it and
is the steadier figure on a busy machine.

  cgls                      nsdash cgls                          systemd-cgls
  cgtop                     nsdash cgtop -b -n 1                 systemd-cgtop -b -n 1
  list, status              nsdash list / status M               python -c pass (the floor: no
                                                                 machined on a host without systemd;
                                                                 bench_nested.py compares them with
                                                                 machinectl on a booted systemd host)
  journal                   nsdash journal -M M -n 20            journalctl -D (its journal) -n 20
  journal --list-boots      nsdash journal -M M --list-boots     journalctl -D (its journal) --list-boots
  ps -M M                   nsdash ps -M M                       ps -o pid,user,time,args -p (M's PIDs):
                                                                 the same rows; ps is handed the PIDs
                                                                 (read once from M's cgroup) where nsdash
                                                                 finds them itself, so the ratio leans
                                                                 to the peer (machinectl status's
                                                                 process tree needs machined)
  systemctl list-units      nsdash systemctl -M M list-units     systemctl list-units, run inside M
  systemctl status          nsdash systemctl -M M status U       systemctl status U, run inside M

The machine M is the Debian demo tree booted ephemeral (-x) for the run and
powered off at the end; "run inside" is nsenter into all its namespaces.
nsdash runs with its bytecode compiled (`make bytecode`), through this checkout's bin/nsdash as
`make venv` installs it.

Run as root: .venv/bin/python bench/bench_verbs.py [--runs N] [--only LABEL] [--json]
(--only journal: just the pairs whose label starts with LABEL; the machine is booted only if one needs it)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from report import Report, compile_checkout, installed_launcher, need_root, wants_json  # noqa: E402
from stopping import shielded  # noqa: E402

from nsdash.demo import trees  # noqa: E402

PYTHON = Path(sys.executable)
NSDASH = [str(PYTHON), "-c", "import sys; from nsdash.cli import run; sys.exit(run())"]


def nsdash_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("NSDASH_DEBUG", None)
    env["PYTHONPATH"] = str(ROOT)
    env.pop("COLUMNS", None)
    return env


def nsdash_cmd() -> list[str]:
    """The installed `nsdash` script if it runs this tree's package, else the same through -c."""
    script = PYTHON.parent / "nsdash"
    return [str(script)] if script.exists() else NSDASH


def run_once(argv: list[str], env: dict[str, str] | None) -> tuple[float, float]:
    """(wall, cpu) seconds of one whole process; output thrown away."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_utime + usage.ru_stime


def pair(label: str, ours: list[str], peer_name: str, theirs: list[str], runs: int,
         report: Report) -> None:
    env = nsdash_env()
    walls: dict[str, list[float]] = {"a": [], "b": []}
    cpus: dict[str, list[float]] = {"a": [], "b": []}
    for i in range(runs + 1):
        order = (("a", ours, env), ("b", theirs, None))
        for key, argv, e in (order if i % 2 == 0 else order[::-1]):
            wall, cpu = run_once(argv, e)
            if i:
                walls[key].append(wall)
                cpus[key].append(cpu)
    report.pair(label, peer_name, (walls["a"], walls["b"]), (cpus["a"], cpus["b"]))


def run_nsdash(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*nsdash_cmd(), *args], env=nsdash_env(), capture_output=True, text=True,
                          timeout=timeout)


def stop(name: str) -> None:
    """Power machine NAME off, and terminate it if it will not go: a bench leaves no machine."""
    if run_nsdash("poweroff", name, timeout=60).returncode != 0:
        run_nsdash("terminate", name, timeout=30)


def boot(name: str) -> int:
    """Boot the Debian demo tree ephemeral as NAME; its leader's PID once systemd says running."""
    tree = trees.ensure("debian")
    r = run_nsdash("spawn", "--detach", "-x", "-bD", str(tree), "-M", name)
    if r.returncode != 0:
        raise SystemExit(f"cannot boot the Debian demo tree: {r.stderr.strip()}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = run_nsdash("systemctl", "-M", name, "is-active", "multi-user.target", timeout=15)
        if r.stdout.strip() == "active":
            break
        time.sleep(0.5)
    else:
        raise SystemExit(f"machine {name} did not reach multi-user.target in 60 s")
    from nsdash.inside.target import resolve

    return resolve(name).leader


def machine_pids(name: str) -> list[int]:
    """The PIDs in machine NAME's cgroup and below it, as `nsdash ps -M NAME` finds them."""
    from nsdash.machines import registry
    from nsdash.monitor import tree
    from nsdash.system import cgroupfs

    state = registry.lookup(name, details=False).state
    if state is None or not state.cgroup:
        raise SystemExit(f"machine {name} has no cgroup recorded")
    top = tree.primary_mount(cgroupfs.detect()) + state.cgroup
    return sorted(pid for sub in cgroupfs.subtree(top) for pid in tree.read_pids(sub))


def machine_pairs(ours: list[str], run_pair, runs: int, report: Report) -> None:
    """The pairs that need a booted machine (M): booted here, powered off after."""
    name = f"benchverbs{os.getpid()}"
    try:
        leader = boot(name)
        inside = ["nsenter", "-t", str(leader), "-a"]
        floor = [str(PYTHON), "-c", "pass"]
        run_pair("list", [*ours, "list"], "python -c pass", floor, runs, report)
        run_pair("status M", [*ours, "status", name], "python -c pass", floor, runs, report)
        journal = f"/proc/{leader}/root/var/log/journal"
        run_pair("journal -M M -n 20", [*ours, "journal", "-M", name, "-n", "20"], "journalctl -D",
                 ["journalctl", "-D", journal, "-n", "20", "--no-pager"], runs, report)
        run_pair("journal --list-boots", [*ours, "journal", "-M", name, "--list-boots"], "journalctl -D",
                 ["journalctl", "-D", journal, "--list-boots", "--no-pager"], runs, report)
        pids = machine_pids(name)
        run_pair("ps -M M", [*ours, "ps", "-M", name], "ps -p (its PIDs)",
                 ["ps", "-o", "pid,user,time,args", "-p", ",".join(map(str, pids))], runs, report)
        run_pair("systemctl list-units", [*ours, "systemctl", "-M", name, "list-units"], "systemctl inside",
                 [*inside, "systemctl", "list-units", "--no-pager"], runs, report)
        run_pair("systemctl status dbus", [*ours, "systemctl", "-M", name, "status", "dbus.service"],
                 "systemctl inside", [*inside, "systemctl", "status", "dbus.service", "--no-pager"],
                 runs, report)
    finally:
        with shielded():  # (bench/stopping.py: a second Ctrl-C or kill waits for this)
            stop(name)


def main() -> int:
    as_json = wants_json()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15, help="pairs per verb (default 15)")
    ap.add_argument("--only", metavar="LABEL", action="append",
                    help="only the pairs whose label starts with LABEL (repeatable), e.g. journal, cgls")
    args = ap.parse_args()
    wanted = tuple(args.only or ())

    def run_pair(label: str, *rest) -> None:
        if not wanted or label.startswith(wanted):
            pair(label, *rest)

    need_root("bench_verbs", "it starts machines")
    report = Report("verbs", as_json)
    with report.capture(), tempfile.TemporaryDirectory(prefix="nsdash-bench-launcher-") as tmp:
        compile_checkout(ROOT)
        ours = [installed_launcher(ROOT, Path(tmp, "bin"))]  # this checkout's, as `make venv` installs it
        print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs; {args.runs} pairs each, "
              "medians [min..max]; [spread of the pair ratios]")
        run_pair("python -c pass (floor)", [str(PYTHON), "-c", "pass"], "/bin/true", ["/bin/true"],
                 args.runs, report)
        run_pair("cgls", [*ours, "cgls"], "systemd-cgls", ["systemd-cgls", "--no-pager"], args.runs, report)
        run_pair("cgtop -b -n 1", [*ours, "cgtop", "-b", "-n", "1"], "systemd-cgtop",
                 ["systemd-cgtop", "-b", "-n", "1"], args.runs, report)
        machine_labels = ("list", "status M", "journal -M M -n 20", "journal --list-boots", "ps -M M",
                          "systemctl list-units", "systemctl status dbus")
        if not wanted or any(label.startswith(wanted) for label in machine_labels):
            machine_pairs(ours, run_pair, args.runs, report)
    report.done()
    return 0


if __name__ == "__main__":
    sys.exit(main())
