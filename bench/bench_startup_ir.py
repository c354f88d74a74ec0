"""Start-up cost in instructions: what `nsdash spawn` imports, counted by callgrind.

Wall and CPU times of a 40 ms command move by more than the changes being
judged when other work shares the machine (8 helpers on 2 cores: load 5-12).
The number of instructions an interpreter executes to start and import a
module set hardly moves with load (run to run it varies by well under 1%,
hash randomisation), so import trimming and interpreters can be compared at
any load.  This counts, for each interpreter given:

  - the empty start (`-S -c pass`): the interpreter's own floor;
  - the spawn path's imports (the modules a foreground spawn imports before and
    after its first clone, as tests/unit/test_startup_imports.py names them);
  - pathlib's share of them (what it and its imports cost on top of the rest).

It is not a time: a PGO build spends fewer cycles per instruction too, and a
spawn's system calls and its children are not counted.  bench_spawn.py is the
wall-time comparison with systemd-nspawn.

Run: .venv/bin/python bench/bench_startup_ir.py [--python PY ...] [--repo DIR]
(valgrind must be installed; DIR, default this checkout, is put on PYTHONPATH.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPAWN_PATH = "import nsdash.cli, nsdash.cli.spawn, nsdash.machines.run, nsdash.launcher.container"
# The spawn path's standard-library floor without pathlib (what remains if it went).
STDLIB = "import contextlib, ctypes, signal, struct, termios, tty, select, fcntl, gc, resource"


def instructions(python: str, code: str, repo: Path) -> int:
    """Instructions (callgrind's Ir) of `PYTHON -S -c CODE`, with REPO on the path."""
    env = dict(os.environ, PYTHONPATH=str(repo))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # compiled once, as an installed wheel is
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", python, "-S", "-c",
                          code], capture_output=True, text=True, env=env, timeout=300, cwd="/")  # not a checkout
    for line in out.stderr.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1])
    raise SystemExit(f"callgrind gave no count for {python} -c {code!r}: {out.stderr[-500:]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", action="append", help="an interpreter to count (repeatable; default this one)")
    ap.add_argument("--repo", type=Path, default=ROOT, help="the checkout to import nsdash from")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        print("bench_startup_ir needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 1
    pythons = args.python or [sys.executable]
    for python in pythons:  # compile the checkout's bytecode with each (the same for one minor version)
        subprocess.run([python, "-m", "compileall", "-q", str(args.repo / "nsdash")], check=True)
    print(f"{'interpreter':<48} {'empty start':>12} {'spawn imports':>14} {'of which pathlib':>17}  (M instructions)")
    for python in pythons:
        empty = instructions(python, "pass", args.repo)
        spawn = instructions(python, SPAWN_PATH, args.repo)
        without = instructions(python, STDLIB, args.repo)
        with_pathlib = instructions(python, STDLIB + ", pathlib", args.repo)
        print(f"{python:<48} {empty / 1e6:12.1f} {(spawn - empty) / 1e6:14.1f} {(with_pathlib - without) / 1e6:17.1f}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
