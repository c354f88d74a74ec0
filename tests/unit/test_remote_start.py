"""What one `nsdash -H HOST VERB` costs, checked without timing it (bench/bench_remote.py times it):
the modules each side imports, the far side started as bin/nsdash starts, the request sent with
the connection (no round trip for the greeting), and a far side that ends with its last verb
(no round trip for the client's close, no interpreter teardown)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from nsdash.demo import farhost
from nsdash.remote import protocol as p
from nsdash.remote import server
from nsdash.remote.target import _split

REPO = Path(__file__).resolve().parents[2]


def _modules(code: str) -> set[str]:
    """The modules a fresh interpreter started as bin/nsdash starts it (-S) holds after CODE."""
    out = subprocess.run([sys.executable, "-S", "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    return set(out.stdout.split())


# What neither side's start needs: dataclasses brings inspect, ast and dis; typing is for mypy.
HEAVY = {"dataclasses", "inspect", "ast", "dis", "typing", "runpy", "importlib.util", "base64"}


def test_the_far_session_imports_what_serving_needs_and_no_more():
    loaded = _modules("import nsdash.cli, nsdash.cli.remote, nsdash.remote.server")
    assert not loaded & (HEAVY | {"selectors", "contextlib", "signal", "subprocess", "fcntl", "termios", "struct"})


def test_the_local_side_of_a_verb_imports_no_terminal_and_no_typing():
    loaded = _modules("import nsdash.cli, nsdash.remote.client, nsdash.remote.target")
    assert not loaded & (HEAVY | {"shlex", "termios", "tty"})
    assert "re" not in _modules("import nsdash.remote.target")  # (json brings it to the client anyway)


def test_the_far_host_runs_nsdash_as_make_venv_installs_it(tmp_path):
    files = farhost.prepare(tmp_path)
    wrapper = (files.far / "nsdash").read_text()
    assert f"exec python3 -S {farhost.FAR_COMMAND} " in wrapper and " -m " not in wrapper
    assert farhost.FAR_COMMAND == "/opt/nsdash/bin/nsdash" and (REPO / "bin" / "nsdash").is_file()
    assert re.fullmatch(farhost.SESSION_PATTERN, f"python3 -S {farhost.FAR_COMMAND} _remote")


def _far(*extra: str) -> subprocess.Popen:
    """`nsdash _remote` started as bin/nsdash starts it (the far host's wrapper does), on pipes."""
    return subprocess.Popen([sys.executable, "-S", str(REPO / "bin" / "nsdash"), "_remote", *extra],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def _messages(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.splitlines()]


def test_a_last_run_ends_the_session_without_the_client_closing():
    far = _far()
    assert far.stdin and far.stdout and far.stderr
    far.stdin.write(p.encode("run", ch=1, argv=["cgls", "--help"], tty=None, stdin=False, last=True))
    far.stdin.flush()  # and our end stays open
    try:
        assert far.wait(30) == 0
        got = _messages(far.stdout.read())
    finally:
        far.stdin.close()
    assert got[0]["t"] == "hello" and got[0]["v"] == [p.MAJOR, p.MINOR] and got[-1] == {"t": "exit", "ch": 1, "code": 0}
    assert b"usage: nsdash cgls" in b"".join(p.data_of(m) for m in got if m["t"] == "out")
    assert far.stderr.read() == b""


def test_a_request_of_another_major_version_is_refused_not_run():
    """A run sent before the greeting carries the client's version: the far side, not the
    client (which would learn of the mismatch only after the verb ran), refuses another major."""
    far = _far()
    assert far.stdin and far.stdout
    far.stdin.write(p.encode("run", ch=1, argv=["cgls", "--help"], tty=None, stdin=False, v=[p.MAJOR + 1, 0]))
    far.stdin.write(p.encode("run", ch=2, argv=["cgls", "--help"], tty=None, stdin=False, v=[p.MAJOR, 7]))
    far.stdin.flush()
    got: list[dict] = []
    while sum(m["t"] == "exit" for m in got) < 2:
        line = far.stdout.readline()
        assert line, got
        got.append(json.loads(line))
    far.stdin.close()
    assert far.wait(30) == 0
    assert {m["ch"]: m["code"] for m in got if m["t"] == "exit"} == {1: 2, 2: 0}
    refusal = b"".join(p.data_of(m) for m in got if m["t"] == "out" and m["ch"] == 1).decode()
    assert refusal == (f"nsdash: this host speaks nsdash protocol {p.MAJOR}.{p.MINOR}, the client {p.MAJOR + 1}.0; "
                       "install the same nsdash version on both hosts\n")


def test_without_last_the_session_waits_for_more_until_the_client_closes():
    far = _far()
    assert far.stdin and far.stdout
    far.stdin.write(p.encode("run", ch=1, argv=["cgls", "--help"], tty=None, stdin=False))
    far.stdin.flush()
    lines = [far.stdout.readline(), far.stdout.readline()]
    while b'"exit"' not in lines[-1]:
        lines.append(far.stdout.readline())
    assert far.poll() is None  # a dashboard's session: the next verb may come
    far.stdin.close()
    assert far.wait(30) == 0


def test_a_client_gone_while_its_output_is_written_ends_the_session_quietly():
    """The ssh channel closed under the far side (EPIPE): the session ends as when the client
    closes, not killed by SIGPIPE with its verbs left behind."""
    far = _far()
    assert far.stdin and far.stdout and far.stderr
    assert json.loads(far.stdout.readline())["t"] == "hello"
    far.stdout.close()  # nobody reads what the far side sends any more
    far.stdin.write(p.encode("run", ch=1, argv=["cgls", "--help"], tty=None, stdin=False))
    far.stdin.flush()
    try:
        assert far.wait(30) == 0  # not -SIGPIPE
    finally:
        far.stdin.close()
    assert far.stderr.read() == b""


def test_a_verb_starts_with_the_collector_off_as_a_new_nsdash_does():
    def verb(argv: list[str]) -> int:
        import gc

        print(f"{argv} gc={gc.isenabled()}")
        return 3

    channel = server.start_channel({"ch": 1, "argv": ["list"], "tty": None, "stdin": False}, verb)
    assert isinstance(channel, server.Channel)
    out = b""
    deadline = time.monotonic() + 30
    fd = next(fd for fd, which in channel.outputs.items() if which == 1)
    os.set_blocking(fd, True)
    while chunk := os.read(fd, 4096):
        out += chunk
        assert time.monotonic() < deadline
    for each in channel.outputs:
        os.close(each)
    assert channel.poll(block=True) == 3
    assert out == b"['list'] gc=False\n"


def _request_first_far(tmp_path: Path) -> Path:
    """A stand-in far side that reads the request first and greets after."""
    far = tmp_path / "far"
    far.write_text(f"""#!{sys.executable}
import base64, json, os, sys
request = json.loads(sys.stdin.buffer.readline())
assert request["t"] == "run" and request["last"] is True and request["v"] == [1, 1], request
data = base64.b64encode(("asked " + " ".join(request["argv"]) + "\\n").encode()).decode()
for m in ({{"t": "hello", "v": [1, 1]}}, {{"t": "out", "ch": request["ch"], "fd": 1, "d": data}},
          {{"t": "exit", "ch": request["ch"], "code": 4}}):
    os.write(1, (json.dumps(m) + "\\n").encode())
""")
    far.chmod(0o755)
    return far


def test_the_command_line_sends_its_request_before_the_greeting(tmp_path):
    """The client must not wait for the greeting before it asks (that wait is a round trip on
    every -H command)."""
    far = _request_first_far(tmp_path)
    r = subprocess.run([sys.executable, "-S", str(REPO / "bin" / "nsdash"), "-H", "far", "list", "--no-legend"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO), "NSDASH_SSH_COMMAND": str(far)})
    assert (r.returncode, r.stdout, r.stderr) == (4, "asked list --no-legend\n", "")


def test_ssh_starts_before_the_command_line_loads_json_and_it_ends_without_teardown(tmp_path):
    """The far side's start (ssh, its shell, its interpreter) is the longest wait of a -H
    command: ssh is started first, and json (with re) loads on this side meanwhile.  And once
    the answer is out, the command ends without tearing its modules down (os._exit)."""
    spy = """
import sys
class Marker:
    def __del__(self):
        sys.stderr.write("torn down\\n")
marker = Marker()  # (a teardown clears this module's names: its __del__ would say so)
from nsdash.remote import ssh
spawn = ssh.SshProcess.__init__
def spied(self, argv):
    sys.stderr.write(f"at spawn: json={'json' in sys.modules} re={'re' in sys.modules}\\n")
    spawn(self, argv)
ssh.SshProcess.__init__ = spied
sys.argv = ["nsdash", "-H", "far", "list"]
from nsdash.cli import run
sys.exit(run())
"""
    bindir = tmp_path / "bin"  # the stand-in as `ssh` on PATH: NSDASH_SSH_COMMAND would need shlex (and re)
    bindir.mkdir()
    (bindir / "ssh").symlink_to(_request_first_far(tmp_path))
    env = {k: v for k, v in os.environ.items() if k != "NSDASH_SSH_COMMAND"}
    r = subprocess.run([sys.executable, "-S", "-c", spy], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=30, cwd=REPO, env={**env, "PYTHONPATH": str(REPO), "PATH": f"{bindir}:{env['PATH']}"})
    assert (r.returncode, r.stdout, r.stderr) == (4, "asked list\n", "at spawn: json=False re=False\n")


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="ab1:@[]/. -_\t\u0661fF", max_size=14))
def test_the_hand_written_target_syntax_is_the_regular_expression_it_replaced(text):
    old = re.fullmatch(r"(?:(?P<user>[^@\s:/]+)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::(?P<port>\d+))?",
                       text)
    assert _split(text) == (None if old is None else (old["user"], old["host"], old["port"]))


