"""Debian boot-to-poweroff under -U: nsdash (map, chown) against systemd-nspawn (map, chown).

Each variant boots its own copy of the Debian demo tree with
`-U --private-users-ownership=MODE -b -D TREE systemd.unit=poweroff.target`,
N times, interleaved, after one warm-up boot each (the warm-up of a chown
variant is the one that shifts the tree; later boots find it shifted).
Wall time from exec to exit; medians reported with the ratio to nspawn's.

systemd-nspawn -U boots here only from a cgroup2 directory of its own (with
--keep-unit it runs the container in the caller's cgroup and delegates it);
each nspawn run is started from a fresh directory under the unified
hierarchy, removed after.  It also needs a system bus: one is started if
missing and stopped at the end.

Run as root: .venv/bin/python bench/bench_userns.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from report import Report, wants_json  # noqa: E402

from nsdash.demo import trees  # noqa: E402
from nsdash.system import cgroupfs  # noqa: E402

PYTHON = ROOT / ".venv" / "bin" / "python"
BUS_SOCKET = Path("/run/dbus/system_bus_socket")
BUS_PID = Path("/run/dbus/pid")


def _unified() -> Path:
    layout = cgroupfs.detect()
    return Path(layout.unified) if layout.unified else Path("/sys/fs/cgroup")


def boot_nsdash(tree: Path, mode: str, name: str) -> float:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    t0 = time.monotonic()
    r = subprocess.run([str(PYTHON), "-m", "nsdash", "spawn", "-q", "-U", f"--private-users-ownership={mode}",
                        "-M", name, "-b", "-D", str(tree), "systemd.unit=poweroff.target"],
                       cwd=ROOT, env=env, capture_output=True, text=True)
    took = time.monotonic() - t0
    if r.returncode != 0 or "Powering off" not in r.stdout:
        raise SystemExit(f"nsdash -U {mode} did not boot and power off: {r.stderr.strip()[-300:]}")
    return took


def _remove_cgroup(cg: Path) -> None:
    """CG and what nspawn made below it (payload/init.scope, supervisor), deepest first."""
    for _ in range(50):
        try:
            for sub in sorted((p for p in cg.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                sub.rmdir()
            cg.rmdir()
            return
        except OSError:
            time.sleep(0.05)


def boot_nspawn(tree: Path, mode: str, name: str) -> float:
    cg = _unified() / f"bench-userns-{os.getpid()}"
    cg.mkdir()
    try:
        script = (f"echo $$ > {cg}/cgroup.procs && exec systemd-nspawn -q --keep-unit --register=no -U "
                  f"--private-users-ownership={mode} -M {name} -D {tree} -b systemd.unit=poweroff.target")
        env = {**os.environ, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}
        t0 = time.monotonic()
        r = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True)
        took = time.monotonic() - t0
    finally:
        _remove_cgroup(cg)
        # On a hybrid host nspawn mirrors its cgroups into the name=systemd hierarchy too.
        mirror = Path("/sys/fs/cgroup/systemd") / cg.name
        if mirror.is_dir():
            _remove_cgroup(mirror)
    if r.returncode != 0 or "Powering off" not in r.stdout:
        raise SystemExit(f"systemd-nspawn -U {mode} did not boot and power off: {r.stdout.strip()[-300:]}")
    return took


def main() -> None:
    report = Report("userns", wants_json())
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    src = trees.ensure("debian")
    bus = None
    if subprocess.run(["pgrep", "-x", "dbus-daemon"], capture_output=True).returncode != 0:
        BUS_SOCKET.unlink(missing_ok=True)  # a stale socket and pid file from a bus that is gone
        BUS_PID.unlink(missing_ok=True)
        Path("/run/dbus").mkdir(parents=True, exist_ok=True)
        out = subprocess.run(["dbus-daemon", "--system", "--fork", "--print-pid"], check=True,
                             capture_output=True, text=True).stdout
        bus = int(out.split()[0])
    variants = [("nsdash", "map", boot_nsdash), ("nsdash", "chown", boot_nsdash),
                ("nspawn", "map", boot_nspawn), ("nspawn", "chown", boot_nspawn)]
    work = Path(tempfile.mkdtemp(prefix="bench-userns-"))
    try:
        copies = {}
        for tool, mode, _ in variants:
            dest = work / f"{tool}-{mode}"
            subprocess.run(["cp", "-a", "--reflink=auto", str(src), str(dest)], check=True)
            copies[tool, mode] = dest
        first = {}
        for tool, mode, boot in variants:
            first[tool, mode] = boot(copies[tool, mode], mode, f"bench-{tool}-{mode}")
        times: dict[tuple[str, str], list[float]] = {(t, m): [] for t, m, _ in variants}
        for i in range(args.runs):
            order = variants if i % 2 == 0 else list(reversed(variants))
            for tool, mode, boot in order:
                times[tool, mode].append(boot(copies[tool, mode], mode, f"bench-{tool}-{mode}"))
        with report.capture():
            print(f"Debian boot-to-poweroff under -U, {args.runs} runs each (median; first boot in brackets)")
            for mode in ("map", "chown"):
                ours, peer = statistics.median(times["nsdash", mode]), statistics.median(times["nspawn", mode])
                print(f"  {mode:5}  nsdash {ours * 1000:6.0f} ms [{first['nsdash', mode] * 1000:5.0f}]   "
                      f"nspawn {peer * 1000:6.0f} ms [{first['nspawn', mode] * 1000:5.0f}]   ratio {ours / peer:.2f}")
                pairs = [a / b for a, b in zip(times["nsdash", mode], times["nspawn", mode], strict=True)]
                report.row(f"Debian boot-to-poweroff -U ({mode})", ours * 1000, "systemd-nspawn", peer * 1000, "ms",
                           spread=(min(pairs), max(pairs)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if bus:
            os.kill(bus, signal.SIGTERM)
            BUS_SOCKET.unlink(missing_ok=True)
            BUS_PID.unlink(missing_ok=True)
    report.done()


if __name__ == "__main__":
    main()
