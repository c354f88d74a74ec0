"""nsdash.cli.run: a verb that says TEARDOWN_FREE exits without the interpreter's teardown,
its output flushed first; anything the teardown still has to do (an atexit handler, a thread)
keeps the ordinary exit; a verb that says EXIT_AFTER_HANDLERS (the dashboard) runs the atexit
handlers first.  The launcher loads the verb with the garbage collector off; main()
turns it back on for every other verb.  Real interpreters, real pipes."""

import gc
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


def test_a_verb_that_exits_after_the_handlers_runs_them_once_and_exits_at_once():
    out = _run("atexit.register(lambda: print('handler ran'))\n_exit_now(3, handlers_first=True)\nprint('returned')")
    assert (out.returncode, out.stdout.split()) == (3, ["handler", "ran"])


def test_a_running_thread_keeps_the_ordinary_exit_even_after_the_handlers():
    out = _run("atexit.register(lambda: print('handler ran'))\n"
               "t = threading.Thread(target=lambda: (time.sleep(0.2), print('thread done')))\nt.start()\n"
               "_exit_now(3, handlers_first=True)\nprint('returned')")
    assert (out.returncode, out.stdout.split()) == (0, ["returned", "thread", "done", "handler", "ran"])


def test_the_dashboard_exits_after_the_handlers_with_the_collector_on():
    import nsdash.cli.dashboard

    assert nsdash.cli.dashboard.EXIT_AFTER_HANDLERS is True
    assert not getattr(nsdash.cli.dashboard, "TEARDOWN_FREE", False)


def test_a_running_thread_keeps_the_ordinary_exit():
    out = _run("t = threading.Thread(target=lambda: (time.sleep(0.2), print('thread done')))\nt.start()\n"
               "_exit_now(3)\nprint('returned')")
    assert (out.returncode, out.stdout.split()) == (0, ["returned", "thread", "done"])


def test_systemctl_and_journal_opt_in_and_other_verbs_do_not():
    """Only verbs that print through a buffer and close what they open say TEARDOWN_FREE."""
    import nsdash.cli.cgls
    import nsdash.cli.journal
    import nsdash.cli.spawn
    import nsdash.cli.systemctl

    assert nsdash.cli.systemctl.TEARDOWN_FREE is True
    assert nsdash.cli.journal.TEARDOWN_FREE is True
    assert not getattr(nsdash.cli.spawn, "TEARDOWN_FREE", False)
    assert not getattr(nsdash.cli.cgls, "TEARDOWN_FREE", False)


def test_main_turns_the_collector_back_on_except_for_short_verbs(monkeypatch):
    """What a verb finds: the collector on, unless its module says TEARDOWN_FREE."""
    import types

    from nsdash import cli

    probe = types.ModuleType("nsdash.cli._gcprobe")
    probe.__dict__["main"] = lambda args: 10 + int(gc.isenabled())
    monkeypatch.setitem(sys.modules, "nsdash.cli._gcprobe", probe)
    monkeypatch.setitem(cli.VERBS, "gcprobe", "_gcprobe")
    try:
        gc.disable()  # as bin/nsdash starts
        assert cli.main(["gcprobe"]) == 11
        probe.__dict__["TEARDOWN_FREE"] = True
        gc.disable()
        assert cli.main(["gcprobe"]) == 10
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_launcher_loads_the_verb_with_the_collector_off(tmp_path):
    """bin/nsdash and python -m nsdash: gc is off when nsdash.cli is imported."""
    fake = tmp_path / "nsdash"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "cli.py").write_text("import gc\nOFF = not gc.isenabled()\ndef run():\n    return 40 + OFF\n")
    (fake / "__main__.py").write_text((REPO / "nsdash" / "__main__.py").read_text())
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    launcher = subprocess.run([sys.executable, "-S", str(REPO / "bin" / "nsdash")], env=env, timeout=60)
    module = subprocess.run([sys.executable, "-m", "nsdash"], env=env, cwd=tmp_path, timeout=60)
    assert (launcher.returncode, module.returncode) == (41, 41)


def test_journal_follows_with_the_collector_on(tmp_path):
    """`journal -f` may run for days: it turns the collector back on; `-n` leaves it off."""
    code = ("import gc, sys\nfrom nsdash import cli\nfrom nsdash.journal import merge\n"
            "class Stop(Exception): pass\n"
            "def wait(self, timeout=None):\n    print('gc', gc.isenabled()); raise Stop\n"
            "merge.MergedLog.wait = wait\ngc.disable()\n"
            "try:\n    cli.main(['journal', '-D', sys.argv[1], '-f'])\nexcept Stop:\n    pass\n"
            "gc.disable(); cli.main(['journal', '-D', sys.argv[1], '-n', '1']); print('gc', gc.isenabled())\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60,
                         cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert out.stdout.split("\n")[0] == "gc True" and out.stdout.rstrip().endswith("gc False"), out.stderr
