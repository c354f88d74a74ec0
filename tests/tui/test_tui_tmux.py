"""End to end: the real `nsdash` in a real terminal (tmux), keys typed, the screen read back."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nsdash.errors import NsdashError
from nsdash.launcher.spec import ContainerSpec
from nsdash.machines import client
from nsdash.machines import state as st

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]
REPO = Path(__file__).resolve().parents[2]


class Tmux:
    def __init__(self, name: str) -> None:
        self.session = f"nsdash-e2e-{name}"

    def start(self, command: list[str], cols: int = 140, rows: int = 40) -> None:
        env = {"NSDASH_STATE_DIR": os.environ["NSDASH_STATE_DIR"], "TERM": "xterm-256color",
               "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        env_args = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
        subprocess.run(["tmux", "new-session", "-d", "-s", self.session, "-x", str(cols), "-y", str(rows),
                        *env_args, "-c", str(REPO), " ".join(command)], check=True)
        subprocess.run(["tmux", "set-option", "-t", self.session, "remain-on-exit", "on"], check=True)

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.session], capture_output=True,
                              text=True).stdout

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.session, *keys], check=True)

    def wait(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared; the screen was:\n{screen}")
            time.sleep(0.1)

    def dead(self) -> bool:
        out = subprocess.run(["tmux", "display-message", "-p", "-t", self.session, "#{pane_dead}"],
                             capture_output=True, text=True).stdout.strip()
        return out == "1"

    def kill(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.session], capture_output=True)


def test_nsdash_in_a_real_terminal(busybox_tree, machine_name):
    client.spawn(ContainerSpec(directory=busybox_tree, machine=machine_name, boot=True), detach=True, notice=None)
    tmux = Tmux(machine_name)
    try:
        tmux.start([sys.executable, "-m", "nsdash"])
        tmux.wait("Machines")
        screen = tmux.wait(machine_name)
        assert "Control Group" in screen and "Control groups" in screen
        tmux.keys("s")
        tmux.wait("Spawn a machine")
        tmux.keys("Escape")
        deadline = time.monotonic() + 10
        while "Spawn a machine" in tmux.screen():
            assert time.monotonic() < deadline, "the form did not close"
            time.sleep(0.1)
        tmux.keys("a")  # the selected (only) machine's console
        tmux.wait("Console:")
        tmux.keys("Enter")
        tmux.wait("login:")
        tmux.keys("C-]")  # leave the console pane
        tmux.keys("Escape")  # back to the overview
        tmux.wait("Control groups")
        tmux.keys("q")
        deadline = time.monotonic() + 10
        while not tmux.dead():
            assert time.monotonic() < deadline, f"q did not quit:\n{tmux.screen()}"
            time.sleep(0.1)
        assert st.supervisor_alive(st.machine_dir(machine_name)), "quitting must leave the machine running"
    finally:
        tmux.kill()
        with contextlib.suppress(NsdashError, OSError):
            client.terminate(machine_name, wait=True)
