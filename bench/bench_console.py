"""Console throughput: bytes/s through nsdash's terminal model against plain pyte.

Both get the same bytes in the same 4 KiB chunks (what a PTY read returns),
into an 80x24 screen: a `cat` of a text file, and a coloured verbose boot.
Run: .venv/bin/python bench/bench_console.py
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyte  # noqa: E402

from nsdash.tui.console.terminal import TerminalModel  # noqa: E402

CHUNK = 4096


def cat_stream(size: int) -> bytes:
    rnd = random.Random(1)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "nsdash", "container", "cgroup", "journal"]
    out, n = [], 0
    while n < size:
        line = " ".join(rnd.choice(words) for _ in range(rnd.randint(3, 16))) + "\r\n"
        out.append(line)
        n += len(line)
    return "".join(out).encode()


def boot_stream(size: int) -> bytes:
    rnd = random.Random(2)
    units = ["systemd-journald.service", "dbus.service", "getty@tty1.service", "systemd-logind.service"]
    out, n = [], 0
    while n < size:
        u = rnd.choice(units)
        line = f"[\x1b[0;32m  OK  \x1b[0m] Started \x1b[0;1;39m{u}\x1b[0m - Some description of it ünïcode.\r\n"
        out.append(line)
        n += len(line.encode())
    return "".join(out).encode()


def chunks(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def run_pyte(parts: list[bytes]) -> float:
    screen = pyte.Screen(80, 24)
    stream = pyte.ByteStream(screen)
    t = time.perf_counter()
    for p in parts:
        stream.feed(p)
    return time.perf_counter() - t


def run_model(parts: list[bytes]) -> float:
    model = TerminalModel(80, 24)
    t = time.perf_counter()
    for p in parts:
        model.feed(p)
    return time.perf_counter() - t


def main() -> int:
    print(f"{'stream':<8} {'MB':>5} {'pyte MB/s':>10} {'nsdash MB/s':>12} {'ratio':>6}")
    for name, make, size in (("cat", cat_stream, 4 << 20), ("boot", boot_stream, 2 << 20)):
        data = make(size)
        parts = chunks(data)
        mb = len(data) / 1e6
        p = min(run_pyte(parts) for _ in range(2))
        m = min(run_model(parts) for _ in range(3))
        print(f"{name:<8} {mb:5.1f} {mb / p:10.2f} {mb / m:12.2f} {p / m:6.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
