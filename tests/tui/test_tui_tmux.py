"""End to end: the real `nsdash` in a real terminal (tmux), keys typed, the screen read back."""

from __future__ import annotations

import contextlib
import shutil
import sys
import time

import pytest
from _tmux import Tmux

from nsdash.errors import NsdashError
from nsdash.launcher.spec import ContainerSpec
from nsdash.machines import client
from nsdash.machines import state as st

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]


def test_nsdash_in_a_real_terminal(busybox_tree, machine_name):
    client.spawn(ContainerSpec(directory=busybox_tree, machine=machine_name, boot=True), detach=True, notice=None)
    tmux = Tmux(machine_name)
    try:
        tmux.start([sys.executable, "-m", "nsdash"])
        tmux.wait("Machines")
        screen = tmux.select(machine_name)  # the host's other machines are listed too (machined's)
        assert "Control Group" in screen and "Control groups" in screen
        tmux.keys("s")
        tmux.wait("Spawn a machine")
        tmux.keys("Escape")
        deadline = time.monotonic() + 10
        while "Spawn a machine" in tmux.screen():
            assert time.monotonic() < deadline, "the form did not close"
            time.sleep(0.1)
        tmux.keys("a")  # the selected machine's console
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
