"""Console throughput: nsdash's terminal model and console pane against plain pyte.

Two streams, the same bytes for everyone in the same 4 KiB chunks (what a
PTY read returns):
- cat:  `cat` of a text file, plain ASCII lines ending in CR LF;
- boot: verbose systemd boots as a serial console shows them: kernel lines,
  "[  OK  ] Started ..." lines in ESC[0;32m / ESC[0;1;39m / ESC[0m, FAILED
  lines, ephemeral "A start job is running" lines that CR + ESC[K overwrite,
  and agetty clearing the screen (ESC[H ESC[2J) before its login prompt.

Measured, in one run:
- plain pyte: pyte.Screen(80, 24) fed through pyte.ByteStream (the peer);
- model: nsdash's TerminalModel(80, 24) alone, alternated with plain pyte: every byte
  parsed (its own row in the summary, "console model alone");
- pane: the real ConsolePane in a headless Textual app (app.run_test, 120x40),
  fed through its real ConsoleConnection reader thread by a session that hands
  out the stream as fast as it is read.  Throughput runs until the last byte
  is on a painted frame (Textual calls the pane's render_line for a frame
  whose snapshot includes it).  Meanwhile a key is pressed every 100 ms; the session
  echoes it into the stream as a machine's tty would, and key-to-screen
  latency runs from the press to the first painted frame that includes the
  echo.  After the flood, one more key's echo must be readable on screen.
After a key the pane's reader keeps to the stream's tail until what it read after the key
is consumed (connection.ECHO_WINDOW): that skips more of a flood, so the pane's figure
counts it too.
A third stream, yes: `yes > /dev/console` (one-letter lines), handed to the
pane as fast as it reads, twice: as the pane runs (skipping all but the tail
of a backlog it cannot parse in time) and with skipping turned off (BEHIND
unbounded: every byte parsed, as before the flood fix).  For it the table
shows key->machine (the key's effect: its bytes sent to the machine, from the
press), the most unparsed bytes held, the history lines held and MB skipped.
Run: .venv/bin/python bench/bench_console.py [MB for the pane, default 24] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import random
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pyte  # noqa: E402
from report import Report  # noqa: E402

from nsdash.tui.console.terminal import TerminalModel  # noqa: E402

CHUNK = 4096
WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "nsdash", "container", "cgroup", "journal"]
UNITS = [("systemd-journald.service", "Journal Service"), ("dbus.service", "D-Bus System Message Bus"),
         ("getty@tty1.service", "Getty on tty1"), ("systemd-logind.service", "User Login Management"),
         ("systemd-udevd.service", "Rule-based Manager for Device Events and Files"),
         ("networking.service", "Raise network interfaces"), ("cron.service", "Regular background program processing daemon"),
         ("ssh.service", "OpenBSD Secure Shell server"), ("systemd-tmpfiles-setup.service", "Create Volatile Files and Directories"),
         ("NetworkManager.service", "Gestionnaire de connexions réseau"), ("local-fs.target", "Local File Systems"),
         ("system-getty.slice", "Slice /system/getty"), ("dev-hugepages.mount", "Huge Pages File System")]
VERBS = ["Started", "Started", "Started", "Reached target", "Created slice", "Mounted", "Listening on", "Finished"]
OK = "[\x1b[0;32m  OK  \x1b[0m] "
HL, N = "\x1b[0;1;39m", "\x1b[0m"


def cat_stream(size: int) -> bytes:
    rnd = random.Random(1)
    out, n = [], 0
    while n < size:
        line = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(3, 16))) + "\r\n"
        out.append(line)
        n += len(line)
    return "".join(out).encode()


def _one_boot(rnd: random.Random, number: int) -> str:
    out = [f"\r\n-- nsdash: boot {number} --\r\n"]
    t = 0.0
    for _ in range(40):
        t += rnd.random() / 20
        out.append(f"[{t:12.6f}] " + " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(4, 12))) + "\r\n")
    out.append("\r\nWelcome to \x1b[1mDebian GNU/Linux 12 (bookworm)\x1b[0m!\r\n\r\n")
    ephemeral = False
    for _ in range(220):
        unit, desc = rnd.choice(UNITS)
        lead = "\r\x1b[K" if ephemeral else ""
        ephemeral = False
        roll = rnd.random()
        if roll < 0.06:  # a job that takes a while: the cylon repaints one line
            for second in range(1, 4):
                stars = ("*  ", " * ", "  *")[second % 3]
                out.append(f"{lead}[\x1b[0;31m{stars[0]}\x1b[0;1;31m{stars[1]}\x1b[0m\x1b[0;31m{stars[2]}   \x1b[0m] "
                           f"A start job is running for {HL}{desc}{N} ({second}s / 1min 30s)\r")
                lead = "\r\x1b[K"
            ephemeral = True
        elif roll < 0.08:
            out.append(f"{lead}[\x1b[0;1;31mFAILED\x1b[0m] Failed to start {HL}{unit}{N} - {desc}.\r\n"
                       f"See 'systemctl status {unit}' for details.\r\n")
        elif roll < 0.25:
            out.append(f"{lead}         Starting {HL}{unit}{N} - {desc}...\r\n")
        else:
            out.append(f"{lead}{OK}{rnd.choice(VERBS)} {HL}{unit}{N} - {desc}.\r\n")
    out.append("\x1b[H\x1b[2J\r\nDebian GNU/Linux 12 demo tty1\r\n\r\ndemo login: ")
    return "".join(out)


def boot_stream(size: int) -> bytes:
    rnd = random.Random(2)
    out, n = [], 0
    while n < size:
        boot = _one_boot(rnd, len(out) + 1).encode()
        out.append(boot)
        n += len(boot)
    return b"".join(out)


def yes_stream(size: int) -> bytes:
    return b"y\r\n" * (size // 3)


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
    """The machine side of a console flood: hands out the stream as fast as it is read, echoes keys."""

    def __init__(self, data: bytes, repeat: int = 1) -> None:
        self.parts = chunks(data) * repeat
        self.i = 0
        self.handed = 0  # bytes handed to the reader so far (stream and echoes)
        self.stream_end = -1  # offset after the stream's last byte, once handed
        self.keys: queue.Queue[bytes] = queue.Queue()
        self.key_times: list[float] = []  # when each key reached the machine
        self.echoes: list[int] = []  # offset after each echo, in the order of the keys
        self.started = threading.Event()
        self.t_start = 0.0

    def read(self, timeout=None):
        if not self.started.is_set():
            self.t_start = time.perf_counter()
            self.started.set()
        out = b""
        while not self.keys.empty():
            out += b"\x1b[7m<" + self.keys.get() + b">\x1b[0m"
            self.echoes.append(self.handed + len(out))
        if self.i < len(self.parts):
            out += self.parts[self.i]
            self.i += 1
            if self.i == len(self.parts):
                self.stream_end = self.handed + len(out)
        self.handed += len(out)
        if not out:
            time.sleep(0.01)
        return out, []

    def send(self, data: bytes) -> None:
        self.key_times.append(time.perf_counter())
        self.keys.put(data)

    def resize(self, rows: int, cols: int) -> None:
        pass

    def close(self) -> None:
        pass


async def through_pane(data: bytes, repeat: int = 1) -> dict[str, float]:
    """Feed DATA through the real ConsolePane; see the module docstring."""
    from textual import events
    from textual.app import App

    from nsdash.tui.console.connection import ConsoleConnection
    from nsdash.tui.widgets.console_pane import ConsolePane

    painted: list[tuple[float, int]] = []  # (time, bytes the frame shows)

    class MeasuredPane(ConsolePane):
        def render_line(self, y: int):
            # The first line Textual paints of a frame (only changed lines are painted).
            if not painted or painted[-1][1] != self.shown_bytes:
                painted.append((time.perf_counter(), self.shown_bytes))
            return super().render_line(y)

    class Bench(App):
        def compose(self):
            yield MeasuredPane()

    def first_paint(offset: int) -> float | None:
        return next((t for t, shown in painted if shown >= offset), None)

    session = FloodSession(data, repeat)
    app = Bench()
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.query_one(MeasuredPane)
        pane.focus()
        await pilot.pause(0.2)
        conn = ConsoleConnection("flood", pane.model, lambda reason: None,
                                 attach=lambda name, rows, cols: session)
        pane.attach("flood", conn)
        presses: list[float] = []
        while session.stream_end < 0:
            # As the terminal driver does: a key event posted to the app (pilot.press
            # would wait for the app to go idle, which it does not under a flood).
            await asyncio.sleep(0.1)
            presses.append(time.perf_counter())
            app.post_message(events.Key("x", "x"))
        deadline = time.perf_counter() + 60
        while (len(session.echoes) < len(presses) or first_paint(session.handed) is None) \
                and time.perf_counter() < deadline:
            await asyncio.sleep(0.005)
        app.post_message(events.Key("z", "z"))
        await asyncio.sleep(0.3)
        painted_lines = ["".join(seg.text for seg in ConsolePane.render_line(pane, y)) for y in range(pane.size.height)]
        echo_on_screen = any("<z>" in line for line in painted_lines)
        pane.detach()
    end = first_paint(session.stream_end)
    lat = [shown - t for t, offset in zip(presses, session.echoes, strict=False)
           if (shown := first_paint(offset)) is not None]
    to_machine = [got - t for t, got in zip(presses, session.key_times, strict=False)]
    return {"held": conn.max_backlog, "history": pane.model.history_length,
            "skipped": pane.model.bytes_skipped / 1e6,
            "mbps": session.stream_end / ((end or float("nan")) - session.t_start) / 1e6,
            "keys": len(presses), "shown": len(lat),
            "lat_med": statistics.median(lat) if lat else float("nan"), "lat_max": max(lat, default=float("nan")),
            "to_machine": statistics.median(to_machine) if to_machine else float("nan"),
            "echo_on_screen": echo_on_screen}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The size of the pane's streams (`mb`) and `json` (bench/summary.py passes `4` with --quick)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mb", nargs="?", type=float, default=24.0,
                    help="MB of the cat and boot streams fed through the pane; the unskipped yes "
                         "flood is a quarter of it (default 24; bench/summary.py --quick: 4)")
    ap.add_argument("--json", action="store_true",
                    help="the rows as one JSON line on stdout, the table on stderr (bench/summary.py)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = Report("console", args.json)
    pane_mb = args.mb
    with report.capture():
        print("Console throughput, MB/s (ratio to plain pyte on the same bytes)")
        print(f"{'stream':<6} {'plain pyte':>10} {'model':>16} {'pane (to screen)':>18} "
              f"{'key->screen during pane flood':>32}")
        for name, make in (("cat", cat_stream), ("boot", boot_stream)):
            small = chunks(make(2 << 20))
            mb = sum(map(len, small)) / 1e6
            # Alternated, so that a change in the machine's load falls on both.
            pytes, models = [], []
            for _ in range(2):
                pytes.append(run_pyte(small))
                models += [run_model(small), run_model(small)]
            p = mb / min(pytes)
            m = mb / min(models)
            r = asyncio.run(through_pane(make(int(pane_mb * 1e6))))
            keys = (f"median {r['lat_med'] * 1000:.0f} ms, max {r['lat_max'] * 1000:.0f} ms "
                    f"({r['shown']}/{r['keys']} keys; key->machine median {r['to_machine'] * 1000:.0f} ms)")
            print(f"{name:<6} {p:10.2f} {m:8.2f} ({m / p:4.1f}x) {r['mbps']:8.2f} ({r['mbps'] / p:4.1f}x)   {keys}"
                  + ("" if r["echo_on_screen"] else "  [last echo NOT on screen]"))
            # Higher is better here: the ratio is nsdash's speed over plain pyte's.  The model
            # parses every byte; the pane's figure also gains from the flood skip (bytes that
            # would scroll by unseen are not parsed).
            report.row(f"console model alone, {name} stream (MB/s)", m, "plain pyte", p, "MB/s",
                       spread=(mb / max(models) / p, mb / min(models) / p), better="higher")
            report.row(f"console pane, {name} stream (MB/s)", r["mbps"], "plain pyte", p, "MB/s",
                       spread=(r["mbps"] * min(pytes) / mb, r["mbps"] * max(pytes) / mb), better="higher",
                       note=f"key->screen median {r['lat_med'] * 1000:.0f} ms")
        print()
        print("Flood (yes), through the pane: key->machine is the key's effect; held: unparsed bytes at most")
        from nsdash.tui.console import connection

        # As the pane runs: 2 GB (it skips most); parse all: PANE_MB (it parses well under 1 MB/s),
        # with no skip at all (not after a key either: ECHO_WINDOW 0).
        for label, behind, echo, repeat in (("skipping", connection.BEHIND, connection.ECHO_WINDOW, 2000),
                                            ("parse all", 1 << 40, 0.0, int(pane_mb / 4))):
            connection.BEHIND, connection.ECHO_WINDOW = behind, echo
            r = asyncio.run(through_pane(yes_stream(1 << 20), repeat))
            print(f"{label:<10} to screen {r['mbps']:7.2f} MB/s  key->machine median {r['to_machine'] * 1000:4.0f} ms"
                  f"  key->screen median {r['lat_med'] * 1000:5.0f} ms, max {r['lat_max'] * 1000:5.0f} ms"
                  f"  held {r['held'] / 1024:8.0f} KiB  history {r['history']} lines  skipped {r['skipped']:.1f} MB"
                  + ("" if r["echo_on_screen"] else "  [last echo NOT on screen]"))
    report.done()
    return 0

if __name__ == "__main__":
    sys.exit(main())
