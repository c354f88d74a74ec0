"""Every spawn option, given an empty value and garbage, through the REAL command line.

(The options engineer's property test drives the parser in-process; this one
runs `nsdash spawn` as users do.)  --dry-run keeps valid combinations from
starting anything.  Whatever the input: exit 0, or a non-zero exit with one
line on stderr starting 'nsdash: ' -- never a traceback.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import NSDASH, REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nsdash.launcher.options import NO_ARG, OPTIONS

WITH_VALUE = [o for o in OPTIONS if o.arg != NO_ARG and o.long]
GARBAGE = ["", " ", ":", "::", "../../..", "/nonexistent/x", "-1", "99999999999999999999", "a" * 5000,
           "ü\u202e\u200b", "%s%n", "host:ro:norbind:extra", "\x7f", "1e309"]
_tried: list[int] = []


def _spawn(tree, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([*NSDASH, "spawn", "--dry-run", "-q", "-D", str(tree), *args, "/bin/true"],
                          capture_output=True, text=True, cwd=REPO, timeout=60)


def _clean(r: subprocess.CompletedProcess) -> bool:
    if "Traceback" in r.stderr or "Traceback" in r.stdout:
        return False
    if r.returncode == 0:
        return True
    return r.stderr.startswith("nsdash: ") and r.stderr.count("\n") == 1


def chosen_cases() -> list[list[str]]:
    """Every option that takes a value, and -M, -E, -u, with each GARBAGE value (the README counts them)."""
    cases = [[f"--{o.long}={v}"] for o in WITH_VALUE for v in GARBAGE]
    return cases + [["-M", v] for v in GARBAGE] + [["-E", v] for v in GARBAGE] + [["-u", v] for v in GARBAGE]


def test_every_option_with_an_empty_value_and_garbage(busybox_tree):
    cases = chosen_cases()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda a: (a, _spawn(busybox_tree, a)), cases))
    bad = [(a, r.returncode, r.stderr[-300:]) for a, r in results if not _clean(r)]
    assert bad == []
    refused = sum(1 for _, r in results if r.returncode != 0)
    _tried.append(len(cases))
    print(f"{len(cases)} bad inputs tried, {refused} refused with one line, none crashed")
    assert refused > len(cases) // 2  # garbage is mostly refused, not silently accepted


def test_empty_values_are_refused_where_nspawn_refuses_them(busybox_tree):
    for opt in ("directory", "kill-signal", "link-journal", "resolv-conf", "timezone", "console", "register",
                "uuid", "private-users-ownership", "bind", "tmpfs"):
        r = _spawn(busybox_tree, [f"--{opt}="])
        assert r.returncode != 0 and _clean(r), (opt, r.stderr)


_values = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                  max_size=40)


RANDOM_EXAMPLES = 40


@settings(max_examples=RANDOM_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(WITH_VALUE), value=_values, again=st.sampled_from(WITH_VALUE))
def test_random_values_never_crash_the_cli(busybox_tree, option, value, again):
    r = _spawn(busybox_tree, [f"--{option.long}={value}", f"--{again.long}", value])
    assert _clean(r), (option.long, again.long, value, r.stderr[-500:])


MISSING_AND_ODD = [["-D"], ["--bind"], ["-M"], ["--", "-D", "/"], ["--no-such-option"], ["-bbbbbbbb"],
                   ["-D", "/dev/null"], ["-D", "/proc/self"]]


@pytest.mark.parametrize("argv", MISSING_AND_ODD)
def test_missing_arguments_and_odd_trees(argv):
    r = subprocess.run([*NSDASH, "spawn", "--dry-run", *argv], capture_output=True, text=True, cwd=REPO,
                       timeout=60)
    assert r.returncode != 0 and _clean(r), (argv, r.stderr)
