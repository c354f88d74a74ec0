"""`nsdash -H HOST VERB` against a real far host over real ssh (issue 20), as root.

The far host is an nsdash machine booted from the "sshd" tree (Debian 12 with
python3 and openssh-server) with private networking (-n), so the host reaches
it by its address from nsdash's pool and the traffic stays on the machine's
veth.  The test makes every key (nsdash.demo.farhost, shared with
bench/bench_remote.py): sshd's host key and the authorized key are bound in
read-only from a temporary directory, with an sshd_config drop-in naming
them; this checkout and the venv's packages are bound in as
test_systemd_host does, and /usr/local/bin/nsdash there is a small wrapper.
The client side uses `ssh -F CONFIG` (NSDASH_SSH_COMMAND) with a known_hosts
file of its own and HOME in the temporary directory, so nothing of root's
~/.ssh is read or written.  Inside the far host, nsdash runs BusyBox machines
(nested) and a Debian one for `systemctl -M`.  One far host for the module.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pty
import select
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import NSDASH, REPO, TAG, cached_tree, run_nsdash, teardown_machine, wait_for

from nsdash.demo import farhost
from nsdash.demo.farhost import FAR_DIR
from nsdash.launcher import network
from nsdash.machines import state as st

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

class Far:
    """The far host: remote(*argv) runs `nsdash -H far ARGV` here; ssh(cmd) runs CMD on the far host."""

    def __init__(self, name: str, files: farhost.FarFiles, address: str) -> None:
        self.name, self.files, self.address = name, files, address
        self.env = {**os.environ, "HOME": str(files.home), "NSDASH_SSH_COMMAND": f"ssh -F {files.config}"}
        self.env.pop("NSDASH_HOST", None)

    def remote(self, *argv: str, env: dict[str, str] | None = None, timeout: float = 60,
               input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([*NSDASH, "-H", "far", *argv], capture_output=True, text=True, timeout=timeout,
                              cwd=REPO, env={**self.env, **(env or {})}, input=input,
                              stdin=None if input is not None else subprocess.DEVNULL)

    def ssh(self, command: str, timeout: float = 60) -> str:
        r = subprocess.run(["ssh", "-F", str(self.files.config), "far", command], capture_output=True,
                           text=True, timeout=timeout, env=self.env, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, (command, r.stdout, r.stderr)
        return r.stdout


def _test_scripts(far: Path) -> None:
    """Far sides that misbehave, for the client's refusals (run through NSDASH_REMOTE_COMMAND)."""
    # From the future: greets with protocol 2.0
    (far / "future").write_text('#!/bin/sh\necho \'{"t":"hello","v":[2,0],"nsdash":"9"}\'\nread x\n')
    # Hostile: its output carries a terminal title change and a colour
    evil = base64.b64encode(b"\x1b]0;pwned\x07evil \x1b[31mred\n").decode()
    (far / "hostile").write_text("#!/bin/sh\necho '{\"t\":\"hello\",\"v\":[1,0]}'\nread x\n"
                                 f"echo '{{\"t\":\"out\",\"ch\":1,\"fd\":1,\"d\":\"{evil}\"}}'\n"
                                 "echo '{\"t\":\"exit\",\"ch\":1,\"code\":0}'\n")
    for script in ("future", "hostile"):
        (far / script).chmod(0o755)


