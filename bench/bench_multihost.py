#!/usr/bin/env python3
"""What the dashboard over remote hosts (`nsdash -H A -H B`) costs at rest, per host.

Two far hosts (the "sshd" tree booted with -n, nsdash.demo.farhost, as
tests/tui/test_tui_multihost.py makes them), a BusyBox machine in each.  The
dashboard's readers over them (nsdash.tui.remote: one HostWatch thread and
ssh session per host, `list -o json` every second) run for a window, and
the same length of window passes with nothing watching: alternated (idle,
watched, watched, idle ...), so drifting load hits both alike.  Measured:
- this side: the process's CPU (the watch threads) plus its ssh clients';
- the far side: the far hosts' own cgroups' CPU (cpu.stat usage_usec): sshd,
  the `nsdash _remote` session and the verb it forks per refresh; the idle
  windows give what the far hosts burn anyway (systemd, the BusyBox machine).
The peer, `machinectl -H far list` once a second, is bench_remote.py's
"poller refresh per host" row (one refresh, kept connection, side by side).

Run as root: .venv/bin/python bench/bench_multihost.py [--window S] [--rounds N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_remote import _cpu_of, boot_far, wait_answer  # noqa: E402
from bench_verbs import nsdash_cmd, run_nsdash  # noqa: E402
from report import Report, wants_json  # noqa: E402

from nsdash.demo import farhost  # noqa: E402

HOSTS = ("far1", "far2")


def cgroup_usage(machine: str) -> float:
    """CPU seconds used so far by MACHINE's cgroup (the far host, everything in it)."""
    status = json.loads(run_nsdash("status", "-o", "json", machine).stdout)
    # cgroup2 where it is mounted: /sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host
    paths = [Path(f"{base}{status['cgroup']}/cpu.stat") for base in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified")]
    stat = next(p for p in paths if p.exists()).read_text()
    return int(stat.split("usage_usec ", 1)[1].split()[0]) / 1e6


def window(seconds: float, machines: list[str], watched: bool) -> tuple[float, float]:
    """(this side's CPU s, the far hosts' CPU s) over one window of SECONDS."""
    from nsdash.remote.target import Target
    from nsdash.tui.remote import RemoteHosts, RemoteReaders

    far0 = sum(cgroup_usage(m) for m in machines)
    if not watched:
        time.sleep(seconds)
        return 0.0, sum(cgroup_usage(m) for m in machines) - far0
    hosts = RemoteHosts([Target(h) for h in HOSTS], interval=1.0)
    readers = RemoteReaders(hosts)
    deadline = time.monotonic() + 30
    while any(not w.state()[2] for w in hosts.watches.values()):  # connected and answered once
        if time.monotonic() > deadline:
            raise SystemExit("the far hosts did not answer")
        time.sleep(0.1)
    sessions = [w._ssh for w in hosts.watches.values()]
    ssh0 = sum(_cpu_of(s.pid) for s in sessions if s)
    here0, far0 = time.process_time(), sum(cgroup_usage(m) for m in machines)
    snaps = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:  # the poller's side: a snapshot a second
        snap = readers.snapshot()
        assert len(snap.machines) == len(HOSTS) and not snap.unreachable, snap
        snaps += 1
        time.sleep(1.0)
    here = time.process_time() - here0 + sum(_cpu_of(s.pid) for s in sessions if s) - ssh0
    far = sum(cgroup_usage(m) for m in machines) - far0
    readers.close()
    return here, far


def main() -> int:
    as_json = wants_json()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window", type=float, default=20.0, help="seconds per window (default 20)")
    ap.add_argument("--rounds", type=int, default=2, help="idle/watched pairs (default 2)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_multihost needs root", file=sys.stderr)
        return 1
    report = Report("multihost", as_json)
    machines = [f"benchmh{os.getpid()}-{i}" for i in range(len(HOSTS))]
    with report.capture(), tempfile.TemporaryDirectory(prefix="nsdash-bench-multihost-") as tmp:
        os.chmod(tmp, 0o755)
        files = farhost.prepare(Path(tmp))
        try:
            configs = []
            for alias, name in zip(HOSTS, machines, strict=True):
                address = boot_far(name, files)
                configs.append(farhost.ssh_config(files, address, name=f"ssh_{alias}", alias=alias))
            config = Path(tmp) / "ssh_config_both"
            config.write_text("".join(p.read_text() for p in configs))
            os.environ.update(HOME=str(files.home), NSDASH_SSH_COMMAND=f"ssh -F {config}")
            for alias in HOSTS:
                ours = [*nsdash_cmd(), "-H", alias]
                wait_answer([*ours, "list"], f"nsdash on {alias}")
                r = subprocess.run([*ours, "spawn", "--detach", "-q", "-M", "bb", "-xbD", "/opt/busybox"],
                                   capture_output=True, text=True, timeout=60)
                if r.returncode != 0:
                    raise SystemExit(f"cannot start bb on {alias}: {r.stderr.strip()}")
            time.sleep(5)  # the boots settle
            idle, here, far = [], [], []
            for i in range(args.rounds):
                for watched in ((False, True) if i % 2 == 0 else (True, False)):
                    h, f = window(args.window, machines, watched)
                    (far if watched else idle).append(f)
                    if watched:
                        here.append(h)
            n, secs = len(HOSTS), args.window
            here_pct = statistics.median(here) / secs / n * 100
            far_pct = (statistics.median(far) - statistics.median(idle)) / secs / n * 100
            print(f"dashboard over {n} hosts at rest, 1 s refresh, {args.rounds} x {secs:g} s windows each; "
                  f"load {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs", flush=True)
            print(f"  this side per host: {here_pct:.2f} % of a core   [{min(here) / secs / n * 100:.2f}.."
                  f"{max(here) / secs / n * 100:.2f}]", flush=True)
            print(f"  far side per host (over its idle): {far_pct:.2f} % of a core   far idle "
                  f"{statistics.median(idle) / secs / n * 100:.2f} %, watched "
                  f"{statistics.median(far) / secs / n * 100:.2f} % [{min(far) / secs / n * 100:.2f}.."
                  f"{max(far) / secs / n * 100:.2f}]", flush=True)
            report.row("dashboard -H at rest, this side, per host", here_pct, "none", None, "% core",
                       spread=(min(here) / secs / n * 100, max(here) / secs / n * 100),
                       note="watch thread + ssh; the peer per refresh is bench_remote's poller row")
            idle_pct = statistics.median(idle) / secs / n * 100
            report.row("dashboard -H at rest, far side, per host (over its idle)", far_pct, "none", None, "% core",
                       spread=(min(far) / secs / n * 100 - idle_pct, max(far) / secs / n * 100 - idle_pct),
                       note=f"the far host idle: {idle_pct:.2f} %")
        finally:
            for name in machines:
                if run_nsdash("poweroff", name, timeout=60).returncode != 0:
                    run_nsdash("terminate", name, timeout=30)
    report.done()
    return 0


if __name__ == "__main__":
    sys.exit(main())
