"""The README's Security section states how many tests check it: those figures are the suite's.

Issue 15 asks the Security section to state the rule and the counts; counts
written by hand go stale as tests are added (the attack and fault tiers said
154 with 162 collected).  pytest's own collection is the source: this test
fails, naming the figure to write, whenever the README and the suite disagree.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@functools.cache
def _node_ids() -> tuple[str, ...]:
    """Every test item pytest collects (parameters included) in the tiers the README counts: one run."""
    r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                        "tests/security", "tests/faults", "tests/unit/test_text.py"],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    ids = tuple(line for line in r.stdout.splitlines() if "::" in line)
    assert r.returncode == 0 and ids, r.stdout[-2000:] + r.stderr[-2000:]
    return ids


def _collected(*paths: str) -> int:
    """How many test items pytest collects under PATHS, as `pytest --collect-only` counts them."""
    return sum(1 for node in _node_ids() if node.startswith(paths))


def _security() -> str:
    readme = (REPO / "README.md").read_text()
    return readme.split("\n## Security\n", 1)[1].split("\n## ", 1)[0]


def _figure(pattern: str) -> tuple[int, ...]:
    m = re.search(pattern, " ".join(_security().split()))  # the README wraps its lines anywhere
    assert m, f"the Security section no longer says {pattern!r}"
    return tuple(int(g.replace(",", "")) for g in m.groups())


def test_the_attack_and_fault_tiers_count_is_pytests():
    stated = _figure(r"all passing with nothing left behind \(pytest.s counts[^)]*\): ([\d,]+) tests")
    assert stated == (_collected("tests/security/", "tests/faults/"),), "README Security: the tiers' count"


def test_the_sanitiser_count_is_pytests():
    stated = _figure(r"Checked by ([\d,]+) unit tests")
    assert stated == (_collected("tests/unit/test_text.py"),), "README Security: the sanitiser's unit tests"


def test_the_bad_input_counts_are_the_tests_own():
    spec = importlib.util.spec_from_file_location("bad_input_cli", REPO / "tests/faults/test_bad_input_cli.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    chosen, random_, missing = len(mod.chosen_cases()), mod.RANDOM_EXAMPLES, len(mod.MISSING_AND_ODD)
    stated = _figure(r"([\d,]+) bad command-line inputs \(([\d,]+) chosen, ([\d,]+) random, ([\d,]+) missing arguments")
    assert stated == (chosen + random_ + missing, chosen, random_, missing), "README Security: the bad inputs"
