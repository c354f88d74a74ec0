"""A verb's imports, and a foreground spawn's option parsing and module loading, run with
cyclic collection held off, and it is back on after with what they made frozen
(nsdash.cli._import_verb, cli/spawn.main).

Checked in a fresh interpreter (the modules must really load) with gc.callbacks, which see
every collection: without the hold, loading spawn's modules makes several.
"""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = r"""
import gc, sys
import nsdash.cli
events = []
gc.callbacks.append(lambda phase, info: events.append(phase))
mod = nsdash.cli._import_verb("spawn", freeze=True)
assert gc.isenabled(), "collection stays off after the import"
frozen = gc.get_freeze_count()
assert frozen > 10000, f"what the import made is frozen (gc.freeze): {frozen}"
assert not events, f"collections while spawn's modules loaded: {len(events) // 2}"
ran = []
def run(spec):
    before = len(events)  # first, before anything that allocates (the next allocation collects)
    ran.append((before, gc.isenabled()))
    return 0
mod._run = run
del events[:]  # setting up the probe may collect (the count went on while imports ran)
assert mod.main(["-q", "-M", "gc-probe", "-D", sys.argv[1], "/bin/true"]) == 0
assert "nsdash.machines.run" in sys.modules, "the foreground run's modules load under the hold"
assert ran and ran[0][0] == 0, f"collections while the options were read: {ran[0][0] // 2}"
assert ran[0][1], "collection is back on before the machine starts"
assert gc.get_freeze_count() > frozen, "the foreground run's modules are frozen too"
gc.disable()
count = gc.get_freeze_count()
nsdash.cli._import_verb("cgls", freeze=False)  # main(argv) called by a program, not the command
assert not gc.isenabled(), "a caller's own gc.disable() is kept"
assert gc.get_freeze_count() == count, "nothing frozen but for the process's own command"
print("ok")
"""


def test_imports_and_option_parsing_make_no_collection(tmp_path):
    (tmp_path / "usr").mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-S", "-c", PROBE, str(tmp_path)], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_the_probe_can_fail_without_the_hold(tmp_path):
    """The same imports with collection left on do collect: the check above can fail."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    code = ("import gc; events = []; gc.callbacks.append(lambda p, i: events.append(p)); "
            "import nsdash.cli.spawn, nsdash.machines.run; print(len(events))")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0 and int(out.stdout) > 0, out.stderr[-2000:]
