"""A far screen's connection closed while a verb holds it (nsdash.tui.remote_views.FarSession):
its ssh is killed and reaped by close(), never left a zombie of the dashboard."""

from __future__ import annotations

from pathlib import Path

from nsdash.remote.ssh import SshProcess
from nsdash.remote.target import parse_target
from nsdash.tui.remote_views import FarSession


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def test_close_while_a_verb_holds_the_session_reaps_its_ssh() -> None:
    far = FarSession(parse_target("far"))
    ssh = SshProcess(["sleep", "30"])  # the session's ssh, as Session's start hands it over
    far._started(ssh)
    far._lock.acquire()  # a worker's verb in flight: its answer already read, it will not read again
    try:
        far.close()
        assert _state(ssh.pid) is None, f"ssh {ssh.pid} left in state {_state(ssh.pid)}"
        assert ssh.returncode == -9 and far.closed
    finally:
        far._lock.release()
        if ssh.poll() is None:
            ssh.kill()
            ssh.wait()

