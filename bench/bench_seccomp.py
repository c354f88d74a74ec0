"""System-call filter cost: the allow-list against the deny-list it replaced, in one run.

  1. `nsdash spawn -q -D BUSYBOX /bin/true`, wall time, N runs each, interleaved
     (the order alternates) after warm-up runs: the filter is compiled once and
     cached, so this shows its cost on the spawn path (load + install).
  2. A call-heavy payload in the same container: BusyBox `dd bs=1` copying
     /dev/zero to /dev/null (two calls per byte), so each call runs the filters.
  3. The same BusyBox dd run on the host with no filter at all, as the floor.

The peer is the nsdash package at git revision REV (default: the last commit
before the allow-list), exported with `git archive` to a temporary directory
and run with the same interpreter.

Run as root: .venv/bin/python bench/bench_seccomp.py [--runs N] [--rev REV]
"""

from __future__ import annotations

import argparse
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

from report import Report, need_root, wants_json  # noqa: E402

from nsdash.demo import trees  # noqa: E402

PYTHON = ROOT / ".venv" / "bin" / "python"
OLD_REV = "78414f5"  # the deny-list filter (nsdash/launcher/seccomp.py before ada5724)
DD_BYTES = 300_000


def run(argv: list[str], env: dict[str, str], timeout: float = 60) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                          timeout=timeout)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr[-500:]}")
    return elapsed, proc.stdout + proc.stderr


def main() -> int:
    report = Report("seccomp", wants_json())
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--rev", default=OLD_REV)
    opts = ap.parse_args()
    need_root("bench_seccomp", "it starts machines")
    tree = trees.ensure("busybox")
    with tempfile.TemporaryDirectory(prefix="nsdash-bench-seccomp-") as tmp, report.capture():
        old = Path(tmp) / "old"
        old.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", opts.rev, "nsdash"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        envs = {}
        for label, path in (("allow-list", ROOT), ("deny-list", old)):
            env = dict(os.environ, PYTHONPATH=str(path))
            env.pop("NSDASH_DEBUG", None)
            envs[label] = env

        def spawn(label: str, name: str, *args: str) -> tuple[float, str]:
            return run([str(PYTHON), "-m", "nsdash", "spawn", "-q", "-x", "-M", name, "-D", str(tree),
                        *args], envs[label])

        dd = ("/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=1", f"count={DD_BYTES}")
        samples: dict[str, dict[str, list[float]]] = {k: {"true": [], "dd": []} for k in envs}
        order = list(envs)
        for i in range(3 + opts.runs):
            for label in (order if i % 2 == 0 else order[::-1]):
                t_true, _ = spawn(label, f"bsc-{os.getpid()}", "/bin/true")
                t_dd, _ = spawn(label, f"bsc-{os.getpid()}", *dd)
                if i >= 3:
                    samples[label]["true"].append(t_true)
                    samples[label]["dd"].append(t_dd)
        floor = []
        for _ in range(max(5, opts.runs // 2)):
            t, _ = run([str(tree / "bin" / "dd"), *dd[1:]], dict(os.environ))
            floor.append(t)
    with report.capture():
        med = {k: {m: statistics.median(v) for m, v in s.items()} for k, s in samples.items()}
        new, old_ = med["allow-list"], med["deny-list"]
        pairs = [a / b for a, b in zip(samples["allow-list"]["true"], samples["deny-list"]["true"], strict=True)]
        report.row("seccomp: spawn /bin/true, allow-list", new["true"] * 1000, f"deny-list ({opts.rev[:8]})",
                   old_["true"] * 1000, "ms", spread=(min(pairs), max(pairs)))
        print(f"spawn /bin/true           allow-list {new['true'] * 1000:7.1f} ms   deny-list "
              f"{old_['true'] * 1000:7.1f} ms   ratio {new['true'] / old_['true']:.2f}   (median of {opts.runs})")
        # the per-call cost: the dd spawn less the /bin/true spawn, over its 2 x DD_BYTES calls
        per_new = (new["dd"] - new["true"]) / (2 * DD_BYTES) * 1e9
        per_old = (old_["dd"] - old_["true"]) / (2 * DD_BYTES) * 1e9
        per_floor = statistics.median(floor) / (2 * DD_BYTES) * 1e9
        print(f"dd bs=1 {DD_BYTES} bytes     allow-list {new['dd'] * 1000:7.1f} ms   deny-list "
              f"{old_['dd'] * 1000:7.1f} ms   ratio {new['dd'] / old_['dd']:.2f}")
        print(f"per call (dd - true)      allow-list {per_new:7.0f} ns   deny-list {per_old:7.0f} ns   "
              f"ratio {per_new / per_old:.2f}   (no filter on the host: ~{per_floor:.0f} ns incl. exec)")
        # the spread, as every row has one: each alternated pair of runs' per-call ratio
        a, d = samples["allow-list"], samples["deny-list"]
        per_pairs = [(dn - tn) / (do - to) for dn, tn, do, to in zip(a["dd"], a["true"], d["dd"], d["true"], strict=True)
                     if do > to]
        report.row("seccomp: cost per system call, allow-list", per_new, "deny-list", per_old, "ns",
                   spread=(min(per_pairs), max(per_pairs)) if per_pairs else None,
                   note=f"no filter ~{per_floor:.0f} ns incl. exec")
    report.done()
    return 0


if __name__ == "__main__":
    sys.exit(main())
