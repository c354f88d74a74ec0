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


class FloodSession:
    """Console bytes as fast as the pane takes them (the machine side of `cat bigfile`)."""

    def __init__(self, data: bytes) -> None:
        self.parts = chunks(data)
        self.i = 0
        self.sent = 0

    def read(self, timeout=None):
        part = self.parts[self.i % len(self.parts)]
        self.i += 1
        self.sent += len(part)
        return part, []

    def send(self, data: bytes) -> None:
        pass

    def resize(self, rows: int, cols: int) -> None:
        pass

    def close(self) -> None:
        pass


async def ui_lag(flood: bool, seconds: float = 3.0) -> tuple[float, float, float]:
    """How late the UI's event loop runs a 20 ms timer while the console pane takes a flood.

    A key press waits for the same loop, so the lateness bounds the extra
    key-to-screen latency the flood causes.  Returns (median lag, max lag, MB/s fed).
    """
    import asyncio

    from textual.app import App

    from nsdash.tui.console.connection import ConsoleConnection
    from nsdash.tui.widgets.console_pane import ConsolePane

    session = FloodSession(cat_stream(4 << 20) if flood else b"")
    lags: list[float] = []

    class Bench(App):
        def compose(self):
            yield ConsolePane()

    app = Bench()
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.query_one(ConsolePane)
        if flood:
            conn = ConsoleConnection("flood", pane.model, lambda reason: None,
                                     attach=lambda name, rows, cols: session)
            pane.attach("flood", conn)
        await pilot.pause(0.3)
        t_start, sent0 = time.perf_counter(), session.sent
        while time.perf_counter() - t_start < seconds:
            t0 = time.perf_counter()
            await asyncio.sleep(0.02)
            lags.append(time.perf_counter() - t0 - 0.02)
        rate = (session.sent - sent0) / (time.perf_counter() - t_start) / 1e6
        pane.detach()
    lags.sort()
    return lags[len(lags) // 2], lags[-1], rate


def main() -> int:
    print(f"{'stream':<8} {'MB':>5} {'pyte MB/s':>10} {'nsdash MB/s':>12} {'ratio':>6}")
    for name, make, size in (("cat", cat_stream, 4 << 20), ("boot", boot_stream, 2 << 20)):
        data = make(size)
        parts = chunks(data)
        mb = len(data) / 1e6
        p = min(run_pyte(parts) for _ in range(2))
        m = min(run_model(parts) for _ in range(3))
        print(f"{name:<8} {mb:5.1f} {mb / p:10.2f} {mb / m:12.2f} {p / m:6.1f}x")
    import asyncio

    idle_med, idle_max, _ = asyncio.run(ui_lag(False))
    med, worst, rate = asyncio.run(ui_lag(True))
    print(f"UI event-loop lag (bounds key-to-screen delay): idle median {idle_med * 1000:.0f} ms, "
          f"max {idle_max * 1000:.0f} ms; while the pane takes a `cat` flood at {rate:.1f} MB/s: "
          f"median {med * 1000:.0f} ms, max {worst * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
