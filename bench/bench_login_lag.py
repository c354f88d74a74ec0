"""How far behind the machine's console `nsdash login` shows it while the machine floods.

One BusyBox machine runs `yes > /dev/console` (while /run/go exists inside it,
as in bench_flood_keys.py).  `nsdash login` runs in tmux (160x48).  Now and then
the bench writes a marker line into the machine's console from the host (its
/dev/console, the PTY slave the flood writes to) as a window-title sequence (OSC 2: a
line would scroll away under the flood before anyone saw it) and times how long until
tmux's pane of the login has that title (`#{pane_title}`, through one tmux control-mode
client, every POLL s).  The same is done with the flood off, for
the path's own time.  Printed: median, p95, max of each, the login's and the
supervisor's CPU, and the load.

--repo runs the machine (its supervisor) and the login from that checkout: run it
for main and for a branch, alternately, to compare.

Run as root: .venv/bin/python bench/bench_login_lag.py [--marks N] [--repo CHECKOUT]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_flood_keys as fk  # noqa: E402  (its tmux control client, its machine, its helpers)
from report import need_root  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


def seen(mark: str) -> bool:
    assert fk.CONTROL is not None
    return mark in fk.CONTROL.command("display -p -t k '#{pane_title}'")


def lag(console: Path, mark: str, timeout: float = 10.0) -> float:
    """Seconds from MARK written into the console until the login's screen shows it."""
    fd = os.open(console, os.O_WRONLY | os.O_NOCTTY)
    try:
        started = time.monotonic()
        os.write(fd, f"\x1b]2;{mark}\x07".encode())
    finally:
        os.close(fd)
    while time.monotonic() - started < timeout:
        if seen(mark):
            return time.monotonic() - started
        time.sleep(fk.POLL)
    return float("inf")


def read_bytes(pid: int) -> int:
    """Bytes PID has read so far (rchar: the supervisor's are its console's, and a few requests)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--marks", type=int, default=20, help="markers per phase and round (default 20)")
    ap.add_argument("--rounds", type=int, default=2, help="rest/flood pairs (default 2)")
    ap.add_argument("--repo", type=Path, default=REPO, help="the checkout whose supervisor and login run")
    args = ap.parse_args()
    need_root("bench_login_lag", "it starts a machine")
    state = Path(tempfile.mkdtemp(prefix="nsdash-login-", dir="/run"))
    env = {**os.environ, "NSDASH_STATE_DIR": str(state), "PYTHONPATH": str(args.repo)}
    results: dict[str, list[float]] = {"rest": [], "flood": []}
    loads: list[float] = []
    cpu: dict[str, dict[str, float]] = {"rest": {}, "flood": {}}
    wall = {"rest": 0.0, "flood": 0.0}
    flooded = {"rest": 0, "flood": 0}  # bytes the supervisor read (the console, nearly all of it)
    r = fk.nsdash(env, "spawn", "--detach", "-q", "-x", "-D", str(fk.busybox_tree()), "-M", fk.MACHINE,
                  "/bin/sh", "-c", fk.FLOOD)
    if r.returncode != 0:
        raise SystemExit(f"bench_login_lag: the machine did not start: {r.stderr.strip()}")
    leader = fk.leader(state)
    go = Path(f"/proc/{leader}/root/run/go")
    console = Path(f"/proc/{leader}/root/dev/console")
    try:
        command = f"cd {args.repo} && NSDASH_STATE_DIR={state} PYTHONPATH={args.repo} exec {PY} -m nsdash login {fk.MACHINE}"
        fk.tmux("new-session", "-d", "-s", "k", "-x", "160", "-y", "48", command)
        fk.wait(lambda: "Connected to machine" in fk.screen(), 20, "the login")
        fk.CONTROL = fk.Control()
        procs = {"login": fk.app_pid(), "supervisor": fk.supervisor(state),
                 "tmux": int(fk.tmux("display", "-p", "#{pid}").strip())}
        n = 0
        for _ in range(args.rounds):
            for phase in ("rest", "flood"):
                fk.flood(go, phase == "flood")
                time.sleep(2.0)
                s0, w0 = {k: fk.sched(p) for k, p in procs.items()}, time.monotonic()
                r0 = read_bytes(procs["supervisor"])
                for _ in range(args.marks):
                    n += 1
                    results[phase].append(lag(console, f"MARK-{os.getpid()}-{n:05d}-END"))
                    time.sleep(random.uniform(0.1, 0.3))
                for k, p in procs.items():
                    cpu[phase][k] = cpu[phase].get(k, 0.0) + fk.sched(p)[0] - s0[k][0]
                wall[phase] += time.monotonic() - w0
                flooded[phase] += read_bytes(procs["supervisor"]) - r0
                loads.append(os.getloadavg()[0])
        go.unlink(missing_ok=True)
    finally:
        if fk.CONTROL is not None:
            fk.CONTROL.close()
        fk.tmux("kill-server")
        (Path(os.environ.get("TMUX_TMPDIR", "/tmp")) / f"tmux-{os.getuid()}" / fk.SOCK).unlink(missing_ok=True)
        fk.nsdash(env, "terminate", fk.MACHINE)
        subprocess.run(["rm", "-rf", str(state)], check=False)
    for phase in ("rest", "flood"):
        ms = [v * 1000 for v in results[phase]]
        print(f"{phase:5}: console-to-login-screen median {statistics.median(ms):.0f} ms, "
              f"p95 {fk.percentile(ms, 0.95):.0f} ms, max {max(ms):.0f} ms over {len(ms)} markers; CPU (ms per s) "
              + ", ".join(f"{k} {1000 * v / wall[phase]:.0f}" for k, v in cpu[phase].items())
              + f"; console {flooded[phase] / wall[phase] / 1e6:.2f} MB/s, CPU ms per MB: "
              + ", ".join(f"{k} {1000 * v / max(flooded[phase] / 1e6, 1e-3):.0f}" for k, v in cpu[phase].items()))
    print(f"load average during the run: {min(loads):.1f}-{max(loads):.1f} (repo: {args.repo})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
