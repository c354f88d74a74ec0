"""`nsdash shell` never hands the caller's terminal to the machine.

The caller runs in a PTY of the test's own (pty.fork), as a user at a
terminal would.  Inside, an attacker left behind by the joined shell holds
what the shell had (its stdio, reopened through /proc/PID/fd as the issue's
attacker did, and /dev/tty), ignores the hangup, waits until the shell and
nsdash are gone, and then writes to each.  Nothing may arrive at the
caller's terminal.  With stdin a terminal the command gets a new PTY that
nsdash bridges; with stdin a pipe and stdout the caller's terminal, a pipe
nsdash copies from.
"""

from __future__ import annotations

import os
import pty
import select
import time

import pytest
from conftest import NSDASH, REPO, wait_for

# The attacker: holds the shell's terminal (or pipe) reopened, outlives the shell, then writes.
SCRIPT = r"""
( trap '' HUP PIPE
  command exec 3>/proc/$$/fd/1
  command exec 4>/dev/tty  # fails where there is no controlling terminal (pipes)
  command exec 5>/proc/$$/fd/2
  name=$(readlink /proc/$$/fd/1)
  : > /lingerer.ready
  while kill -0 $$ 2>/dev/null; do sleep 0.05; done
  sleep 1.5
  r=""
  for fd in 3 4 5; do echo "INJECTED-$fd" >&$fd 2>/dev/null; r="$r fd$fd=$?"; done
  case $name in /dev/*) echo INJECTED-REOPEN 2>/dev/null > "$name"; r="$r reopen=$?";; esac
  echo "$r" > /lingerer.done
) >/dev/null 2>&1 &
# Until the attacker ignores SIGHUP and holds its fds, the shell may not end: its end as
# session leader hangs up the terminal's process group, the attacker included.
while [ ! -e /lingerer.ready ]; do sleep 0.05; done
echo "inside on $(tty 2>/dev/null)"
echo hello-from-inside
exit 5
"""


def _run_in_caller_pty(argv: list[str], stdin_pipe: bool, linger: float) -> tuple[int, bytes]:
    """Run ARGV as the caller, in a PTY; its exit status and everything its terminal received,
    including for LINGER seconds after it exited."""
    r = w = -1
    if stdin_pipe:
        r, w = os.pipe()
    pid, master = pty.fork()
    if pid == 0:  # the caller
        try:
            if stdin_pipe:
                os.dup2(r, 0)
                os.close(r)
                os.close(w)
            os.chdir(REPO)
            os.execvpe(argv[0], argv, {**os.environ, "TERM": "xterm"})
        finally:
            os._exit(127)
    if stdin_pipe:
        os.close(r)
        os.close(w)  # the command reads EOF
    out = bytearray()
    status: int | None = None
    deadline = time.monotonic() + 60
    ended_at = None
    while time.monotonic() < deadline:
        if status is None:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status, ended_at = os.waitstatus_to_exitcode(st), time.monotonic()
        if ended_at is not None and time.monotonic() - ended_at > linger:
            break
        if select.select([master], [], [], 0.05)[0]:
            try:
                out += os.read(master, 65536)
            except OSError:  # EIO: the caller's side is closed; keep the master, keep looking
                time.sleep(0.05)
    os.close(master)
    assert status is not None, f"the caller did not finish: {bytes(out)!r}"
    return status, bytes(out)


@pytest.mark.parametrize("stdin_pipe", [False, True], ids=["terminal", "piped-stdin"])
def test_nothing_inside_reaches_the_callers_terminal(busybox_tree, detached, machine_name, stdin_pipe):
    detached("-D", str(busybox_tree), "/bin/sleep", "600")
    done = busybox_tree / "lingerer.done"
    status, out = _run_in_caller_pty([*NSDASH, "shell", machine_name, "/bin/sh", "-c", SCRIPT],
                                     stdin_pipe, linger=4)
    text = out.decode("utf-8", "replace")
    assert status == 5, text  # the command's exit status is passed back
    assert "hello-from-inside" in text
    if stdin_pipe:
        assert "inside on /dev/pts/" not in text  # pipes, as machinectl shell does with pipes
    else:
        assert "inside on /dev/pts/" in text  # a terminal: the new PTY, as its controlling tty
    # The attacker outlived nsdash and tried every way it held: each write failed ...
    result = wait_for(lambda: done.exists() and done.read_text().strip(), timeout=15, what="the lingerer's writes")
    assert "=0" not in result, result
    # ... and nothing arrived at the caller's terminal, then or later.
    assert "INJECTED" not in text, text
