"""A key's effect on a terminal that reads slower than a flood is painted (issue 15).

The real `nsdash` runs on a PTY (160x48) whose other end reads at most RATE
bytes a second, as a slow link would (an ssh session over a thin line, a serial
console); a BusyBox machine floods its console (`yes > /dev/console`), shown in
the machine screen's console pane and followed in its journal pane.  `p` is
written to the terminal PRESSES times; each is timed until the journal border's
new filter text (≤notice, ≤warning, ≤err) is read from the terminal, i.e. until
the terminal has read everything the dashboard wrote before that frame.  Run it
with --repo on two checkouts to compare them.

Run as root: .venv/bin/python bench/bench_slow_terminal.py [--rate BYTES] [--presses N] [--repo CHECKOUT]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import random
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_flood_keys import FLOOD, MACHINE, PY, REPO, busybox_tree, leader, nsdash, percentile  # noqa: E402
from report import need_root  # noqa: E402

# What the journal's bottom edge says after each p, from no filter on (PRIORITY_STEPS); the last
# p (back to no filter) is pressed but not timed: " following " alone is on other frames too.
AFTER_P = ("≤notice  following", "≤warning  following", "≤err  following", None)


class SlowTerminal:
    """The PTY's other end, read at most RATE bytes a second; what it read kept in order."""

    def __init__(self, master: int, rate: int) -> None:
        self.master, self.rate = master, rate
        self.seen = bytearray()
        self.lock = threading.Lock()
        self.done = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        chunk = max(1, self.rate // 100)  # 100 reads a second
        while not self.done:
            started = time.monotonic()
            try:
                data = os.read(self.master, chunk)
            except OSError:
                return
            with self.lock:
                self.seen += data
            time.sleep(max(0.0, len(data) / self.rate - (time.monotonic() - started)))

    def mark(self) -> int:
        with self.lock:
            return len(self.seen)

    def wait(self, text: str, since: int, timeout: float) -> float | None:
        """Seconds until TEXT is read past offset SINCE (None: not within TIMEOUT)."""
        needle = text.encode()
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            with self.lock:
                found = self.seen.find(needle, max(0, since - len(needle)))
            if found >= 0:
                return time.monotonic() - started
            time.sleep(0.002)
        return None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=64 * 1024, help="bytes a second the terminal reads (default 64 KiB)")
    ap.add_argument("--presses", type=int, default=40, help="p presses while the machine floods (default 40)")
    ap.add_argument("--repo", type=Path, default=REPO, help="the checkout whose dashboard runs (default: this one)")
    args = ap.parse_args()
    need_root("bench_slow_terminal", "it starts a machine")
    state = Path(tempfile.mkdtemp(prefix="nsdash-slowterm-", dir="/run"))
    env = {**os.environ, "NSDASH_STATE_DIR": str(state), "PYTHONPATH": str(REPO)}
    r = nsdash(env, "spawn", "--detach", "-q", "-x", "-D", str(busybox_tree()), "-M", MACHINE, "/bin/sh", "-c", FLOOD)
    if r.returncode != 0:
        raise SystemExit(f"bench_slow_terminal: the machine did not start: {r.stderr.strip()}")
    go = Path(f"/proc/{leader(state)}/root/run/go")
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 48, 160, 0, 0))
    app = subprocess.Popen([PY, "-m", "nsdash"], stdin=slave, stdout=slave, stderr=slave, cwd=args.repo,
                           env={**env, "PYTHONPATH": str(args.repo), "TERM": "xterm-256color"},
                           start_new_session=True)
    os.close(slave)
    term = SlowTerminal(master, args.rate)
    times: list[float] = []
    missed = 0
    try:
        for what, key in (("keyflood", b""), ("Console: keyflood", b"a"), ("Priority", b"\x1d")):
            at = term.mark()
            os.write(master, key)
            if term.wait(what, at if key else 0, 60) is None:
                raise SystemExit(f"bench_slow_terminal: no {what!r} on the terminal")
            time.sleep(1.0)
        go.touch()
        time.sleep(3.0)
        for i in range(args.presses):
            expect = AFTER_P[i % len(AFTER_P)]
            at = term.mark()
            os.write(master, b"p")
            if expect is None:
                time.sleep(0.5)
                continue
            took = term.wait(expect, at, 30)
            if took is None:
                missed += 1
            else:
                times.append(took)
            time.sleep(random.uniform(0.1, 0.3))
        go.unlink(missing_ok=True)
    finally:
        app.terminate()
        try:
            app.wait(timeout=10)
        except subprocess.TimeoutExpired:
            app.kill()
            app.wait()
        term.done = True
        os.close(master)
        nsdash(env, "terminate", MACHINE)
        subprocess.run(["rm", "-rf", str(state)], check=False)
    ms = [t * 1000 for t in times]
    print(f"terminal reads {args.rate} B/s; dashboard {args.repo}; load {os.getloadavg()[0]:.1f}")
    if ms:
        print(f"flood key p: key to its frame read, median {statistics.median(ms):.0f} ms, "
              f"p95 {percentile(ms, 0.95):.0f} ms, max {max(ms):.0f} ms over {len(ms)} keys; {missed} not within 30 s")
    else:
        print(f"no key's frame was read within 30 s ({missed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
