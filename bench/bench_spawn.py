"""Spawn speed: nsdash against systemd-nspawn, side by side in one run.

  1. `spawn -q -D TREE /bin/true` on the BusyBox and Debian demo trees:
     `.venv/bin/nsdash spawn -q -M NAME -D TREE /bin/true` against
     `systemd-nspawn -q --keep-unit --register=no -M NAME -D TREE /bin/true`,
     N runs each, interleaved (the order alternates) after warm-up runs.
  2. Debian boot-to-poweroff: `-b -D TREE systemd.unit=poweroff.target` for
     both (the argument goes to the container's systemd, which in a container
     reads its own argv as its kernel command line), wall time from exec to exit.

Each tool gets its own copy of each tree (a boot writes to it).  nsdash runs
with its bytecode compiled, as an installed wheel has it: PYTHONDONTWRITEBYTECODE
is dropped from its environment and the package is compiled first.
systemd-nspawn needs a system bus even with --register=no: if
/run/dbus/system_bus_socket is missing a dbus-daemon is started for the run
and stopped at the end.

Run as root: .venv/bin/python bench/bench_spawn.py [--runs N] [--boots M] [--no-debian]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from report import Report, compile_checkout, need_root, wants_json  # noqa: E402

from nsdash.demo import trees  # noqa: E402

NSDASH = ROOT / ".venv" / "bin" / "nsdash"
PYTHON = ROOT / ".venv" / "bin" / "python"
BUS_SOCKET = Path("/run/dbus/system_bus_socket")
NSPAWN_LEFTOVERS = ("/run/systemd/nspawn/propagate", "/run/systemd/nspawn/unix-export")


@contextmanager
def system_bus() -> Iterator[None]:
    """A system bus for systemd-nspawn; started (and later stopped) only if missing."""
    if BUS_SOCKET.exists():
        yield
        return
    Path("/run/dbus").mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["dbus-daemon", "--system", "--fork", "--print-pid"], check=True,
                         capture_output=True, text=True).stdout
    pid = int(out.split()[0])
    try:
        yield
    finally:
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.05)
        for leftover in (BUS_SOCKET, Path("/run/dbus/pid")):
            leftover.unlink(missing_ok=True)


def nsdash_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("NSDASH_DEBUG", None)
    return env


def commands(tool: str, tree: Path, name: str, args: list[str]) -> list[str]:
    if tool == "nsdash":
        return [str(NSDASH), "spawn", "-q", "-M", name, "-D", str(tree), *args]
    return ["systemd-nspawn", "-q", "--keep-unit", "--register=no", "-M", name, "-D", str(tree), *args]


def timed(argv: list[str], env: dict[str, str] | None, timeout: float) -> float:
    return timed_cpu(argv, env, timeout)[0]


def timed_cpu(argv: list[str], env: dict[str, str] | None, timeout: float) -> tuple[float, float]:
    """(wall, CPU) seconds of one whole run; CPU is user + system of it and of the children it
    waited for (the growth of our RUSAGE_CHILDREN: runs are sequential), the figure a busy
    machine moves least."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, env=env, timeout=timeout)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-500:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def compare(label: str, trees_by_tool: dict[str, Path], args: list[str], runs: int, warmup: int,
            timeout: float, tag: str, report: Report | None = None) -> dict[str, float]:
    samples: dict[str, list[float]] = {"nsdash": [], "systemd-nspawn": []}
    cpus: dict[str, list[float]] = {"nsdash": [], "systemd-nspawn": []}
    env = {"nsdash": nsdash_env(), "systemd-nspawn": None}
    order = list(samples)
    for i in range(warmup + runs):
        for tool in (order if i % 2 == 0 else order[::-1]):
            name = f"{tag}-{'a' if tool == 'nsdash' else 'b'}"
            t, cpu = timed_cpu(commands(tool, trees_by_tool[tool], name, args), env[tool], timeout)
            if i >= warmup:
                samples[tool].append(t)
                cpus[tool].append(cpu)
    medians = {tool: statistics.median(s) for tool, s in samples.items()}
    ratio = medians["nsdash"] / medians["systemd-nspawn"]
    unit, scale = ("ms", 1000.0) if medians["systemd-nspawn"] < 2 else ("s", 1.0)
    print(f"{label:<34} nsdash {medians['nsdash'] * scale:8.2f} {unit}   systemd-nspawn "
          f"{medians['systemd-nspawn'] * scale:8.2f} {unit}   ratio {ratio:5.2f}   "
          f"(median of {runs}; nsdash min {min(samples['nsdash']) * scale:.2f}, "
          f"nspawn min {min(samples['systemd-nspawn']) * scale:.2f})", flush=True)
    cpu = {tool: statistics.median(c) for tool, c in cpus.items()}
    cpu_ratio = cpu["nsdash"] / cpu["systemd-nspawn"] if cpu["systemd-nspawn"] > 0 else float("nan")
    print(f"{'':<34} CPU: nsdash {cpu['nsdash'] * 1000:.1f} ms, systemd-nspawn "
          f"{cpu['systemd-nspawn'] * 1000:.1f} ms, x{cpu_ratio:.2f}; load {os.getloadavg()[0]:.1f}", flush=True)
    if report is not None:
        pairs = [a / b for a, b in zip(samples["nsdash"], samples["systemd-nspawn"], strict=True)]
        report.row(label, medians["nsdash"] * scale, "systemd-nspawn", medians["systemd-nspawn"] * scale, unit,
                   ratio=ratio, spread=(min(pairs), max(pairs)), note=f"CPU x{cpu_ratio:.2f}")
    return medians


