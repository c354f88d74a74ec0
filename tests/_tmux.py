"""A real terminal for end-to-end tests: tmux on a server of the test's own (-L), so its
sessions, buffers and titles are the test's alone and no other tmux on the machine sees them."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SELECTED = re.compile(r"selected: (\S+)")  # the dashboard's status line


class Tmux:
    """One session ("dash") on the server named after NAME (a test's machine name)."""

    def __init__(self, name: str) -> None:
        self.socket = f"nsdash-test-{name}"
        self.session = "dash"

    def run(self, *args: str) -> str:
        # A clean environment: the server's becomes the app's, and pytest's COLUMNS/LINES would
        # make the app paint 80x24 inside a larger pane.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/root", "TERM": "xterm-256color"}
        return subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args], capture_output=True,
                              text=True, check=True, timeout=10, env=env).stdout

    def start(self, command: list[str], cols: int = 140, rows: int = 40) -> None:
        """COMMAND in a COLSxROWS pane, run from the checkout with this session's state directory;
        the pane stays when it exits (dead() tells)."""
        env = {"NSDASH_STATE_DIR": os.environ["NSDASH_STATE_DIR"], "TERM": "xterm-256color",
               "PYTHONPATH": str(REPO), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        env_args = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
        self.run("new-session", "-d", "-s", self.session, "-x", str(cols), "-y", str(rows), *env_args,
                 "-c", str(REPO), " ".join(command))
        self.run("set-option", "-t", self.session, "remain-on-exit", "on")

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.session)

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", self.session, *keys)

    def wait(self, text: str, timeout: float = 30.0) -> str:
        """The screen once TEXT is on it; the test fails with the screen after TIMEOUT s."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared; the screen was:\n{screen}")
            time.sleep(0.1)

    def select(self, name: str, timeout: float = 30.0) -> str:
        """The screen once the dashboard has machine NAME selected, its list's cursor moved there
        a row at a time.  The list holds every machine of the host (machined's too), sorted by
        name, so the test's own need not be the first row, where the cursor starts."""
        deadline = time.monotonic() + timeout
        screen = self.wait("selected: ", timeout)
        while (current := SELECTED.search(screen)[1]) != name:
            self.keys("Down" if current < name else "Up")
            while (now := SELECTED.search(screen := self.screen())) is None or now[1] == current:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{name} was never selected; the screen was:\n{screen}")
                time.sleep(0.1)
        return screen

    def dead(self) -> bool:
        """Whether the program in the pane has exited."""
        return self.run("display-message", "-p", "-t", self.session, "#{pane_dead}").strip() == "1"

    def kill(self) -> None:
        """The server gone, and its socket file too (tmux leaves it in /tmp/tmux-UID)."""
        try:
            path = self.run("display-message", "-p", "#{socket_path}").strip()
        except subprocess.CalledProcessError:
            path = ""  # no server: the session never started
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)
        if path:
            Path(path).unlink(missing_ok=True)
