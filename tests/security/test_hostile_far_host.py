"""A hostile far host behind -H (issue 15): what it answers is never trusted by the near side.

The stand-in for ssh here is a small program that speaks the -H protocol as a broken or
hostile far side would (the real far side over real ssh: tests/integration/test_remote.py).
What must hold: one line on stderr and a non-zero exit (no traceback), nothing of the far
side's reaching the near terminal unescaped, the near side's memory bounded whatever the far
side sends, and a dashboard's host thread that says the host failed instead of dying."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from nsdash.errors import NsdashError
from nsdash.remote.target import Target

REPO = Path(__file__).resolve().parents[2]
NSDASH = [sys.executable, "-m", "nsdash"]

# What the far side sends, by mode.  It reads its stdin only to see it end.
FAR = r'''
import base64, json, os, sys, threading, time
mode = sys.argv[1]
out = sys.stdout.buffer
# It ends when the near side closes its end, as ssh does (not after sleeping out its 30 s).
threading.Thread(target=lambda: (sys.stdin.buffer.read(), os._exit(0)), daemon=True).start()

def send(**m):
    out.write(json.dumps(m).encode() + b"\n")
    out.flush()

def hello(v=(1, 1), nsdash="0.1"):
    send(t="hello", v=list(v), nsdash=nsdash)

if mode == "deep-before":      # a line nested past the parser's recursion limit, before the hello
    out.write(b"[" * 5000 + b"\n"); out.flush()
    hello(); send(t="out", ch=1, fd=1, d=base64.b64encode(b"ok\n").decode()); send(t="exit", ch=1, code=0)
elif mode == "deep-after":     # the same, after a proper hello
    hello(); time.sleep(0.5)  # (read apart from the hello: lines that come with it are read as chatter)
    out.write(b'{"t": "out", "ch": 1, "fd": 1, "d": ' + b"[" * 5000 + b"\n"); out.flush()
elif mode == "deep-list":      # `list -o json` answered with such a document (a Session's verb)
    hello()
    d = base64.b64encode(b"[" * 5000).decode()
    for i in range(0, len(d), 32768):
        send(t="out", ch=1, fd=1, d=d[i:i + 32768])
    send(t="exit", ch=1, code=0)
elif mode == "no-newline":     # endless output with no line end: 64 MiB of it
    hello()
    chunk = base64.b64encode(b"\x1b]0;owned\x07" + b"A" * (32768 - 11)).decode()
    for _ in range(2048):
        send(t="out", ch=1, fd=1, d=chunk)
    send(t="exit", ch=1, code=0)
elif mode == "hostile-hello":  # another major version, its name a terminal sequence
    hello((9, 0), "\x1b]0;owned\x07\x1b[2J\x9b31m" + "9" * 60000)  # (the greeting itself under 64 KiB)
elif mode == "loud-fail":     # a verb that fails saying a megabyte on one line
    hello()
    d = base64.b64encode(b"\x1b]0;owned\x07" + b"e" * (1 << 20) + b"\n").decode()
    for i in range(0, len(d), 32768):
        send(t="out", ch=1, fd=2, d=d[i:i + 32768])
    send(t="exit", ch=1, code=1)
elif mode == "huge-exit":      # a verb's exit status of 4,000 digits (json reads up to 4,300)
    hello(); send(t="exit", ch=1, code=int("9" * 4000))
elif mode == "loud-exit":      # ssh's own stderr (the far shell's too) says 8 KiB on one line, then it ends
    hello()
    sys.stderr.write("\x1b]0;owned\x07" + "e" * 8000 + "\n")
    sys.stderr.flush()
    os._exit(255)  # (not sys.exit: the reader thread holds stdin's lock at shutdown)
sys.stdout.flush()
time.sleep(30)
'''


@pytest.fixture
def far(tmp_path, monkeypatch):
    """FAR(MODE): NSDASH_SSH_COMMAND set to the stand-in in MODE; the environment for a child too."""
    script = tmp_path / "far.py"
    script.write_text(FAR)

    def use(mode: str) -> dict[str, str]:
        command = f"{sys.executable} {script} {mode}"
        monkeypatch.setenv("NSDASH_SSH_COMMAND", command)
        env = {k: v for k, v in os.environ.items() if k != "NSDASH_DEBUG"}
        return env | {"NSDASH_SSH_COMMAND": command, "PYTHONPATH": str(REPO)}

    return use


# Runs nsdash in a grandchild and writes its peak memory (KiB) to argv[1]: a child made by
# vfork from pytest (as subprocess does) inherits pytest's own high-water mark at its exec,
# one forked from this small process only this one's.
PEAK = """import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, "-m", "nsdash", *sys.argv[2:]])
_, status, usage = os.wait4(pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _remote(env: dict[str, str], *argv: str) -> tuple[int, bytes, bytes, int]:
    """`nsdash -H far ARGV` as a user runs it: its status, stdout, stderr and peak memory (KiB)."""
    with tempfile.NamedTemporaryFile("r") as peak:
        r = subprocess.run([sys.executable, "-c", PEAK, peak.name, "-H", "far", *argv], stdin=subprocess.DEVNULL,
                           capture_output=True, env=env, cwd=REPO, timeout=120)
        return r.returncode, r.stdout, r.stderr, int(peak.read())


def test_a_line_nested_past_the_recursion_limit_before_the_hello_is_chatter(far):
    code, out, err, _ = _remote(far("deep-before"), "list")
    assert (code, out, err) == (0, b"ok\n", b""), err[-800:]


def test_a_line_nested_past_the_recursion_limit_is_one_line_not_a_traceback(far):
    code, out, err, _ = _remote(far("deep-after"), "list")
    assert b"Traceback" not in err and b"RecursionError" not in err, err[-800:]
    assert code != 0 and err.count(b"\n") == 1, err[-800:]
    assert err == b"nsdash: the remote side sent a line that is not an nsdash message\n", err


def test_a_deep_document_as_a_verbs_answer_is_the_hosts_error(far):
    from nsdash.remote.hosts import list_machines
    from nsdash.remote.session import Session

    far("deep-list")
    with Session(Target("far"), timeout=10) as session, pytest.raises(NsdashError) as e:
        list_machines(session)
    assert "answered 'list -o json' with something else" in e.value.oneline()


def test_a_dashboard_host_thread_says_the_host_failed_instead_of_dying(far):
    from nsdash.remote.hosts import HostWatch

    far("deep-after")
    watch = HostWatch(Target("far"), interval=0.2, timeout=10)
    watch.start()
    try:
        deadline = time.monotonic() + 20
        while watch.state()[1] is None and time.monotonic() < deadline:
            assert watch._thread.is_alive(), "the host's thread died"
            time.sleep(0.05)
        error = watch.state()[1]
        assert error is not None and "not an nsdash message" in error, error
        assert watch._thread.is_alive()  # it goes on (and retries later), the host shown failed
    finally:
        watch.stop()


def test_output_without_line_ends_keeps_memory_bounded_and_is_escaped(far):
    code, out, err, peak = _remote(far("no-newline"), "list")
    assert code == 0, err[-800:]
    assert b"\x1b" not in out and b"\x07" not in out
    assert out.count(b"\\x1b]0;owned\\x07") == 2048  # every piece shown, escaped
    assert out.count(b"A") == 2048 * (32768 - 11)
    # 64 MiB came without a line end: held whole (and escaped whole at the end) it took more
    # than 200 MiB; shown as it comes, the client stays near its start-up size.
    assert peak < 100 * 1024, f"the client peaked at {peak // 1024} MiB"


def test_a_far_side_of_another_major_version_names_it_escaped(far):
    code, out, err, _ = _remote(far("hostile-hello"), "list")
    assert code != 0 and err.count(b"\n") == 1, err[:500]
    assert b"speaks nsdash protocol 9.0" in err
    assert b"\x1b" not in err and b"\x07" not in err and "\x9b".encode() not in err, err[:500]
    assert len(err) < 500, f"{len(err)} bytes: {err[:500]!r}"  # a version is short; what it says is cut


def test_images_answered_with_a_deep_document_are_the_hosts_error():
    from nsdash.tui.remote_images import parse

    with pytest.raises(NsdashError, match="answered 'list-images -o json' with something else"):
        parse("far", b"[" * 5000)


def test_a_long_line_is_shown_in_pieces_that_never_cut_a_character():
    import io

    from nsdash.remote.client import PARTIAL_MAX, LineEscaper

    sink = io.StringIO()
    escaper = LineEscaper(sink)
    text = "é€😀" * 40_000  # 2, 3 and 4 bytes each: no line end in 360,000 bytes
    data = text.encode()
    for i in range(0, len(data), 4093):  # pieces that cut characters
        escaper.feed(data[i:i + 4093])
        assert len(escaper.partial) <= PARTIAL_MAX + 4093
    assert sink.getvalue()  # shown before the end
    escaper.close()
    assert sink.getvalue() == text + "\n"  # whole, and no character escaped as broken bytes


def test_a_far_verbs_last_words_are_quoted_bounded_and_escaped(far):
    from nsdash.remote.client import LAST_WORDS_MAX
    from nsdash.remote.hosts import list_machines
    from nsdash.remote.session import Session

    far("loud-fail")
    with Session(Target("far"), timeout=10) as session, pytest.raises(NsdashError) as e:
        list_machines(session)
    line = e.value.oneline()
    assert line.startswith("far: \\x1b]0;owned\\x07eee") and line.endswith("e…"), line[:200]
    assert len(line) < LAST_WORDS_MAX + 100 and "\x1b" not in line, len(line)


def test_a_lost_connections_last_words_are_quoted_bounded_and_escaped(far):
    code, out, err, _ = _remote(far("loud-exit"), "list")
    assert code != 0 and err.count(b"\n") == 1, err[:500]
    assert err.startswith(b"nsdash: the connection to far was lost (\\x1b]0;owned\\x07eee"), err[:200]
    assert len(err) < 500 and b"\x1b" not in err, len(err)


def test_a_far_verbs_exit_status_is_an_exit_status(far):
    from nsdash.remote.hosts import list_machines
    from nsdash.remote.session import Session

    far("huge-exit")
    with Session(Target("far"), timeout=10) as session, pytest.raises(NsdashError) as e:
        list_machines(session)
    assert e.value.oneline() == "far: list exited 1"
