"""The console's terminal model against plain pyte in instructions (callgrind), not time.

bench_console.py times both in one run, alternated; with other work on the
machine (8 helpers on 2 cores: load 5-12) its ratio moves by more than most
changes to the model.  The instructions an interpreter executes to feed the
same bytes hardly move with load, so this counts them (callgrind's Ir) for
the bench's two streams, `cat` and the coloured systemd boot, in 4 KiB reads:

  - plain pyte: pyte.Screen(80, 24) through pyte.ByteStream (the peer);
  - model: nsdash's TerminalModel(80, 24).

Each is the count of a run that feeds the stream less that of a run that only
sets up (imports, the stream, the screen), so imports do not count.  It is not
a time (pyte's per-character work and the model's per-line work differ in
cycles per instruction), but it ranks changes to the model at any load.

Run: .venv/bin/python bench/bench_console_ir.py [KiB, default 256]
(valgrind must be installed; about a minute a stream, pyte being most of it.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETUP = """
import sys
sys.path[:0] = [{root!r} + '/bench', {root!r}]
import pyte
from bench_console import {stream}, chunks
from nsdash.tui.console.terminal import TerminalModel
parts = chunks({stream}({kib} << 10))
screen = pyte.Screen(80, 24)
stream = pyte.ByteStream(screen)
model = TerminalModel(80, 24)
stream.feed(b"warm\\r\\n")
model.feed(b"warm\\r\\n")
"""


def instructions(code: str) -> int:
    """Instructions (callgrind's Ir) of `python -c CODE` (hash seed fixed: dict layouts repeat)."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
                          "-c", code], capture_output=True, text=True, env=env, timeout=900, cwd="/")
    for line in out.stderr.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1])
    raise SystemExit(f"callgrind gave no count: {out.stderr[-500:]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kib", nargs="?", type=int, default=256, help="KiB of each stream fed (default 256)")
    kib = ap.parse_args(argv).kib
    if shutil.which("valgrind") is None:
        print("bench_console_ir needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 1
    print(f"Console model against plain pyte, instructions to feed {kib} KiB (callgrind Ir, setup not counted)")
    for stream in ("cat_stream", "boot_stream"):
        setup = SETUP.format(root=str(ROOT), stream=stream, kib=kib)
        base = instructions(setup)
        pyte_ir = instructions(setup + "for p in parts: stream.feed(p)\n") - base
        model_ir = instructions(setup + "for p in parts: model.feed(p)\n") - base
        print(f"{stream.removesuffix('_stream'):<5} plain pyte {pyte_ir / 1e6:8.0f} MIr   model {model_ir / 1e6:7.1f} MIr"
              f"   ratio {pyte_ir / model_ir:5.1f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
