"""A bench killed with SIGTERM (or SIGHUP) still runs its finally blocks and removes its state
directory (bench/stopping.py, installed by bench/report.py); a cleanup in shielded() runs to its
end through a second signal.  A bench killed so once left 21 machines running.

Not timed: the child says where it is on its stdout and waits on its stdin.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"

CHILD = """
import os, sys
sys.path.insert(0, {bench!r})
import report  # what every bench imports: the private state directory, the signal handlers
from stopping import shielded

print("state", os.environ.get("NSDASH_STATE_DIR", "-"), flush=True)
try:
    print("started", flush=True)
    sys.stdin.readline()  # (killed here)
finally:
    with shielded():
        print("cleaning", flush=True)
        sys.stdin.readline()  # a second signal comes while the cleanup waits here
        print("cleaned", flush=True)
"""


def _child() -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "NSDASH_STATE_DIR"}  # report.py makes its own
    return subprocess.Popen([sys.executable, "-c", CHILD.format(bench=str(BENCH))], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _expect(proc: subprocess.Popen[str], word: str) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.split(" ", 1)[0].strip() == word, (line, proc.stderr.read() if proc.stderr else "")
    return line.strip()


def _run_to_the_end(sig: signal.Signals) -> tuple[int, str, str]:
    proc = _child()
    try:
        state = _expect(proc, "state").split(" ", 1)[1]
        _expect(proc, "started")
        proc.send_signal(sig)
        _expect(proc, "cleaning")  # the finally block runs: the signal unwound the main thread
        proc.send_signal(signal.SIGTERM)  # a second one, while the cleanup waits
        proc.send_signal(signal.SIGINT)
        assert proc.stdin is not None
        proc.stdin.write("go on\n")
        proc.stdin.flush()
        _expect(proc, "cleaned")  # ... did not cut it short
        out, err = proc.communicate(timeout=60)
        return proc.returncode, state, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigterm_runs_the_finally_blocks_and_a_second_signal_waits_for_the_cleanup():
    status, state, err = _run_to_the_end(signal.SIGTERM)
    assert status == 128 + signal.SIGTERM, err  # the first signal's status, as a shell reports it
    assert "Traceback" not in err
    if state != "-":  # root: report.py made a state directory of the bench's own; it is gone
        assert state.startswith("/run/nsdash-bench-") and not os.path.exists(state)


def test_sighup_unwinds_too():
    status, _state, err = _run_to_the_end(signal.SIGHUP)
    assert status == 128 + signal.SIGHUP, err


def test_a_handler_a_bench_set_itself_is_kept():
    code = f"""
import signal, sys
signal.signal(signal.SIGTERM, signal.SIG_IGN)
sys.path.insert(0, {str(BENCH)!r})
import report
print(signal.getsignal(signal.SIGTERM) is signal.SIG_IGN, signal.getsignal(signal.SIGHUP) is not signal.SIG_DFL)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "NSDASH_STATE_DIR": "/nonexistent"}, check=True).stdout
    assert out.split() == ["True", "True"]


def test_a_signal_held_by_a_cleanup_outside_any_unwinding_raises_after_it():
    code = f"""
import sys
sys.path.insert(0, {str(BENCH)!r})
import report
from stopping import shielded
with shielded():
    print("in", flush=True)
    sys.stdin.readline()
    print("done", flush=True)
print("not reached", flush=True)
"""
    proc = subprocess.Popen([sys.executable, "-c", code], text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "NSDASH_STATE_DIR": "/nonexistent"})
    try:
        _expect(proc, "in")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate("go on\n", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out.split() == ["done"] and proc.returncode == 128 + signal.SIGTERM, err


VERBS_CHILD = """
import subprocess, sys
sys.path.insert(0, {bench!r})
import bench_verbs as bv

def boot(name):
    print("booted", flush=True)
    sys.stdin.readline()  # (killed here)

def run_nsdash(*args, timeout=60):  # the machine verbs the bench's cleanup runs, one at a time
    print("nsdash", args[0], flush=True)
    sys.stdin.readline()  # a second signal comes while the poweroff waits here
    print("done", args[0], flush=True)
    return subprocess.CompletedProcess(args, 0, "", "")

bv.boot, bv.run_nsdash = boot, run_nsdash
bv.machine_pairs(["nsdash"], lambda *a: None, 1, None)
"""


def test_bench_verbs_powers_its_machine_off_through_a_second_signal():
    """bench_verbs.py's machine (the Debian tree, booted for the -M pairs) is powered off in a
    finally block that a second SIGTERM does not cut short: the poweroff it waits for ends."""
    proc = subprocess.Popen([sys.executable, "-c", VERBS_CHILD.format(bench=str(BENCH))], text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "NSDASH_STATE_DIR": "/nonexistent"})
    try:
        _expect(proc, "booted")
        proc.send_signal(signal.SIGTERM)
        assert _expect(proc, "nsdash") == "nsdash poweroff"
        proc.send_signal(signal.SIGTERM)
        assert proc.stdin is not None
        proc.stdin.write("go on\n")
        proc.stdin.flush()
        assert _expect(proc, "done") == "done poweroff"
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err
