#!/usr/bin/env python3
"""`nsdash -H` against `machinectl -H`: one verb on another host over ssh, side by side.

The far host is the "sshd" tree booted with -n (nsdash.demo.farhost, as
tests/integration/test_remote.py makes it), with a BusyBox machine M running
inside, which both tools see (nsdash registers it with the far host's
systemd-machined).  machinectl -H runs `ssh -xT HOST systemd-stdio-bridge` and
talks D-Bus to machined; nsdash -H runs `ssh -T HOST nsdash _remote` (the far
host's nsdash is `python3 -S bin/nsdash`, as `make venv` installs it), which runs
the verb in a fork of itself.  Both run the same `ssh`, first
on PATH: a two-line wrapper adding `-F` with the bench's ssh_config
(machinectl 252 runs plain `ssh` from PATH), first with a new ssh
connection per command, then over a ControlMaster connection (what a poller
keeping one connection per host would pay); last, what the dashboard's poller
would pay per host and refresh over a kept nsdash.remote.session.Session.

Each pair runs alternately (A B B A ...) after a warm-up, as bench_verbs does:
wall time and the client's CPU time (user + system of the whole process tree
it waited for: ssh included).  The far side's CPU is not counted for either.

With --base REV, each -H row is also run against that revision of nsdash on
both sides, alternated with this checkout (before and after a change, in one
run): the revision's nsdash and bin/ go to the far host's bound directory, its
far side started as that revision's farhost started it (python3 -m nsdash).

Run as root: .venv/bin/python bench/bench_remote.py [--runs N] [--base REV] [--json]
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_verbs import nsdash_cmd, pair, run_nsdash, stop  # noqa: E402
from report import Report, need_root, wants_json  # noqa: E402
from stopping import shielded  # noqa: E402

from nsdash.demo import farhost, trees  # noqa: E402
from nsdash.launcher import network  # noqa: E402


def boot_far(name: str, files: farhost.FarFiles) -> str:
    """Boot the far host NAME; its address once `nsdash -H far list` answers."""
    r = run_nsdash("spawn", "--detach", "-q", "-M", name, "-n", "-xbD", str(trees.ensure("sshd")),
                   *farhost.spawn_options(files, ROOT, sysconfig.get_paths()["purelib"]),
                   f"--bind-ro={trees.ensure('busybox')}:/opt/busybox", timeout=120)
    if r.returncode != 0:
        raise SystemExit(f"cannot boot the far host: {r.stderr.strip()}")
    lease = network.lease_of(name)
    if lease is None:
        raise SystemExit("the far host has no address")
    return str(lease.guest.ip)


def base_tree(rev: str, far: Path) -> tuple[Path, str]:
    """REV's nsdash and bin/ in FAR/base, compiled; (that directory, the far side's command for it)."""
    base = far / "base"
    base.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "nsdash", "bin"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
    compileall.compile_dir(str(base / "nsdash"), quiet=1)
    wrapper = far / "nsdash.base"
    wrapper.write_text(f"#!/bin/sh\nexport PYTHONPATH={farhost.FAR_DIR}/base:/opt/site\nexec python3 -m nsdash \"$@\"\n")
    wrapper.chmod(0o755)
    return base, f"{farhost.FAR_DIR}/nsdash.base"


def wait_answer(argv: list[str], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while subprocess.run(argv, capture_output=True, timeout=30).returncode != 0:
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not answer in {timeout:.0f} s")
        time.sleep(0.5)


def _cpu_of(pid: int) -> float:
    """User + system seconds of process PID so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def poller_refresh(runs: int, report: Report) -> None:
    """The dashboard's cost per remote host and refresh: `list -o json` over a kept Session
    (this process's CPU for it, and its ssh's, which /proc counts in 10 ms ticks: averaged), against `machinectl -H far list` as a process over the
    ControlMaster connection (the cheapest a poller could run systemd's tool)."""
    from nsdash.remote.session import Session
    from nsdash.remote.target import parse_target

    walls, cpus, peer_walls, peer_cpus = [], [], [], []
    ssh_cpu = 0.0
    with Session(parse_target("far")) as session:
        session.run(["list", "-o", "json"])  # warm-up
        for i in range(runs):
            for ours in ((True, False) if i % 2 == 0 else (False, True)):
                if ours:
                    t0, c0, s0 = time.perf_counter(), time.process_time(), _cpu_of(session.ssh_pid)
                    (r,) = session.run(["list", "-o", "json"])
                    walls.append(time.perf_counter() - t0)
                    cpus.append(time.process_time() - c0)
                    ssh_cpu += _cpu_of(session.ssh_pid) - s0  # in clock ticks: summed, then averaged
                    assert r.code == 0, r
                else:
                    t0 = time.perf_counter()
                    proc = subprocess.Popen(["machinectl", "-H", "far", "--no-pager", "list"],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    _, _, usage = os.wait4(proc.pid, 0)
                    peer_walls.append(time.perf_counter() - t0)
                    peer_cpus.append(usage.ru_utime + usage.ru_stime)
    ours_ms, theirs_ms = statistics.median(walls) * 1000, statistics.median(peer_walls) * 1000
    ours_cpu = (statistics.median(cpus) + ssh_cpu / runs) * 1000  # this process's share + its ssh's
    theirs_cpu = statistics.mean(peer_cpus) * 1000
    print(f"{'poller refresh, kept session':<26} nsdash {ours_ms:7.1f} ms ({ours_cpu:5.1f} CPU)   machinectl -H "
          f"{theirs_ms:7.1f} ms ({theirs_cpu:5.1f} CPU)   wall x{ours_ms / theirs_ms:.2f} "
          f"[{min(walls) * 1000:.0f}..{max(walls) * 1000:.0f} ms]   load {os.getloadavg()[0]:.1f}", flush=True)
    report.row("poller refresh per host (list -o json, kept session)", ours_ms, "machinectl -H (ControlMaster)",
               theirs_ms, "ms", spread=(min(walls) * 1000, max(walls) * 1000),
               note=f"client CPU {ours_cpu:.1f} ms vs {theirs_cpu:.1f} ms")


def main() -> int:
    as_json = wants_json()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15, help="pairs per verb (default 15)")
    ap.add_argument("--base", metavar="REV", help="also run each -H row against nsdash at git revision REV")
    args = ap.parse_args()
    need_root("bench_remote", "it boots a far host")
    report = Report("remote", as_json)
    name = f"benchfar{os.getpid()}"
    with report.capture(), tempfile.TemporaryDirectory(prefix="nsdash-bench-remote-") as tmp:
        # bytecode, as an installed wheel has it (the far side reads this checkout read-only)
        compileall.compile_dir(str(ROOT / "nsdash"), quiet=1)
        os.chmod(tmp, 0o755)
        files = farhost.prepare(Path(tmp))
        base = base_tree(args.base, files.far) if args.base else None
        bindir = Path(tmp) / "bin"
        bindir.mkdir()
        wrapper = bindir / "ssh"
        os.environ.update(HOME=str(files.home), PATH=f"{bindir}:{os.environ['PATH']}")
        os.environ.pop("NSDASH_SSH_COMMAND", None)
        try:
            address = boot_far(name, files)
            for config, label in ((farhost.ssh_config(files, address), "new connection"),
                                  (farhost.ssh_config(files, address, name="ssh_config_master",
                                                      extra=f"  ControlMaster auto\n  ControlPath {tmp}/cm-%C\n"
                                                            "  ControlPersist 120\n"), "ControlMaster")):
                wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/ssh -F {config} "$@"\n')
                wrapper.chmod(0o755)
                ours = [*nsdash_cmd(), "-H", "far"]
                wait_answer([*ours, "list"], "nsdash on the far host")
                if label == "new connection":
                    r = subprocess.run([*ours, "spawn", "--detach", "-q", "-M", "bb", "-xbD", "/opt/busybox"],
                                       capture_output=True, text=True, timeout=60)
                    if r.returncode != 0:
                        raise SystemExit(f"cannot start the BusyBox machine on the far host: {r.stderr.strip()}")
                    wait_answer(["machinectl", "-H", "far", "status", "bb"], "machinectl -H far status bb")
                print(f"{label}: load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs; {args.runs} pairs"
                      " each, medians [min..max]; [spread of the pair ratios]", flush=True)
                pair(f"-H list ({label})", [*ours, "list"], "machinectl -H",
                     ["machinectl", "-H", "far", "--no-pager", "list"], args.runs, report)
                pair(f"-H status M ({label})", [*ours, "status", "bb"], "machinectl -H",
                     ["machinectl", "-H", "far", "--no-pager", "status", "bb"], args.runs, report)
                if base is not None:
                    before = ["env", f"PYTHONPATH={base[0]}", f"NSDASH_REMOTE_COMMAND={base[1]}", *ours]
                    for verb in (["list"], ["status", "bb"]):
                        pair(f"-H {verb[0]} ({label})", [*ours, *verb], f"nsdash {args.base}", [*before, *verb],
                             args.runs, report)
                pair(f"ssh far true ({label})", ["ssh", "far", "true"], "ssh far true", ["ssh", "far", "true"],
                     args.runs, report)
                if label == "ControlMaster":
                    poller_refresh(args.runs * 2, report)
            subprocess.run(["ssh", "-O", "exit", "far"], capture_output=True, timeout=30)
        finally:
            with shielded():  # (bench/stopping.py: a second Ctrl-C waits for this)
                stop(name)
    report.done()
    return 0


if __name__ == "__main__":
    sys.exit(main())
