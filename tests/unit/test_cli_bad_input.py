"""Bad input to every verb: one line on stderr naming the problem and the fix, a non-zero exit,
no usage block and no traceback (the README's standard; nsdash.cli.args.ArgumentParser is
where a parse error becomes that line).  In-process: a parse error stops before any effect."""

from __future__ import annotations

import pytest

from nsdash.cli import VERBS
from nsdash.cli import main as nsdash_main

PUBLIC = sorted(v for v in VERBS if not v.startswith("_"))


def _one_line(capsys, argv: list[str]) -> str:
    rc = nsdash_main(argv)
    out = capsys.readouterr()
    assert rc != 0, (argv, out)
    assert out.err.startswith("nsdash: ") and out.err.count("\n") == 1, (argv, out.err)
    assert "usage:" not in out.err and "Traceback" not in out.err
    return out.err


@pytest.mark.parametrize("verb", PUBLIC)
def test_an_unknown_option_is_one_line_with_a_fix(capsys, verb):
    err = _one_line(capsys, [verb, "--no-such-option", "x"])
    assert "; " in err, err  # (argparse may name a missing argument first, as it checks those first)


@pytest.mark.parametrize("argv", [
    ["list", "extra"], ["list-images", "extra"], ["list", "-o", "yaml"], ["ps", "-o", "yaml"],
    ["kill", "--kill-whom=bogus", "m"], ["create"], ["clone", "one"], ["rename"], ["remove"],
    ["read-only", "a", "yes", "extra"], ["image-status"], ["export-tar"], ["import-tar"],
    ["set-property", "m"], ["shell", "-q"], ["dashboard", "-d", "soon"], ["--bogus"],
    ["debug", "-M", "m", "notapid"], ["profile", "-M", "m", "-F", "fast"], ["trace"],
])
def test_missing_extra_and_bad_values_are_one_line_with_the_verbs_help(capsys, argv):
    err = _one_line(capsys, argv)
    assert "--help'" in err, err  # the fix: where the verb's options are described


@pytest.mark.parametrize("argv", [
    ["cgls", "-M", ""], ["cgtop", "-b", "-n", "1", "-M", ""], ["ps", "-M", ""],  # not "no -M": the host
    ["cgls", "-M", ".."], ["cgtop", "-b", "-n", "1", "-M", "a/b"], ["journal", "-M", ""],
    ["journal", "-M", ".."], ["journal", "-M", "../cache"], ["journal", "-M", "a\x1b[2J"],
])
def test_every_machine_option_applies_the_name_rule(capsys, argv):
    err = _one_line(capsys, argv)
    assert "invalid machine name" in err and "\x1b" not in err, err


@pytest.mark.parametrize("argv", [["shell", "nobody@web"], ["shell", "--uid=1000", "web"],
                                  ["shell", "--uid", "nobody", "root@web", "/bin/id"]])
def test_shell_refuses_a_user_it_would_not_run_as(capsys, argv):
    """The command runs as root: a user named (machinectl's USER@NAME, --uid) was silently dropped."""
    assert "as root only" in _one_line(capsys, argv)


@pytest.mark.parametrize("env", [{"PYTHONIOENCODING": "ascii"},
                                 {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}])
def test_a_locale_that_is_not_utf8_gets_ascii_trees_not_a_traceback(tmp_path, env):
    """`nsdash cgls` under LANG=C without Python's UTF-8 mode died of UnicodeEncodeError on
    its first '├─'; systemd-cgls draws '|-' and '`-' there."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    for group in ("cpu/a.slice/x.scope", "cpu/b.slice"):
        (tmp_path / group).mkdir(parents=True)
    for d in (tmp_path / "cpu", tmp_path / "cpu/a.slice", tmp_path / "cpu/a.slice/x.scope", tmp_path / "cpu/b.slice"):
        (d / "cgroup.procs").write_text("")
    repo = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, "-S", str(repo / "bin" / "nsdash"), "cgls", "--all", f"--cgroup-root={tmp_path}"],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(repo), **env})
    assert (r.returncode, r.stderr) == (0, "")
    assert sorted(r.stdout.splitlines()[2:]) == ["  `-x.scope", "`-a.slice", "|-b.slice"], r.stdout


@pytest.mark.parametrize("item", ["=x", "1A=x", "A B=x", "A=\0"])
def test_shell_setenv_follows_spawns_rule(capsys, item):
    """`shell -E =x` reached the machine and failed there ("illegal environment variable name",
    status 126, no fix): -E is checked as spawn's is, before anything runs."""
    assert "--setenv" in _one_line(capsys, ["shell", "-E", item, "web", "/bin/true"])


def test_shell_setenv_name_alone_passes_the_callers_value(monkeypatch):
    from nsdash.cli import machinectl, shell

    seen = {}
    monkeypatch.setattr(shell, "shell", lambda name, command, env: seen.update(env) or 0)
    monkeypatch.setenv("NSDASH_TEST_VALUE", "kept")
    assert machinectl.main(["shell", "-E", "NSDASH_TEST_VALUE", "-E", "B=2", "web", "/bin/true"]) == 0
    assert seen == {"NSDASH_TEST_VALUE": "kept", "B": "2"}


@pytest.mark.parametrize("argv", [["cgls", "../.."], ["cgls", "/a/./b"], ["cgtop", "-b", "-n", "1", "/x/../.."]])
def test_control_group_paths_do_not_climb(capsys, argv):
    """`cgls -M NAME ../../..` showed the host's whole tree: the kernel resolved the '..'."""
    assert "'.' or '..'" in _one_line(capsys, argv)


def test_a_name_with_an_escape_is_shown_escaped_once(capsys):
    r"""'a\x1b[2J' was shown as 'a\\x1b[2J': printable()'s escape, then repr() doubling it."""
    assert "invalid machine name 'a\\x1b[2J';" in _one_line(capsys, ["status", "a\x1b[2J"])


@pytest.mark.parametrize("argv, words", [
    (["debug", "-M", "web", "--core", "/nonexistent/dir/core", "1"], "/nonexistent/dir is not a directory"),
    (["debug", "-M", "web", "--core", "/tmp", "1"], "--core /tmp is a directory"),
    (["profile", "-M", "web", "--flame", "/nonexistent/x.svg"], "/nonexistent is not a directory"),
])
def test_an_output_file_that_cannot_be_written_is_refused_before_the_work(capsys, argv, words):
    """gdb ran and then said "Failed to open '...' for output"; perf sampled for the whole
    duration before the flame graph's open() failed (a FileNotFoundError: not one line)."""
    assert words in _one_line(capsys, argv)