@pytest.fixture(scope="module")
def far(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("remote")
    tmp.chmod(0o755)
    files = farhost.prepare(tmp)
    _test_scripts(files.far)
    name = f"{TAG}-far"
    r = run_nsdash("spawn", "--detach", "-M", name, "-n", "-xbD", str(cached_tree("sshd")),
                   *farhost.spawn_options(files, REPO, sysconfig.get_paths()["purelib"]),
                   f"--bind-ro={cached_tree('busybox')}:/opt/busybox", timeout=120)
    assert r.returncode == 0, r.stderr
    try:
        lease = network.lease_of(name)
        assert lease is not None
        address = str(lease.guest.ip)
        farhost.ssh_config(files, address)
        host = Far(name, files, address)
        wait_for(lambda: host.remote("list", timeout=30).returncode == 0, timeout=90, step=0.5,
                 what="sshd and nsdash on the far host")
        yield host
    finally:
        teardown_machine(name)


def _one_line(r: subprocess.CompletedProcess) -> str:
    assert r.returncode != 0, r
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("nsdash: "), r.stderr
    assert "Traceback" not in r.stderr
    return r.stderr


def _bb(far: Far, name: str) -> None:
    r = far.remote("spawn", "--detach", "-M", name, "-xbD", "/opt/busybox")
    assert r.returncode == 0, r.stderr


def _wait_getty(far: Far, name: str, timeout: float = 30) -> None:
    """Until NAME's getty runs (its console then has its boot on it)."""
    wait_for(lambda: "getty" in far.remote("ps", "-M", name).stdout, timeout=timeout, step=0.3,
             what=f"{name}'s getty")


def _far_sessions(far: Far) -> int:
    """Processes of `nsdash _remote` sessions on the far host (each verb is a fork of its session's)."""
    return int(far.ssh(f"pgrep -c -f '{farhost.SESSION_PATTERN}' || true").strip() or 0)


def _wait_gone(far: Far, name: str) -> None:
    wait_for(lambda: name not in far.remote("list").stdout, timeout=30, step=0.3, what=f"{name} gone")


def test_readers_and_stops_over_ssh(far):
    _bb(far, "bb")
    try:
        _wait_getty(far, "bb")
        # (not rcS's greeting: a nested BusyBox boot sometimes loses its first console line)
        assert far.remote("journal", "-M", "bb").stdout.startswith("-- nsdash: boot 1 ")
        listing = far.remote("list")
        assert listing.returncode == 0 and listing.stdout.split("\n")[1].split()[0] == "bb", listing.stdout
        status = json.loads(far.remote("status", "-o", "json", "bb").stdout)
        assert status["state"] == "running"
        assert "bb" in far.remote("status", "bb").stdout
        ps = far.remote("ps", "-M", "bb")
        assert ps.returncode == 0 and "getty" in ps.stdout, ps.stdout
        cgls = far.remote("cgls")
        assert cgls.returncode == 0 and "getty" in cgls.stdout, cgls.stdout
        top = far.remote("cgtop", "-b", "-n", "1")
        assert top.returncode == 0 and "bb" in top.stdout, top.stdout
        images = far.remote("list-images")
        assert images.returncode == 0, images.stderr
        # kill: a signal to the machine's init (BusyBox's init ignores SIGHUP's default, and lives)
        r = far.remote("kill", "--signal=SIGHUP", "bb")
        assert r.returncode == 0, r.stderr
        # reboot: the same machine boots again
        boot = status["boot"]
        assert far.remote("reboot", "bb").returncode == 0
        wait_for(lambda: json.loads(far.remote("status", "-o", "json", "bb").stdout)["boot"] > boot, timeout=30,
                 step=0.3, what="a second boot")
        assert far.remote("poweroff", "bb").returncode == 0
        _wait_gone(far, "bb")
        # an error on the far side comes back as its one line and exit status
        r = far.remote("status", "bb")
        assert "no machine named 'bb'" in _one_line(r)
    finally:
        far.remote("terminate", "bb")


def test_start_and_terminate_an_image(far):
    far.ssh("mkdir -p /var/lib/machines && cp -a /opt/busybox /var/lib/machines/img")
    assert "img" in far.remote("list-images").stdout
    r = far.remote("start", "img")
    assert r.returncode == 0, r.stderr
    try:
        wait_for(lambda: "img" in far.remote("list").stdout, timeout=30, step=0.3, what="img running")
        assert far.remote("terminate", "img").returncode == 0
        _wait_gone(far, "img")
    finally:
        far.remote("terminate", "img")


def test_shell_passes_stdin_and_the_exit_code_back(far):
    _bb(far, "sh1")
    try:
        r = far.remote("shell", "sh1", "/bin/sh", "-c", "read x; echo got-$x; echo err >&2; exit 7", input="hello\n")
        assert r.returncode == 7, r
        assert r.stdout == "got-hello\n" and r.stderr == "err\n", r
    finally:
        far.remote("terminate", "sh1")


def _pty_run(far: Far, argv: list[str], rows: int = 30, cols: int = 100):
    """nsdash -H far ARGV on a new local terminal of ROWS x COLS: (pid, master fd)."""
    import fcntl
    import struct
    import termios

    pid, fd = pty.fork()
    if pid == 0:
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        os.chdir(REPO)
        os.execvpe(sys.executable, [sys.executable, "-m", "nsdash", "-H", "far", *argv], far.env)
    return pid, fd


def _until(fd: int, buf: bytearray, pattern: bytes, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while pattern not in buf:
        assert time.monotonic() < deadline, (pattern, bytes(buf[-2000:]))
        if select.select([fd], [], [], 0.1)[0]:
            try:
                buf.extend(os.read(fd, 4096))
            except OSError:
                break


def _reap(pid: int, fd: int, timeout: float = 20.0) -> int:
    """PID's exit status once it ends (killed, and the test failed, if it does not within TIMEOUT)."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise AssertionError(f"nsdash -H did not end within {timeout} s")
            with contextlib.suppress(OSError):  # keep the terminal drained meanwhile
                if select.select([fd], [], [], 0.1)[0]:
                    os.read(fd, 65536)
    finally:
        os.close(fd)


def test_login_and_shell_on_a_terminal(far):
    _bb(far, "con")
    try:
        pid, fd = _pty_run(far, ["login", "con"])
        buf = bytearray()
        try:
            _until(fd, buf, b"Connected to machine con")
            os.write(fd, b"\r")
            _until(fd, buf, b"con login:")
            os.write(fd, b"root\r")
            _until(fd, buf, b"# ")
            os.write(fd, b"echo answer-$((6*7))\r")
            _until(fd, buf, b"answer-42")
            os.write(fd, b"\x1d\x1d\x1d")  # ^] three times: leave, as locally
            _until(fd, buf, b"terminated")
        except BaseException:
            os.kill(pid, signal.SIGKILL)
            raise
        assert _reap(pid, fd) == 0
        assert json.loads(far.remote("status", "-o", "json", "con").stdout)["state"] == "running"

        # shell on a terminal: a PTY on the far side with our window size, the exit code back
        pid, fd = _pty_run(far, ["shell", "con", "/bin/sh", "-c", "stty size; tty; exit 3"], rows=33, cols=101)
        buf = bytearray()
        try:
            _until(fd, buf, b"33 101")
            _until(fd, buf, b"/dev/pts/")
        except BaseException:
            os.kill(pid, signal.SIGKILL)
            raise
        assert _reap(pid, fd) == 3

        # cgtop on a terminal: its screen, drawn on the far side's PTY, and q quits it
        pid, fd = _pty_run(far, ["cgtop", "-d", "0.5"], rows=30, cols=120)
        buf = bytearray()
        try:
            _until(fd, buf, b"machine-con.scope")
            os.write(fd, b"q")
        except BaseException:
            os.kill(pid, signal.SIGKILL)
            raise
        assert _reap(pid, fd) == 0
    finally:
        far.remote("terminate", "con")


@contextlib.contextmanager
def _following(far, machine: str, new_session: bool = False) -> Iterator[subprocess.Popen]:
    """`nsdash -H far journal -f -M MACHINE` running (in a session of its own with NEW_SESSION),
    its output piped; after the block it is killed if it still runs, its pipes are closed and
    MACHINE is terminated."""
    follow = subprocess.Popen([*NSDASH, "-H", "far", "journal", "-f", "-M", machine], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, cwd=REPO, env=far.env, stdin=subprocess.DEVNULL,
                              start_new_session=new_session)
    try:
        yield follow
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
        follow.stdout.close()
        follow.stderr.close()
        far.remote("terminate", machine)


def test_journal_follow_and_a_lost_connection(far):
    _bb(far, "jf")
    with _following(far, "jf") as follow:
        os.set_blocking(follow.stdout.fileno(), False)
        seen = bytearray()

        def saw(marker: bytes) -> bool:
            with contextlib.suppress(BlockingIOError, TypeError):
                seen.extend(follow.stdout.read() or b"")
            return marker in seen

        wait_for(lambda: saw(b"-- nsdash: boot 1 "), timeout=30, what="the journal so far")
        # a line the guest writes now arrives, and its escape sequence shows escaped, not raw
        r = far.remote("shell", "jf", "/bin/sh", "-c", r"printf 'fresh-line \033[31mred\n' > /dev/console")
        assert r.returncode == 0, r.stderr
        wait_for(lambda: saw(b"fresh-line"), timeout=20, what="the followed line")
        assert b"\x1b" not in seen and b"fresh-line red" in seen, bytes(seen[-300:])

        # the far side's nsdash dies mid-session: one line, non-zero
        far.ssh(f"pkill -KILL -f '{farhost.SESSION_PATTERN}'")
        follow.wait(timeout=20)
        err = follow.stderr.read().decode()
        assert follow.returncode != 0 and err.count("\n") == 1 and "connection to far was lost" in err, err
    # the far side left nothing running for the session: no journal follower lingers
    wait_for(lambda: _far_sessions(far) == 0, timeout=10, step=0.3, what="the far session's processes gone")


def test_interrupting_the_client_ends_the_far_verb(far):
    _bb(far, "intr")
    with _following(far, "intr", new_session=True) as follow:
        wait_for(lambda: _far_sessions(far) == 2, timeout=20, step=0.3, what="the far session and its follower")
        os.killpg(follow.pid, signal.SIGINT)  # ^C in the user's terminal reaches nsdash and ssh
        follow.wait(timeout=20)
        assert follow.returncode == 130, follow.stderr.read()
        wait_for(lambda: _far_sessions(far) == 0, timeout=10, step=0.3, what="the far session and follower gone")


def test_systemctl_in_a_nested_systemd_machine(far):
    r = far.remote("spawn", "--detach", "-M", "inner", "-xbD", "/", timeout=120)
    assert r.returncode == 0, r.stderr
    try:
        wait_for(lambda: far.remote("systemctl", "-M", "inner", "is-active", "multi-user.target").stdout.strip()
                 == "active", timeout=60, step=0.5, what="the inner systemd's multi-user.target")
        units = far.remote("systemctl", "-M", "inner", "list-units", "--type=service")
        assert units.returncode == 0 and "systemd-journald.service" in units.stdout, units
        # the inner ssh.service failed (the far host's sshd holds port 22): a failing verb's status comes back
        r = far.remote("systemctl", "-M", "inner", "is-active", "ssh.service")
        assert r.returncode != 0 and r.stdout.strip() == "failed", r
    finally:
        far.remote("terminate", "inner")


def test_what_cannot_work_says_so_in_one_line(far):
    # a key the far host does not know
    farhost.keygen(far.files.root / "stranger_key")
    wrong = farhost.ssh_config(far.files, far.address, name="wrong_key", key=far.files.root / "stranger_key")
    assert "far refused the login" in _one_line(far.remote("list", env={"NSDASH_SSH_COMMAND": f"ssh -F {wrong}"}))
    # a host key nobody vouched for
    (far.files.root / "empty_known_hosts").write_text("")
    unknown = farhost.ssh_config(far.files, far.address, name="unknown",
                                 known_hosts=far.files.root / "empty_known_hosts")
    assert "host key is unknown" in _one_line(far.remote("list", env={"NSDASH_SSH_COMMAND": f"ssh -F {unknown}"}))
    # a far side without nsdash
    assert "nsdash is not installed on far" in _one_line(
        far.remote("list", env={"NSDASH_REMOTE_COMMAND": "/nonexistent/nsdash"}))
    # a far side speaking another major version
    assert "far speaks nsdash protocol 2.0" in _one_line(
        far.remote("list", env={"NSDASH_REMOTE_COMMAND": f"{FAR_DIR}/future"}))
    # a far side that sends control sequences: shown escaped, never raw
    r = far.remote("list", env={"NSDASH_REMOTE_COMMAND": f"{FAR_DIR}/hostile"})
    assert r.returncode == 0 and r.stdout == "\\x1b]0;pwned\\x07evil \\x1b[31mred\n", r
    # a port nobody listens on
    down = farhost.ssh_config(far.files, far.address, name="down", port=1)
    assert "cannot reach far" in _one_line(far.remote("list", env={"NSDASH_SSH_COMMAND": f"ssh -F {down}"}))
    # verbs that do not run over -H, and a foreground spawn
    assert "does not run over -H" in _one_line(far.remote("debug", "-M", "x", "1"))
    assert "needs --detach" in _one_line(far.remote("spawn", "-D", "/opt/busybox"))


def test_the_far_machine_left_nothing_in_its_state_dir(far):
    """Every nested machine above is gone on the far side (its own leak check)."""
    assert far.remote("list").stdout.splitlines()[1:] == ["No machines."]
    assert st.machine_dir(far.name).exists()  # the far host itself still runs until the module ends


def test_one_session_carries_several_verbs_at_once_and_says_when_it_is_lost(far, monkeypatch):
    """What a poller keeps per host (nsdash.remote.session): one connection, verbs on channels of it."""
    from nsdash.remote.protocol import RemoteError
    from nsdash.remote.session import Session
    from nsdash.remote.target import parse_target

    for key in ("HOME", "NSDASH_SSH_COMMAND"):
        monkeypatch.setenv(key, far.env[key])
    _bb(far, "ses")
    try:
        _wait_getty(far, "ses")
        with Session(parse_target("far")) as session:
            listing, status, top = session.run(["list", "-o", "json"], ["status", "-o", "json", "ses"],
                                               ["cgtop", "-b", "-n", "1"])
            assert [r.code for r in (listing, status, top)] == [0, 0, 0], (listing, status, top)
            assert "ses" in {m["machine"] for m in json.loads(listing.stdout)}
            assert json.loads(status.stdout)["state"] == "running"
            assert b"machine-ses.scope" in top.stdout
            assert _far_sessions(far) == 1  # one far session between refreshes, its verbs ended
            (missing,) = session.run(["status", "nosuch"])
            assert missing.code == 1 and b"no machine named 'nosuch'" in missing.stderr
            far.ssh(f"pkill -KILL -f '{farhost.SESSION_PATTERN}'")
            with pytest.raises(RemoteError, match="connection to far was lost"):
                session.run(["list"])
        assert _far_sessions(far) == 0
    finally:
        far.remote("terminate", "ses")


def test_list_over_several_hosts_shows_each_and_names_the_one_that_failed(far):
    # three hosts for ssh: the far host under two names, and a port nobody listens on
    blocks = [farhost.ssh_config(far.files, far.address, name=f"multi-{alias}", alias=alias, port=port).read_text()
              for alias, port in (("far", 22), ("far2", 22), ("down", 1))]
    config = far.files.root / "multi_config"
    config.write_text("".join(blocks))
    env = {**far.env, "NSDASH_SSH_COMMAND": f"ssh -F {config}"}
    _bb(far, "multi")
    try:
        _wait_getty(far, "multi")
        r = subprocess.run([*NSDASH, "-H", "far", "--host=far2", "-H", "down", "list"], capture_output=True,
                           text=True, cwd=REPO, env=env, timeout=60, stdin=subprocess.DEVNULL)
        assert r.returncode == 1, r
        lines = r.stdout.splitlines()
        assert lines[0].split() == ["HOST", "MACHINE", "CLASS", "SERVICE", "OS", "VERSION", "ADDRESSES", "STATE"]
        assert [line.split()[:2] for line in lines[1:3]] == [["far", "multi"], ["far2", "multi"]], r.stdout
        assert lines[-1] == "2 machines listed on 2 of 3 hosts."
        assert "cannot reach down" in _one_line(r)
        r = subprocess.run([*NSDASH, "-H", "far", "-H", "far2", "list", "-o", "json"], capture_output=True,
                           text=True, cwd=REPO, env=env, timeout=60, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r
        assert sorted((m["host"], m["machine"], m["state"]) for m in json.loads(r.stdout)) == [
            ("far", "multi", "running"), ("far2", "multi", "running")]
        r = subprocess.run([*NSDASH, "-H", "far", "-H", "far2", "status", "multi"], capture_output=True, text=True,
                           cwd=REPO, env=env, timeout=60, stdin=subprocess.DEVNULL)
        assert "several hosts work with 'list' only" in _one_line(r)
    finally:
        far.remote("terminate", "multi")
