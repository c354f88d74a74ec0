#!/usr/bin/env python3
"""What the dashboard over remote hosts (`nsdash -H A -H B`) costs at rest, per host.

Two far hosts (the "sshd" tree booted with -n, nsdash.demo.farhost, as
tests/tui/test_tui_multihost.py makes them), a BusyBox machine in each.  The
dashboard's readers over them (nsdash.tui.remote: one HostWatch thread and
ssh session per host) run for a window in each of two ways, and the same
length of window passes with nothing watching, in rotated order (idle, list,
watch; list, watch, idle; ...), so drifting load hits all alike:
- list: the far side polled, `list -o json` every second (a forked verb
  each time; what HostWatch does with a far nsdash without _watch);
- watch: the far side pushes, one `nsdash _watch` for the session writing a
  line a second with the machines, the cgroup tree and the cgtop rows.
Measured:
- this side: the process's CPU (the watch threads) plus its ssh clients';
- the far side: the far hosts' own cgroups' CPU (cpu.stat usage_usec): sshd,
  the `nsdash _remote` session and its verbs; the idle windows give what the
  far hosts burn anyway (systemd, the BusyBox machine).
The peer, `machinectl -H far list` once a second, is bench_remote.py's
"poller refresh per host" row (one refresh, kept connection, side by side).

Run as root: .venv/bin/python bench/bench_multihost.py [--window S] [--rounds N (of 3 windows)] [--json]
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
from bench_verbs import nsdash_cmd, run_nsdash, stop  # noqa: E402
from report import Report, need_root, wants_json  # noqa: E402
from stopping import shielded  # noqa: E402

from nsdash.demo import farhost  # noqa: E402

HOSTS = ("far1", "far2")


def cgroup_usage(machine: str) -> float:
    """CPU seconds used so far by MACHINE's cgroup (the far host, everything in it)."""
    status = json.loads(run_nsdash("status", "-o", "json", machine).stdout)
    # cgroup2 where it is mounted: /sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host
    paths = [Path(f"{base}{status['cgroup']}/cpu.stat") for base in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified")]
    stat = next(p for p in paths if p.exists()).read_text()
    return int(stat.split("usage_usec ", 1)[1].split()[0]) / 1e6


MODES = ("idle", "list", "watch")


def window(seconds: float, machines: list[str], mode: str) -> tuple[float, float]:
    """(this side's CPU s, the far hosts' CPU s) over one window of SECONDS watched in MODE."""
    from nsdash.remote.target import Target
    from nsdash.tui.remote import RemoteHosts, RemoteReaders

    far0 = sum(cgroup_usage(m) for m in machines)
    if mode == "idle":
        time.sleep(seconds)
        return 0.0, sum(cgroup_usage(m) for m in machines) - far0
    hosts = RemoteHosts([Target(h) for h in HOSTS], interval=1.0)
    for w in hosts.watches.values():
        w.legacy = mode == "list"
    readers = RemoteReaders(hosts)
    deadline = time.monotonic() + 30
    # connected and answered once (a watch: with rates, its second line)
    while any(not w.state()[2] or (mode == "watch" and w.lines < 2) for w in hosts.watches.values()):
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
    need_root("bench_multihost", "it boots two far hosts")
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
            here: dict[str, list[float]] = {m: [] for m in MODES}
            far: dict[str, list[float]] = {m: [] for m in MODES}
            for i in range(args.rounds):
                for mode in MODES[i % 3:] + MODES[:i % 3]:
                    h, f = window(args.window, machines, mode)
                    here[mode].append(h)
                    far[mode].append(f)
            n, secs = len(HOSTS), args.window

            def pct(seconds: float) -> float:
                return seconds / secs / n * 100

            idle_pct = pct(statistics.median(far["idle"]))
            print(f"dashboard over {n} hosts at rest, 1 s refresh, {args.rounds} x {secs:g} s windows each; "
                  f"load {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs; far host idle {idle_pct:.2f} %",
                  flush=True)
            for mode in ("list", "watch"):
                h, f = here[mode], far[mode]
                print(f"  {mode:5}  this side per host: {pct(statistics.median(h)):.2f} % of a core "
                      f"[{pct(min(h)):.2f}..{pct(max(h)):.2f}]   far side per host over its idle: "
                      f"{pct(statistics.median(f)) - idle_pct:.2f} % [{pct(min(f)) - idle_pct:.2f}.."
                      f"{pct(max(f)) - idle_pct:.2f}]", flush=True)
            # the push against the poll it replaces, side by side (the same windows, rotated)
            for side, values, note in (("this side", here, "watch thread + ssh"),
                                       ("far side (over its idle)", far, f"the far host idle: {idle_pct:.2f} %")):
                base = idle_pct if side.startswith("far") else 0.0
                pushed, polled = (pct(statistics.median(values[m])) - base for m in ("watch", "list"))
                report.row(f"dashboard -H at rest, {side}, per host: pushed (_watch: machines, tree, rows)",
                           pushed, "polled: list -o json a second (before)", polled, "% core",
                           spread=(pct(min(values["watch"])) - base, pct(max(values["watch"])) - base), note=note)
        finally:
            with shielded():  # (bench/stopping.py: a second Ctrl-C waits for this)
                for name in machines:
                    stop(name)
    report.done()
    return 0


if __name__ == "__main__":
    sys.exit(main())
