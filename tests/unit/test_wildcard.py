"""system/wildcard: fnmatch.fnmatchcase's answers without re."""

import fnmatch
import itertools
import random
import subprocess
import sys
from pathlib import Path

import pytest

from nsdash.system import wildcard

REPO = Path(__file__).resolve().parents[2]


def test_every_short_pattern_answers_as_fnmatchcase():
    """Every pattern of up to 4 of `*?ab/` (and a `\\`, a newline, a `[`) against every name of up to 4 of `ab/`."""
    names = ["".join(t) for k in range(5) for t in itertools.product("ab/\n", repeat=k)]
    patterns = ["".join(t) for k in range(5) for t in itertools.product("*?ab/", repeat=k)]
    patterns += ["a\\*", "\\", "*\n", "[ab]*", "[!a]?", "a[", "*]"]
    wrong = [(n, p) for p in patterns for n in names if wildcard.fnmatchcase(n, p) != fnmatch.fnmatchcase(n, p)]
    assert wrong == []


def test_unit_and_preset_patterns():
    rng = random.Random(16)
    units = ["systemd-networkd.service", "getty@tty1.service", "remote-fs.target", "a.b.c", ""]
    for pattern in ["*", "systemd-*.service", "getty@.service", "*@*.service", "*.t?rget", "??", "*-*-*"]:
        for unit in units + ["".join(rng.choice("s-.*?@") for _ in range(8)) for _ in range(200)]:
            assert wildcard.fnmatchcase(unit, pattern) == fnmatch.fnmatchcase(unit, pattern), (unit, pattern)


@pytest.mark.parametrize("pattern, loads_re", [("systemd-*.servic?", False), ("[a-z]*", True)])
def test_re_is_loaded_only_for_a_set(pattern, loads_re):
    code = ("import sys; from nsdash.system import wildcard; "
            f"print(wildcard.fnmatchcase('systemd-x.service', {pattern!r}), 're' in sys.modules)")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO)})
    assert out.stdout.split() == ["True", str(loads_re)]
