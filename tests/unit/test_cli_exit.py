"""nsdash.cli.run: a verb that says TEARDOWN_FREE exits without the interpreter's teardown,
its output flushed first; anything the teardown still has to do (an atexit handler, a thread)
keeps the ordinary exit.  Real interpreters, real pipes."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PRELUDE = "import sys, atexit, threading, time\nfrom nsdash.cli import _exit_now\n"


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", PRELUDE + code], capture_output=True, text=True, env=env,
                          timeout=60)


def test_exit_now_flushes_both_streams_and_keeps_the_status():
    # More than a pipe buffer, without a newline: all of it must have been written by os._exit.
    out = _run("sys.stdout.write('x' * 200000); sys.stderr.write('warn'); _exit_now(3)\n"
               "print('not reached')")
    assert out.returncode == 3
    assert out.stdout == "x" * 200000
    assert out.stderr == "warn"


def test_an_atexit_handler_keeps_the_ordinary_exit():
    out = _run("atexit.register(lambda: print('handler ran'))\n_exit_now(3)\nprint('returned')")
    assert (out.returncode, out.stdout.split()) == (0, ["returned", "handler", "ran"])


def test_a_running_thread_keeps_the_ordinary_exit():
    out = _run("t = threading.Thread(target=lambda: (time.sleep(0.2), print('thread done')))\nt.start()\n"
               "_exit_now(3)\nprint('returned')")
    assert (out.returncode, out.stdout.split()) == (0, ["returned", "thread", "done"])


def test_systemctl_opts_in_and_other_verbs_do_not():
    """Only verbs that print through a buffer and close what they open say TEARDOWN_FREE."""
    import nsdash.cli.cgls
    import nsdash.cli.spawn
    import nsdash.cli.systemctl

    assert nsdash.cli.systemctl.TEARDOWN_FREE is True
    assert not getattr(nsdash.cli.spawn, "TEARDOWN_FREE", False)
    assert not getattr(nsdash.cli.cgls, "TEARDOWN_FREE", False)
