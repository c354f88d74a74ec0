"""A foreground spawn reads its options and loads its run's modules with cyclic collection held
off, and turns it back on before the machine starts, with what was made so far frozen
(cli/spawn.main; the launcher holds it off for the verb's own import, nsdash.cli).

Checked in a fresh interpreter (the modules must really load) with gc.callbacks, which see
every collection: without the hold, loading the foreground run's modules makes several.
"""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = r"""
import gc, sys
import nsdash.cli.spawn as mod
assert "nsdash.machines.run" not in sys.modules
events = []
gc.callbacks.append(lambda phase, info: events.append(phase))
ran = []
def run(spec):
    before = len(events)  # first, before anything that allocates (the next allocation collects)
    ran.append((before, gc.isenabled(), gc.get_freeze_count()))
    return 0
mod._run = run
gc.enable()
frozen = gc.get_freeze_count()
del events[:]
assert mod.main(["-q", "-M", "gc-probe", "-D", sys.argv[1], "/bin/true"]) == 0
assert "nsdash.machines.run" in sys.modules, "the foreground run's modules load under the hold"
assert ran and ran[0][0] == 0, f"collections while the options were read: {ran[0][0] // 2}"
assert ran[0][1], "collection is back on before the machine starts"
assert ran[0][2] > frozen + 10000, f"what was made is frozen (gc.freeze): {ran[0][2]} after {frozen}"
gc.disable()
mod.main(["-q", "-M", "gc-probe", "-D", sys.argv[1], "--dry-run", "/bin/true"])
assert not gc.isenabled(), "a caller's own gc.disable() is kept"
print("ok")
"""


def test_option_parsing_and_run_modules_make_no_collection(tmp_path):
    (tmp_path / "usr").mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-S", "-c", PROBE, str(tmp_path)], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_the_probe_can_fail_without_the_hold():
    """The same modules loaded with collection on do collect: the check above can fail."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    code = ("import gc; import nsdash.cli.spawn; gc.enable(); events = []; "
            "gc.callbacks.append(lambda p, i: events.append(p)); "
            "import nsdash.machines.run; print(len(events))")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0 and int(out.stdout) > 0, out.stderr[-2000:]