def test_ssh_is_spawned_with_pipes_default_signals_and_no_other_descriptor_of_ours():
    import subprocess as sp

    import pytest

    from nsdash.remote.ssh import SshProcess

    keep = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(keep, True)  # as a descriptor left open by whoever started us is
    try:
        proc = SshProcess(["sh", "-c", "cat; ls /proc/self/fd >&2; grep SigIgn /proc/self/status; exit 3"])
        proc.stdin.write(b"through\n")
        proc.stdin.close()
        out, err = proc.stdout.read(), proc.stderr.read()
        assert proc.wait() == 3 and proc.returncode == 3 and proc.poll() == 3
    finally:
        os.close(keep)
    lines = out.decode().splitlines()
    assert lines[0] == "through"
    ignored = int(lines[1].split()[1], 16)
    assert not ignored & (1 << (13 - 1))  # SIGPIPE back to its default, as Popen gives it
    assert sorted(err.decode().split()) == ["0", "1", "2", "3"]  # (3: the directory ls reads)

    slow = SshProcess(["sleep", "30"])
    with pytest.raises(sp.TimeoutExpired):
        slow.wait(0.2)
    assert not slow.ended(0.1)
    slow.kill()
    assert slow.ended(10) and slow.returncode == -9
    with pytest.raises(FileNotFoundError) as e:
        SshProcess(["/nonexistent/ssh", "far"])
    assert e.value.filename == "/nonexistent/ssh"


def test_popen_spawns_with_posix_spawn_only_by_passing_our_descriptors_on(monkeypatch):
    """Why SshProcess is not Popen (nsdash/remote/ssh.py): this Python's Popen takes posix_spawn
    only with close_fds=False, and then a descriptor left open by whoever started us reaches
    ssh (and its ControlMaster); with close_fds=True it forks and execs."""
    import shutil

    spawned: list[str] = []
    real = os.posix_spawn
    monkeypatch.setattr(os, "posix_spawn", lambda path, *a, **kw: spawned.append(path) or real(path, *a, **kw))
    ls = shutil.which("ls")  # (Popen uses posix_spawn only for a path with a directory in it)
    assert ls
    keep = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(keep, True)
    seen = {}
    try:
        for close_fds in (False, True):
            proc = subprocess.Popen([ls, "/proc/self/fd"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, close_fds=close_fds)
            seen[close_fds] = proc.communicate()[0].decode().split()
    finally:
        os.close(keep)
    assert spawned == [ls], ("this Python's Popen spawns with posix_spawn and close_fds=True (CPython 3.13, "
                             "gh-113117): SshProcess could become Popen, if importing subprocess is worth it")
    assert str(keep) in seen[False] and str(keep) not in seen[True], seen