def python_startup(runs: int = 15) -> float:
    env = nsdash_env()
    return statistics.median(timed([str(PYTHON), "-c", "pass"], env, 10) for _ in range(runs))


def copy_tree(src: Path, dest: Path) -> Path:
    subprocess.run(["cp", "-a", "--reflink=auto", str(src), str(dest)], check=True)
    return dest


def clean_nspawn_leftovers(tag: str) -> None:
    """systemd-nspawn leaves empty per-machine directories under /run when no
    systemd runs as PID 1; remove the ones this run made."""
    for base in NSPAWN_LEFTOVERS:
        d = Path(base)
        if d.is_dir():
            for entry in d.iterdir():
                if entry.name.startswith(tag):
                    shutil.rmtree(entry, ignore_errors=True)


def main() -> int:
    report = Report("spawn", wants_json())
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="timed runs per tool for /bin/true (default 20)")
    ap.add_argument("--boots", type=int, default=3, help="timed Debian boots per tool (default 3)")
    ap.add_argument("--no-debian", action="store_true", help="BusyBox only")
    args = ap.parse_args()
    need_root("bench_spawn", "it starts machines")
    compile_checkout(ROOT)  # as `make bytecode` leaves it: .pyc files and the bundle
    tag = f"bench{os.getpid()}"
    names = ["busybox"] + ([] if args.no_debian else ["debian"])
    with tempfile.TemporaryDirectory(prefix="nsdash-bench-", dir="/var/tmp") as tmp, system_bus(), \
            report.capture():
        try:
            print(f"load average {os.getloadavg()[0]:.2f}; python startup (-c pass) "
                  f"{python_startup() * 1000:.1f} ms; {os.cpu_count()} CPUs", flush=True)
            copies: dict[str, dict[str, Path]] = {}
            for name in names:
                src = trees.ensure(name)
                copies[name] = {tool: copy_tree(src, Path(tmp) / f"{name}-{tool}")
                                for tool in ("nsdash", "systemd-nspawn")}
            for name in names:
                compare(f"spawn -D {name} /bin/true", copies[name], ["/bin/true"], args.runs, 3, 30, tag,
                        report)
            if "debian" in names and args.boots > 0:
                compare("debian boot-to-poweroff", copies["debian"], ["-b", "systemd.unit=poweroff.target"],
                        args.boots, 1, 180, tag, report)
        finally:
            clean_nspawn_leftovers(tag)
    report.done()
    return 0


if __name__ == "__main__":
    sys.exit(main())
