"""Output that cannot be written (`nsdash VERB > /dev/full`): one line on stderr, exit status 1,
no traceback, for every kind of verb, buffered or not; a reader that goes away (`| head`) is
still no error.  Real interpreters writing to the real /dev/full and real pipes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINE = "nsdash: write error: No space left on device; free some space or send the output elsewhere\n"


def _nsdash(args: list[str], stdout, unbuffered: bool) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("NSDASH_DEBUG", None)
    env.pop("NSDASH_HOST", None)
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    else:
        env.pop("PYTHONUNBUFFERED", None)  # stdout to a file is block-buffered, as users have it
    return subprocess.run([sys.executable, "-S", str(REPO / "bin" / "nsdash"), *args], stdout=stdout,
                          stderr=subprocess.PIPE, text=True, env=env, timeout=60, cwd=REPO)


# One of each: the dispatcher's own text, a machinectl verb, a monitor verb, the teardown-free
# journal, and argparse's help (printed by nsdash.cli.quickparse, then SystemExit).
CASES = [["--help"], ["--version"], ["list"], ["cgls"], ["journal", "-D", "{dir}", "-n", "3"],
         ["journal", "--help"], ["systemctl", "--help"]]


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("args", CASES, ids=lambda a: " ".join(a))
def test_a_full_disk_is_one_line_and_status_1(tmp_path, args, unbuffered):
    argv = [a.format(dir=tmp_path) for a in args]
    with open("/dev/full", "w") as full:
        out = _nsdash(argv, full, unbuffered)
    assert (out.returncode, out.stderr) == (1, LINE)


def test_journal_into_a_closed_pipe_is_no_error(tmp_path):
    """`nsdash journal ... | head -1` and the reader gone before a byte: status 0, stderr empty."""
    for unbuffered in (False, True):
        r, w = os.pipe()
        os.close(r)
        with os.fdopen(w, "w") as pipe:
            out = _nsdash(["journal", "-D", str(tmp_path), "-n", "3"], pipe, unbuffered)
        assert (out.returncode, out.stderr) == (0, "")
        r, w = os.pipe()
        os.close(r)
        with os.fdopen(w, "w") as pipe:  # the version line: printed outside any verb
            out = _nsdash(["--version"], pipe, unbuffered)
        assert (out.returncode, out.stderr) == (0, "")


def test_other_os_errors_are_not_called_write_errors(monkeypatch):
    """An OSError that is not our output failing keeps its traceback (it is a bug to fix)."""
    import errno
    import types

    from nsdash import cli

    probe = types.ModuleType("nsdash.cli._oserrprobe")

    def fail(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/var/lib/machines/x")

    probe.__dict__["main"] = fail
    monkeypatch.setitem(sys.modules, "nsdash.cli._oserrprobe", probe)
    monkeypatch.setitem(cli.VERBS, "oserrprobe", "_oserrprobe")
    with pytest.raises(OSError):
        cli.main(["oserrprobe"])


def test_systemctl_output_buffer_does_not_write_nothing(monkeypatch):
    """systemctl's _Out.flush runs in a `finally`: with nothing to print it must not write, or a
    full disk replaces the error in flight (machine unreachable...) with a write error."""
    import io

    from nsdash.cli.systemctl import _Out

    with io.TextIOWrapper(open("/dev/full", "wb", buffering=0), write_through=True) as full:
        monkeypatch.setattr(sys, "stdout", full)
        out = _Out("short")
        out.flush()  # on main this raised OSError(ENOSPC)
        out.text.append("x\n")
        with pytest.raises(OSError):
            out.flush()


CLOSED_LINE = "nsdash: write error: Bad file descriptor; run it with its standard output open\n"


@pytest.mark.parametrize("redirect", [">&-", "1</dev/null"], ids=["closed", "read-only"])
@pytest.mark.parametrize("args", CASES, ids=lambda a: " ".join(a))
def test_a_closed_stdout_is_one_line_and_status_1(tmp_path, args, redirect):
    """`nsdash list >&-`: Python leaves sys.stdout None; a verb that prints says so in one line,
    as coreutils' `ls >&-` does, instead of an AttributeError's traceback.  So too with a
    descriptor 1 opened read-only (`1</dev/null`: each write fails with EBADF)."""
    argv = [a.format(dir=tmp_path) for a in args]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("NSDASH_DEBUG", None)
    env.pop("NSDASH_HOST", None)
    out = subprocess.run(["sh", "-c", f'exec "$@" {redirect}', "sh", sys.executable, "-S",
                          str(REPO / "bin" / "nsdash"), *argv], stderr=subprocess.PIPE, text=True, env=env,
                         timeout=60, cwd=REPO)
    assert (out.returncode, out.stderr) == (1, CLOSED_LINE)


def test_a_closed_stdout_fails_only_a_verb_that_prints(monkeypatch, capsys):
    """A verb that prints nothing (poweroff, kill...) runs as usual with no standard output."""
    import types

    from nsdash import cli

    probe = types.ModuleType("nsdash.cli._quietprobe")
    ran = []
    probe.__dict__["main"] = lambda args: ran.append(args) or 0
    monkeypatch.setitem(sys.modules, "nsdash.cli._quietprobe", probe)
    monkeypatch.setitem(cli.VERBS, "quietprobe", "_quietprobe")
    monkeypatch.setattr(sys, "argv", ["nsdash", "quietprobe", "x"])
    monkeypatch.setattr(sys, "stdout", None)
    monkeypatch.setattr(cli, "_teardown_free", False)
    assert cli.run() == 0
    assert ran == [["x"]]
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("args", [*CASES, ["cgtop", "-b", "-n", "1"]], ids=lambda a: " ".join(a))
def test_a_closed_stderr_changes_nothing_for_a_verb_that_works(tmp_path, args):
    """`nsdash VERB 2>&-`: Python leaves sys.stderr None; a verb that works still prints its
    output and exits 0 (a teardown-free verb's last flush of stderr failed it with status 1)."""
    argv = [a.format(dir=tmp_path) for a in args]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("NSDASH_DEBUG", None)
    env.pop("NSDASH_HOST", None)
    out = subprocess.run(["sh", "-c", 'exec "$@" 2>&-', "sh", sys.executable, "-S", str(REPO / "bin" / "nsdash"),
                          *argv], stdout=subprocess.PIPE, text=True, env=env, timeout=60, cwd=REPO)
    assert out.returncode == 0 and out.stdout


def test_closed_standard_descriptors_are_not_reused_for_the_verbs_files(tmp_path):
    """With 1 and 2 closed, the first files a verb opens would take those numbers: whatever
    then writes to "stdout" or "stderr" (a flush, a child's inherited 1 and 2) would write into
    them.  They hold /dev/null instead: 1 read-only (a write to it fails as to a closed one)."""
    report = tmp_path / "report"
    code = ("import os, sys\n"
            "from nsdash import cli\n"
            "sys.argv = ['nsdash', '--version']\n"
            "rc = cli.run()\n"
            f"fd = os.open({str(report)!r}, os.O_WRONLY | os.O_CREAT)\n"
            "os.write(fd, f'{rc} {fd > 2} {os.readlink(\"/proc/self/fd/1\")} {os.readlink(\"/proc/self/fd/2\")}'"
            ".encode())\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    subprocess.run(["sh", "-c", 'exec "$@" >&- 2>&-', "sh", sys.executable, "-c", code], env=env, timeout=60,
                   cwd=REPO)
    assert report.read_text() == "1 True /dev/null /dev/null"


def test_a_closed_stdin_is_read_as_dev_null_not_as_the_verbs_first_file(tmp_path):
    """`nsdash spawn ... <&-`: the supervisor's wake-up pipe took number 0, and the console relay
    read it as the user's input, stealing its wake-ups and typing them into the guest."""
    report = tmp_path / "report"
    code = ("import os, sys\n"
            "from nsdash import cli\n"
            "sys.argv = ['nsdash', '--version']\n"
            "rc = cli.run()\n"
            "r, w = os.pipe()\n"
            f"fd = os.open({str(report)!r}, os.O_WRONLY | os.O_CREAT)\n"
            "os.write(fd, f'{rc} {r > 2} {os.readlink(\"/proc/self/fd/0\")} {os.read(0, 1)!r}'.encode())\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    subprocess.run(["sh", "-c", 'exec "$@" <&-', "sh", sys.executable, "-c", code], env=env, timeout=20,
                   cwd=REPO, stdout=subprocess.DEVNULL)  # (before: read(0) waited on its own pipe)
    assert report.read_text() == "0 True /dev/null b''"
