"""Every bench script answers --help with its usage and exit 0: no traceback (bench_console read
sys.argv[1] by hand and ended in a ValueError), and no bench run instead (bench_text ran).  A
bench that needs root says so in one line, before it makes anything."""

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


def _answers(commands: dict[str, list[str]]) -> dict[str, tuple[str, str, int]]:
    """Each command's (stdout, stderr, exit status), by name."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # All at once: each is an interpreter start and a bench's imports, a few hundred ms.
    running = {name: subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                                      env=env)
               for name, argv in commands.items()}
    try:
        answers = {name: (*proc.communicate(timeout=120), proc.returncode) for name, proc in running.items()}
    finally:
        for proc in running.values():  # one that hung: not left behind
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return answers


def test_every_bench_script_answers_help_with_its_usage():
    answers = _answers({p.name: [sys.executable, str(p), "--help"] for p in _scripts()})
    for name, (out, err, code) in answers.items():
        assert (code, err) == (0, ""), f"{name} --help: exit {code}\n{err}"
        assert out.startswith(f"usage: {name} "), f"{name} --help printed no usage line:\n{out[:300]}"


def test_a_bench_that_needs_root_says_so_in_one_line_when_it_is_not():
    needing = [p for p in _scripts() if "need_root(" in p.read_text()]
    assert len(needing) >= 8
    # As a user who is not root runs it (with no arguments); geteuid() answers for one.
    not_root = ("import os, runpy, sys\nos.geteuid = lambda: 1000\n"
                "sys.argv = [sys.argv[1]]\nrunpy.run_path(sys.argv[0], run_name='__main__')\n")
    answers = _answers({p.name: [sys.executable, "-c", not_root, str(p)] for p in needing})
    for name, (_out, err, code) in answers.items():
        assert code == 1 and err.count("\n") == 1, f"{name}: exit {code}\n{err}"
        assert err.startswith(f"{name.removesuffix('.py')} needs root (") and err.endswith("): run it as root\n"), err


def test_bench_console_takes_what_the_summary_passes_it(monkeypatch):
    """bench/summary.py runs bench_console with nothing (24 MB) or `4` (--quick), and --json."""
    monkeypatch.syspath_prepend(str(BENCH))
    from bench_console import parse_args
    from summary import BENCHES

    default, quick = BENCHES["console"]
    assert vars(parse_args([*default, "--json"])) == {"mb": 24.0, "json": True}
    assert vars(parse_args([*quick, "--json"])) == {"mb": 4.0, "json": True}
    assert vars(parse_args([])) == {"mb": 24.0, "json": False}
