"""The supervisor's CPU while a guest floods its notify socket with distinct STATUS= lines.

A machine's PID 1 (python3 in the Debian tree) sends `STATUS=step N` datagrams with blocking
sends as fast as the socket drains.  Counted, not timed: the supervisor's CPU ticks
(utime + stime of /proc/PID/stat) over SECONDS, and how many datagrams the guest got out, for
this checkout and the peer (--peer, default /work/main), alternated, ROUNDS each.  The
supervisor's write system calls are counted too (/proc/PID/io syscw): a flood's are its state.json writes.
Run as root: .venv/bin/python bench/bench_notify_flood.py [--rounds 3] [--seconds 8] [--peer DIR]
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import load, need_root  # noqa: E402

from nsdash.machines import state as st  # noqa: E402

FLOOD = ("import os, socket\n"
         "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
         "path, n = os.environ['NOTIFY_SOCKET'], 0\n"
         "s.sendto(b'READY=1', path)\n"
         "while True:\n"
         "    s.sendto(b'STATUS=step %d' % n, path)\n"
         "    n += 1\n"
         "    if n % 1000 == 0:\n"
         "        with open('/count.tmp', 'w') as f:\n"
         "            f.write(str(n))\n"
         "        os.rename('/count.tmp', '/count')\n")


def _nsdash(checkout: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=checkout)
    return subprocess.run([sys.executable, "-m", "nsdash", *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=checkout)  # (-m puts the working directory first on the path)


def _ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def _syscw(pid: int) -> int:
    """The process's write system calls so far (/proc/PID/io): one per state.json written here."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    return 0


def one(checkout: str, tree: str, seconds: float, name: str) -> tuple[int, int, int]:
    """(supervisor ticks, datagrams sent, state files written) over SECONDS of a flood."""
    r = _nsdash(checkout, "spawn", "--detach", "-q", "-D", tree, "-x", "-M", name, "python3", "-c", FLOOD)
    if r.returncode != 0:
        raise SystemExit(f"spawn failed: {r.stderr.strip()}")
    try:
        time.sleep(1.0)
        s = st.read_state(st.machine_dir(name))
        assert s is not None and s.leader is not None
        count = Path(f"/proc/{s.leader}/root/count")
        t0, w0, n0 = _ticks(s.supervisor), _syscw(s.supervisor), int(count.read_text() or 0)
        time.sleep(seconds)
        t1, w1, n1 = _ticks(s.supervisor), _syscw(s.supervisor), int(count.read_text() or 0)
        return t1 - t0, n1 - n0, w1 - w0
    finally:
        _nsdash(checkout, "terminate", name)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--peer", default="/work/main")
    ns = p.parse_args()
    need_root("bench_notify_flood", "it starts machines")
    tree = sorted(glob.glob("/var/cache/nsdash/trees/debian-*"))[0]
    ours = str(Path(__file__).resolve().parent.parent)
    results: dict[str, list[tuple[int, int, int]]] = {"ours": [], "peer": []}
    loads = []
    for i in range(ns.rounds):
        for side, checkout in (("peer", ns.peer), ("ours", ours)):
            loads.append(load())
            results[side].append(one(checkout, tree, ns.seconds, f"nsflood{os.getpid()}x{i}{side[0]}"))
    print(f"supervisor under a STATUS= flood, {ns.seconds:g} s, {ns.rounds} rounds, load "
          f"{statistics.median(loads):.2f} ({min(loads):.2f}-{max(loads):.2f})")
    for side, rows in results.items():
        for what, k in (("CPU ticks", 0), ("datagrams sent", 1), ("write syscalls", 2)):
            vals = [r[k] for r in rows]
            print(f"  {side:4} {what:17} median {statistics.median(vals):>9g}  ({min(vals)}-{max(vals)})  {vals}")


if __name__ == "__main__":
    main()
