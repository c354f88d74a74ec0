#!/usr/bin/env python3
"""Where `nsdash journal -M M -n 20` spends its instructions and system calls, against journalctl -D.

Issue 16 wants the verb within 3x `journalctl -D DIR -n 20`; wall times of a
20 ms command on a loaded machine move more than the changes being judged.
Instructions (callgrind's Ir) and system calls (strace -c) hardly move with
load, so this counts them, whole process each, in stages:

  python -S -c pass          the interpreter's floor (its teardown included; the verb has none)
  + import os                `import os` alone, which every nsdash module needs, then _exit
  + the verb's imports       the modules a `journal -M M -n 20` imports, then _exit
  nsdash journal -M M -n 20  the whole run through bin/nsdash as `make venv` installs it (launcher,
                             imports, read, print)
  journalctl -D DIR -n 20    the peer, on the machine's own journal directory

The machine M is the Debian demo tree booted ephemeral (-x) for the run and
powered off at the end, as in bench_verbs.py, unless --machine names one that runs
(with NSDASH_STATE_DIR=/run/nsdash set: a bench keeps its machines' state apart).
--peer DIR counts another checkout's run beside this one's (the base, say /work/main).

Run as root: .venv/bin/python bench/bench_journal_ir.py [--machine NAME] [--peer DIR]
(valgrind and strace must be installed.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from bench_verbs import boot, stop  # noqa: E402
from report import compile_checkout, installed_launcher, need_root  # noqa: E402

PYTHON = sys.executable
SITE = f"{sys.prefix}/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"  # systemd-python
# After the floor's path, as bin/nsdash puts it; the collector off as there; no teardown, as the verb has none.
OS = "import gc, posix; gc.disable(); import os; posix._exit(0)"
VERB_IMPORTS = (f"import gc, posix, sys; gc.disable(); sys.path.append({SITE!r}); import nsdash.cli, nsdash.cli.journal, "
                "nsdash.journal.filters, nsdash.journal.format, nsdash.journal.merge; posix._exit(0)")


def _env(repo: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(repo))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # compiled once, as an installed wheel is
    env.pop("COLUMNS", None)
    return env


def instructions(argv: list[str], env: dict[str, str] | None) -> int:
    """Instructions (callgrind's Ir) of the whole process ARGV."""
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, timeout=300, cwd="/")
    for line in out.stderr.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1])
    raise SystemExit(f"callgrind gave no count for {argv}: {out.stderr[-500:]}")


def system_calls(argv: list[str], env: dict[str, str] | None) -> int:
    """System calls (strace -c -f's total) of the whole process ARGV."""
    out = subprocess.run(["strace", "-f", "-c", "-o", "/dev/stderr", *argv], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, env=env, timeout=60, cwd="/")
    for line in out.stderr.splitlines():
        if line.rstrip().endswith(" total"):
            return int(line.split()[3])
    raise SystemExit(f"strace gave no total for {argv}: {out.stderr[-500:]}")


def count(name: str, journal_dir: str, launchers: dict[Path, str]) -> None:
    repos = list(launchers)
    jc = ["journalctl", "-D", journal_dir, "-n", "20", "--no-pager"]
    floor = instructions([PYTHON, "-S", "-c", "pass"], None)
    print(f"{'':34}" + "".join(f"{str(r)[-24:]:>26}" for r in repos) + "   (M instructions, system calls)")

    def row(label: str, per_repo) -> None:
        print(f"{label:34}" + "".join(f"{v:>26}" for v in (per_repo(r) for r in repos)), flush=True)

    bare = instructions([PYTHON, "-S", "-c", "import posix; posix._exit(0)"], None)
    row("python -S -c pass (floor)", lambda r: f"{floor / 1e6:.2f}")
    row("  the same without its teardown", lambda r: f"{bare / 1e6:.2f}")
    row("+ import os, then _exit", lambda r: f"{instructions([PYTHON, '-S', '-c', OS], _env(r)) / 1e6:.2f}")
    row("+ the verb's imports, then _exit", lambda r: f"{instructions([PYTHON, '-S', '-c', VERB_IMPORTS], _env(r)) / 1e6:.2f}")

    def whole(r: Path) -> str:
        argv = [PYTHON, "-S", launchers[r], "journal", "-M", name, "-n", "20"]
        ir = instructions(argv, _env(r))
        return f"{ir / 1e6:.2f} ({(ir - floor) / 1e6:+.2f}), {system_calls(argv, _env(r))}"

    row("nsdash journal -M M -n 20", whole)
    print(f"{'journalctl -D DIR -n 20':34}{instructions(jc, None) / 1e6:>26.2f}, {system_calls(jc, None)} system calls")
    print(f"{'python -S -c pass':34}{'':>26} {system_calls([PYTHON, '-S', '-c', 'pass'], None)} system calls")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--machine", metavar="NAME", help="a running machine to read (default: boot the Debian tree)")
    ap.add_argument("--peer", type=Path, action="append", default=[], metavar="DIR",
                    help="another checkout to count beside this one (repeatable)")
    args = ap.parse_args()
    need_root("bench_journal_ir", "it reads machines' journals and boots one")
    for tool in ("valgrind", "strace"):
        if shutil.which(tool) is None:
            print(f"bench_journal_ir needs {tool} (apt-get install {tool})", file=sys.stderr)
            return 1
    repos = [ROOT, *args.peer]
    for repo in repos:
        compile_checkout(repo)
    print(f"load average {os.getloadavg()[0]:.2f} (counts hardly move with it)")
    with tempfile.TemporaryDirectory(prefix="nsdash-bench-launcher-") as tmp:
        launchers = {r: installed_launcher(r, Path(tmp, str(i))) for i, r in enumerate(repos)}
        if args.machine:
            from nsdash.inside.target import resolve

            count(args.machine, f"/proc/{resolve(args.machine).leader}/root/var/log/journal", launchers)
            return 0
        name = f"benchjournalir{os.getpid()}"
        try:
            leader = boot(name)
            count(name, f"/proc/{leader}/root/var/log/journal", launchers)
        finally:
            stop(name)
    return 0

if __name__ == "__main__":
    sys.exit(main())
