"""-H's pure parts: the wire format and its version check, -H's syntax and the ssh command
line, the one-line diagnoses of ssh's failures, and the client's escaping of what the far
side sends; and the far side itself (`nsdash _remote`) over pipes, no ssh and no root."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from nsdash.errors import UsageError
from nsdash.remote import protocol as p
from nsdash.remote.client import LineEscaper, check_verb, diagnose
from nsdash.remote.target import Target, parse_target, split_host_option, ssh_argv

REPO = Path(__file__).resolve().parents[2]


def test_messages_survive_any_split_and_a_long_line_is_refused():
    wire = p.encode("out", ch=1, fd=1, d=p.data_field(b"\x00\xff\x1b[2J")) + p.encode("exit", ch=1, code=3)
    d = p.Decoder()
    got = [m for i in range(len(wire)) for m in d.feed(wire[i:i + 1])]
    assert [m["t"] for m in got] == ["out", "exit"]
    assert p.data_of(got[0]) == b"\x00\xff\x1b[2J" and got[1]["code"] == 3
    with pytest.raises(p.RemoteError, match="longer than"):
        p.Decoder().feed(b"x" * (p.MAX_LINE + 1))


def test_chatter_is_skipped_before_the_hello_only():
    d = p.Decoder()
    assert d.feed(b"Welcome to far!\n{not json\n" + p.hello("0.1"), strict=False)[0]["t"] == "hello"
    with pytest.raises(p.RemoteError, match="not an nsdash message"):
        d.feed(b"Welcome again\n")
    with pytest.raises(p.RemoteError, match="not an nsdash message"):
        d.feed(b'{"t": "launch-missiles"}\n')  # an unknown kind is not a message either
    with pytest.raises(p.RemoteError, match="malformed data"):
        p.data_of({"t": "out", "d": "not base64!"})


def test_the_client_takes_its_own_major_version_and_refuses_another():
    assert p.check_hello({"t": "hello", "v": [p.MAJOR, p.MINOR + 5]}, "far") == (p.MAJOR, p.MINOR + 5)
    with pytest.raises(p.RemoteError) as e:
        p.check_hello({"t": "hello", "v": [p.MAJOR + 1, 0], "nsdash": "9.0"}, "far")
    line = e.value.oneline()
    assert f"far speaks nsdash protocol {p.MAJOR + 1}.0 (nsdash 9.0)" in line and f"speaks {p.MAJOR}.{p.MINOR}" in line
    with pytest.raises(p.RemoteError, match="did not greet"):
        p.check_hello({"t": "hello", "v": "1.0"}, "far")


@pytest.mark.parametrize(("text", "target"), [
    ("far", Target("far")),
    ("root@build-1.example.org", Target("build-1.example.org", "root")),
    ("me@10.229.0.2:2222", Target("10.229.0.2", "me", 2222)),
    ("[fe80::1]:22", Target("[fe80::1]", None, 22)),
])
def test_targets(text, target):
    assert parse_target(text) == target
    assert str(parse_target(text)) == text


@pytest.mark.parametrize("text", ["", "-oProxyCommand=touch /tmp/x", "a b", "host:0", "host:70000", "u@", "@h"])
def test_bad_targets_are_one_usage_error(text):
    with pytest.raises(UsageError):
        parse_target(text)


def test_ssh_argv_adds_only_tty_off_and_the_port_and_honours_the_environment():
    t = Target("[fe80::1]", "root", 2222)
    assert ssh_argv(t, {}) == ["ssh", "-T", "-p", "2222", "--", "root@fe80::1", "nsdash _remote"]
    env = {"NSDASH_SSH_COMMAND": "ssh -F '/tmp/my config'", "NSDASH_REMOTE_COMMAND": "~/venv/bin/nsdash"}
    assert ssh_argv(Target("far"), env) == ["ssh", "-F", "/tmp/my config", "-T", "--", "far",
                                            "~/venv/bin/nsdash _remote"]
    with pytest.raises(UsageError, match="NSDASH_SSH_COMMAND .*No closing quotation"):
        ssh_argv(t, {"NSDASH_SSH_COMMAND": "ssh -F '/tmp/my config"})  # a ValueError traceback before


def test_host_option_before_the_verb_or_from_the_environment():
    assert split_host_option(["-H", "far", "list"], {}) == ([Target("far")], ["list"])
    assert split_host_option(["-Hroot@far", "status", "x"], {}) == ([Target("far", "root")], ["status", "x"])
    assert split_host_option(["--host=far:22", "ps"], {}) == ([Target("far", port=22)], ["ps"])
    assert split_host_option(["--host", "far", "cgls"], {}) == ([Target("far")], ["cgls"])
    assert split_host_option(["list"], {"NSDASH_HOST": "env-host"}) == ([Target("env-host")], ["list"])
    assert split_host_option(["-H", "opt", "list"], {"NSDASH_HOST": "env"})[0] == [Target("opt")]
    assert split_host_option(["list", "-H", "x"], {}) == ([], ["list", "-H", "x"])  # after the verb: the verb's
    with pytest.raises(UsageError, match="needs a host"):
        split_host_option(["-H"], {})


def test_several_hosts_in_order_once_each():
    assert split_host_option(["-H", "a", "-H", "b", "-Ha", "list"], {}) == ([Target("a"), Target("b")], ["list"])
    assert split_host_option(["list"], {"NSDASH_HOST": "a, b c"})[0] == [Target("a"), Target("b"), Target("c")]
    with pytest.raises(UsageError):
        split_host_option(["-H", "a", "-H", "-oProxyCommand=x", "list"], {})


@pytest.mark.parametrize(("code", "stderr", "says"), [
    (255, "root@10.0.0.2: Permission denied (publickey).\n", "far refused the login (root@10.0.0.2: Permission"),
    (255, "No ED25519 host key is known for far and you have requested strict checking.\n"
          "Host key verification failed.\n", "far's host key is unknown or has changed (Host key verification"),
    (127, "bash: line 1: nsdash: command not found\n", "nsdash is not installed on far (bash: line 1: nsdash"),
    (127, "sh: 1: nsdash: not found\n", "nsdash is not installed on far"),
    (255, "ssh: connect to host 10.0.0.2 port 1: Connection refused\n", "cannot reach far (ssh: connect"),
    (1, "", "far did not start nsdash (ssh exited 1)"),
])
def test_ssh_failures_become_one_line(code, stderr, says):
    line = diagnose(Target("far"), code, stderr).oneline()
    assert says in line and "\n" not in line


def test_a_diagnosis_escapes_what_the_far_shell_said():
    line = diagnose(Target("far"), 127, "sh: \x1b]0;pwned\x07nsdash: not found\n").oneline()
    assert "\x1b" not in line and "\\x1b]0;pwned\\x07" in line


def test_output_is_escaped_a_whole_line_at_a_time():
    out = io.StringIO()
    e = LineEscaper(out)
    data = "tick é \x1b[2J bidi \u202e\tend\nno newline".encode()
    for i in range(len(data)):  # é split between two feeds still comes out whole
        e.feed(data[i:i + 1])
    assert out.getvalue() == "tick é \\x1b[2J bidi \\u202e\tend\n"
    e.close()
    assert out.getvalue().endswith("no newline\n")


def test_verbs_that_cannot_run_remotely_are_refused_before_connecting():
    with pytest.raises(UsageError, match="does not run over -H"):
        check_verb(["debug", "-M", "x", "1"])  # gdb takes a far PTY: not a -H verb (yet)
    with pytest.raises(UsageError, match="does not run over -H"):
        check_verb([])  # the dashboard over -H runs on this side (cli/dashboard.py), never on the far one
    with pytest.raises(UsageError, match="needs --detach"):
        check_verb(["spawn", "-D", "/x"])
    check_verb(["spawn", "--detach", "-D", "/x"])
    check_verb(["journal", "-f", "-M", "x"])
    check_verb(["trace", "-M", "x", "--all"])  # machine-wide: no far PID to choose
    check_verb(["profile", "-M", "x", "-d", "1"])


def _far_session(*messages: bytes) -> list[dict]:
    """`nsdash _remote` on pipes (what sshd runs): MESSAGES in, its messages out until every
    channel has exited; then our end closes, as ssh's does."""
    far = subprocess.Popen([sys.executable, "-m", "nsdash", "_remote"], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    assert far.stdin and far.stdout and far.stderr
    far.stdin.write(b"".join(messages))
    far.stdin.flush()
    got: list[dict] = []
    while sum(m["t"] == "exit" for m in got) < len(messages):
        line = far.stdout.readline()
        assert line, got
        got.append(json.loads(line))
    far.stdin.close()
    assert far.wait(30) == 0 and far.stdout.read() == b"" and far.stderr.read() == b""
    return got


def _output(messages: list[dict], ch: int, fd: int) -> bytes:
    return b"".join(p.data_of(m) for m in messages if m["t"] == "out" and m["ch"] == ch and m["fd"] == fd)


def test_the_far_side_greets_runs_verbs_on_channels_and_refuses_others():
    got = _far_session(p.encode("run", ch=4, argv=["cgls", "--help"], tty=None, stdin=False),
                       p.encode("run", ch=5, argv=["_supervise"], tty=None, stdin=False),
                       p.encode("run", ch=6, argv=["bogus-verb"], tty=None, stdin=False))
    assert got[0]["t"] == "hello" and got[0]["v"] == [p.MAJOR, p.MINOR]
    exits = {m["ch"]: m["code"] for m in got if m["t"] == "exit"}
    assert exits == {4: 0, 5: 2, 6: 2}
    assert b"usage: nsdash cgls" in _output(got, 4, 1)
    assert b"'_supervise' is not a verb nsdash runs over -H" in _output(got, 5, 2)


def test_the_far_side_runs_a_verb_on_a_terminal_when_asked():
    """(Its size: `stty size` through real ssh in tests/integration/test_remote.py.)"""
    got = _far_session(p.encode("run", ch=1, argv=["cgtop", "--help"], tty={"rows": 7, "cols": 50, "term": "xterm"},
                                stdin=True))
    assert [m["code"] for m in got if m["t"] == "exit"] == [0]
    text = _output(got, 1, 1).decode()
    assert "usage: nsdash cgtop" in text and "\r\n" in text  # a terminal's line discipline wrote it
    assert _output(got, 1, 2) == b""  # a terminal has one output: stderr is in it


def test_a_host_that_never_greets_times_out_and_its_ssh_is_reaped(monkeypatch, tmp_path):
    """(A stand-in for ssh here: a real one is in tests/integration/test_remote.py.)"""
    from nsdash.remote.session import Session

    stall = tmp_path / "stall"
    stall.write_text("#!/bin/sh\necho 'Warning: chatter on stderr' >&2\nexec sleep 60\n")
    stall.chmod(0o755)
    monkeypatch.setenv("NSDASH_SSH_COMMAND", str(stall))
    with pytest.raises(p.RemoteError, match="far did not answer within 1 s"):
        Session(Target("far"), timeout=1)
    children = Path(f"/proc/self/task/{__import__('os').getpid()}/children").read_text().split()
    assert children == []  # the stand-in was killed and reaped


def _local_far(monkeypatch, tmp_path) -> None:
    """A stand-in for ssh that runs this checkout's far side on this host (real ssh:
    tests/integration/test_remote.py)."""
    far = tmp_path / "ssh"
    far.write_text(f"#!/bin/sh\ncd {REPO} && exec {sys.executable} -m nsdash _remote\n")
    far.chmod(0o755)
    monkeypatch.setenv("NSDASH_SSH_COMMAND", str(far))


def test_a_stream_gives_output_as_it_comes_takes_input_and_ends_with_the_code(monkeypatch, tmp_path):
    import select

    from nsdash.remote.stream import Stream

    _local_far(monkeypatch, tmp_path)
    with Stream(Target("far"), ["cgtop", "--help"], tty=(7, 50)) as stream:
        out = b""
        while stream.code is None:
            select.select(stream.fds(), [], [], 5)
            out += (stream.pump() or {}).get(1, b"")
        assert stream.code == 0 and b"usage: nsdash cgtop" in out and b"\r\n" in out
        assert stream.pump() is None
    assert stream.conn.proc.poll() is not None  # ssh's stand-in ended and was reaped


def test_a_verb_that_writes_more_than_its_bound_ends_the_session_with_one_line(monkeypatch, tmp_path):
    from nsdash.remote.session import OUTPUT_MAX, Session

    _local_far(monkeypatch, tmp_path)
    monkeypatch.setenv("NSDASH_IMAGE_PATH", str(tmp_path / "machines"))  # the far side's images: two here
    for name in ("one", "two"):
        (tmp_path / "machines" / name).mkdir(parents=True)
    argv = ["list-images", "-o", "json"]
    with Session(Target("far"), timeout=30) as session:
        (whole,) = session.run(argv)  # within the default bound
        assert whole.code == 0 and 100 < len(whole.stdout) < OUTPUT_MAX
        with pytest.raises(p.RemoteError) as e:
            session.run(argv, limit=len(whole.stdout) - 1)  # a caller that wants less than that
    assert e.value.oneline().startswith(f"far: 'list-images -o json' wrote more than {len(whole.stdout) - 1} bytes")
    assert "\n" not in e.value.oneline()
    assert session.conn.proc.poll() is not None  # the session was closed, its ssh reaped
