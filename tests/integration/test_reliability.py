"""Reliability regressions: console attach across systemd's console hangups, start-up
handshake failures cleaned up, attach on high fds.  Real machines, real PTYs."""

from __future__ import annotations

import os
import signal
import time

import pytest
from conftest import run_nsdash

from nsdash.launcher import client
from nsdash.machines import state as st


def _cleanup(name: str) -> None:
    d = st.machine_dir(name)
    if st.supervisor_alive(d):
        run_nsdash("terminate", name, timeout=30)
    if st.supervisor_alive(d):
        s = st.read_state(d)
        if s:
            os.kill(s.supervisor, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while st.supervisor_alive(d) and time.monotonic() < deadline:
            time.sleep(0.05)
    if d.exists():
        from nsdash.launcher.orphans import clean_orphan

        clean_orphan(name)


@pytest.fixture
def detached(machine_name):
    names: list[str] = []

    def start(*args: str, name: str = machine_name) -> None:
        names.append(name)
        r = run_nsdash("spawn", "--detach", "-M", name, *args)
        assert r.returncode == 0, r.stderr

    yield start
    for n in names:
        _cleanup(n)


def _read_until(session: client.ConsoleSession, needle: bytes, timeout: float) -> bytes:
    seen = bytearray()
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {needle!r} within {timeout} s; got {bytes(seen[-500:])!r}"
        got = session.read(timeout=min(left, 1.0))
        assert got is not None, f"the supervisor closed the console; got {bytes(seen[-500:])!r}"
        data, events = got
        assert not [e for e in events if e.get("event") == "error"], events
        seen += data
    return bytes(seen)


def test_attach_to_booted_debian_reaches_the_login_prompt(detached, debian_cache, machine_name):
    """systemd and getty hang the console up while booting: attaching (with a window size)
    before, during and after that must keep working and show the login prompt."""
    detached("-xbD", str(debian_cache))
    early = client.attach(machine_name, rows=30, cols=100)
    try:
        _read_until(early, b"login:", 60)
        # Attach again now that getty owns (and has hung up) the console, and resize.
        with client.attach(machine_name, rows=40, cols=120, replay=0) as late:
            late.resize(41, 121)
            late.send(b"\r")  # getty prints the prompt again
            _read_until(late, b"login:", 30)
    finally:
        early.close()
    assert client.status(machine_name)["state"] == "running"


def test_console_session_reads_on_a_descriptor_above_1023(detached, busybox_tree, machine_name):
    """select() cannot watch fd 1024 or above; the console read must still work there."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1100:
        pytest.skip("the hard open-file limit is below 1100")
    detached("-bD", str(busybox_tree))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1100), hard))
    filler: list[int] = []
    try:
        while True:  # use up the low descriptors so the session's socket lands above 1023
            fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            filler.append(fd)
            if fd >= 1030:
                break
        with client.attach(machine_name, replay=0) as session:
            assert session.fileno() > 1023
            session.send(b"\r")  # getty on the console prompts again
            _read_until(session, b"login:", 20)
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
