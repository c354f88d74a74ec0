"""Every bench script answers --help with its usage and exit 0: no traceback (bench_console read
sys.argv[1] by hand and ended in a ValueError), and no bench run instead (bench_text ran)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
LIBRARIES = {"report.py", "stopping.py"}  # imported by the benches, never run


def _scripts() -> list[Path]:
    return sorted(p for p in BENCH.glob("*.py") if 'if __name__ == "__main__":' in p.read_text())


def test_the_scripts_are_every_bench_file_but_the_libraries():
    assert {p.name for p in BENCH.glob("*.py")} - {p.name for p in _scripts()} == LIBRARIES
    assert len(_scripts()) >= 20


def test_every_bench_script_answers_help_with_its_usage():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # All at once: each is an interpreter start and the bench's imports, a few hundred ms.
    running = {p.name: subprocess.Popen([sys.executable, str(p), "--help"], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
               for p in _scripts()}
    try:
        answers = {name: (*proc.communicate(timeout=120), proc.returncode) for name, proc in running.items()}
    finally:
        for proc in running.values():  # one that hung: not left behind
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for name, (out, err, code) in answers.items():
        assert (code, err) == (0, ""), f"{name} --help: exit {code}\n{err}"
        assert out.startswith(f"usage: {name} "), f"{name} --help printed no usage line:\n{out[:300]}"
