"""Helpers for the launcher's root tests: run a spec with a real PTY console, find PID 1."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import time
from collections.abc import Callable
from pathlib import Path

from nsdash.launcher import names
from nsdash.launcher.container import Container, Outcome
from nsdash.launcher.spec import ContainerSpec
from nsdash.system import cgroupfs, syscalls


def run_spec(spec: ContainerSpec, *, timeout: float = 20.0,
             on_output: Callable[[Container, bytes], None] | None = None,
             on_ready: Callable[[Container], None] | None = None,
             cgroup_layout: cgroupfs.Layout | None = None) -> tuple[Outcome, str]:
    """Run SPEC to the end with a PTY as its console; its outcome and console text (\\r\\n -> \\n).

    ON_OUTPUT sees the console text so far after each read; ON_READY is called
    once, when the payload sends READY=1; CGROUP_LAYOUT overrides the host's.
    """
    with Container(spec, console=True, cgroup_layout=cgroup_layout) as c:
        c.start()
        master = c.console_master
        assert master is not None
        os.set_blocking(master, True)
        # A slave of our own, as the supervisor keeps: the master reads no EIO between the
        # payload's exit and its reaping.
        slave = fcntl.ioctl(master, syscalls.TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            out, outcome = _serve(c, master, timeout, on_output, on_ready)
        finally:
            os.close(slave)
    return outcome, out.decode(errors="replace").replace("\r\n", "\n")


def _serve(c: Container, master: int, timeout: float, on_output, on_ready) -> tuple[bytes, Outcome]:
    """Read the console and the notify socket until the payload ends; then what is left."""
    out = b""
    deadline = time.monotonic() + timeout
    ready_seen = False
    while True:
        outcome = c.poll()
        if outcome is not None:
            break
        if time.monotonic() > deadline:
            c.signal(signal.SIGKILL, "all")
            raise TimeoutError(f"container did not end in {timeout} s; output so far:\n{out[-2000:]!r}")
        fds = [master] + ([c.notify_fd] if c.notify_fd is not None else [])
        ready, _, _ = select.select(fds, [], [], 0.05)
        if c.notify_fd in ready:
            c.read_notify()
            if on_ready is not None and c.ready and not ready_seen:
                ready_seen = True
                on_ready(c)
        if master in ready:
            out += os.read(master, 65536)
            if on_output is not None:
                on_output(c, out)
    os.set_blocking(master, False)
    try:
        while chunk := os.read(master, 65536):
            out += chunk
    except OSError:
        pass
    return out, outcome


def leader_of(machine: str) -> int | None:
    """The host PID of a machine's PID 1, found from its cgroup (NSpid ends in 1)."""
    layout = cgroupfs.detect()
    base = layout.unified_path(names.scope_path(machine)) or layout.v1_path("pids", names.scope_path(machine))
    if base is None:
        return None
    for sub, _, _ in os.walk(base):
        try:
            pids = Path(sub, "cgroup.procs").read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("NSpid:") and line.split()[-1] == "1":
                    return int(pid)
    return None


