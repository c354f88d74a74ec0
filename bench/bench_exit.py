"""The tool's exit after its machine's PID 1: this checkout's nsdash against another's, alternated.

bench_boot.py splits each poweroff into the guest's shutdown and the tool's exit after PID 1;
a boot's seconds of noise hide the latter's milliseconds.  This measures only that part, as a
user runs it: the `nsdash` command (bin/nsdash, no `site`) in a terminal of its own (a PTY
read here), `spawn -q -D COPY -M NAME /bin/sleep 0.2` on a copy of the BusyBox tree, and the
time from PID 1's pidfd polling readable (PID 1 is the tool's child: clone3 into its
namespaces) to the tool's own (it is a zombie).  Runs alternate (this checkout first on even
runs) after a warm-up pair; medians with the spread (min..max) and the load.  The state entry
goes to a directory of its own beside /run/nsdash (the same filesystem), removed at the end.

Run as root: .venv/bin/python bench/bench_exit.py --peer CHECKOUT [--runs N]
(CHECKOUT: another nsdash checkout, e.g. `git archive main | tar -x -C DIR`; it is compiled
as `make bytecode` leaves it, as this one is)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pty
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_spawn import copy_tree  # noqa: E402
from report import compile_checkout, need_root  # noqa: E402

from nsdash.demo import trees  # noqa: E402

TIMEOUT = 30.0


def pid1_of(tool: int, deadline: float) -> int:
    """The tool's child: the machine's PID 1 (the only child a foreground spawn keeps)."""
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with open(f"/proc/{tool}/task/{tool}/children") as f:
                children = f.read().split()
            if children:
                return int(children[0])
        time.sleep(0.001)  # set-up, not the measure: the times below come from pidfds
    raise SystemExit("bench_exit: no PID 1 appeared")


def exit_after_pid1(checkout: Path, tree: Path, name: str, state: str) -> float:
    """Milliseconds from PID 1's exit to the tool's, for one run of CHECKOUT's nsdash."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "NSDASH_STATE_DIR": state}
    argv = [sys.executable, "-S", str(checkout / "bin" / "nsdash"), "spawn", "-q", "-D", str(tree), "-M", name,
            "/bin/sleep", "0.2"]
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    deadline = time.monotonic() + TIMEOUT
    tool_fd = os.pidfd_open(proc.pid)
    guest_fd = os.pidfd_open(pid1_of(proc.pid, deadline))
    gone = exited = None
    try:
        while exited is None:
            if time.monotonic() > deadline:
                raise SystemExit("bench_exit: the tool did not exit")
            waiting = [tool_fd, master] + ([guest_fd] if gone is None else [])
            ready = select.select(waiting, [], [], 1.0)[0]
            now = time.perf_counter()
            if guest_fd in ready:
                gone = now
            if tool_fd in ready:
                exited = now
            if master in ready:
                with contextlib.suppress(OSError):
                    os.read(master, 65536)
    finally:
        for fd in (tool_fd, guest_fd, master):
            os.close(fd)
    if proc.wait() != 0:
        raise SystemExit(f"bench_exit: {checkout}'s nsdash exited {proc.returncode}")
    assert gone is not None
    return (exited - gone) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer", type=Path, help="the other nsdash checkout (required)")
    ap.add_argument("--runs", type=int, default=20, help="measured runs per checkout (default 20)")
    args = ap.parse_args()
    need_root("bench_exit", "it starts machines")
    if args.peer is None:
        ap.error("--peer CHECKOUT is required (another nsdash checkout to compare with)")
    tools = {"this": ROOT, "peer": args.peer.resolve()}
    for checkout in tools.values():
        compile_checkout(checkout)
    times: dict[str, list[float]] = {label: [] for label in tools}
    load = os.getloadavg()[0]
    state = tempfile.mkdtemp(prefix="nsdash-bench-exit-", dir="/run")
    try:
        with tempfile.TemporaryDirectory(prefix="nsdash-bench-exit-", dir="/var/tmp") as tmp:
            tree = copy_tree(trees.ensure("busybox"), Path(tmp) / "busybox")
            for i in range(1 + args.runs):
                for label in (tools if i % 2 == 0 else list(tools)[::-1]):
                    ms = exit_after_pid1(tools[label], tree, f"bench-exit{os.getpid()}", state)
                    if i:
                        times[label].append(ms)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    print(f"the tool's exit after PID 1 (ms), median [min..max] of {args.runs}; load {load:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after")
    for label, values in times.items():
        print(f"  {label:<5} {statistics.median(values):6.2f} [{min(values):.2f}..{max(values):.2f}]  {tools[label]}")
    this, peer = statistics.median(times["this"]), statistics.median(times["peer"])
    print(f"  ratio this/peer {this / peer:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
