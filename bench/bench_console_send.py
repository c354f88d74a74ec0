#!/usr/bin/env python3
"""What sending a key costs the console pane's UI thread, and how soon the key reaches the console.

Since send27 the pane's ConsoleConnection.send() only queues a key and a sender thread of the
connection writes it (a peer that stops reading never blocks the UI thread); before, the UI
thread wrote it itself.  The queue costs one thread hand-off per key: this bench says what
that adds.  The connection runs as in the dashboard, on the local console's client
(ConsoleSession) over a socket pair; the other end is a child process that takes each key's
frame and notes when (CLOCK_MONOTONIC, shared by both), and in the `flood` mode writes
console output as fast as the connection reads it (its reader parses: it competes for the GIL).
Keys come 10-30 ms apart, as typed.  Per key: the UI thread's time in send(), and the time
from send() to the key read by the console end.  This checkout and --peer's run alternately.

    .venv/bin/python bench/bench_console_send.py --peer /work/main --runs 3 --keys 200
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import select
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HEADER = 5  # a console frame: its type (1 byte) and its payload's length (4, big-endian)


def console_end(sock: socket.socket, flood: bool, report: int) -> None:
    """The child: read key frames until END, noting when each key came; flood output meanwhile."""
    from nsdash.machines import protocol as proto

    sock.setblocking(False)
    frame = proto.frame(proto.FRAME_OUTPUT, b"y\r\n" * 5000)
    rest = memoryview(frame)  # what is left of the frame being written
    poller = select.poll()
    poller.register(sock, select.POLLIN | (select.POLLOUT if flood else 0))
    buf, came = bytearray(), {}
    while True:
        for _fd, mask in poller.poll():
            if mask & select.POLLOUT:
                with contextlib.suppress(BlockingIOError):
                    rest = rest[sock.send(rest):] or memoryview(frame)
            if mask & select.POLLIN:
                data = sock.recv(65536)
                now = time.monotonic()
                if not data:
                    os._exit(1)
                buf += data
                while len(buf) >= HEADER and len(buf) >= HEADER + int.from_bytes(buf[1:HEADER], "big"):
                    end = HEADER + int.from_bytes(buf[1:HEADER], "big")
                    kind, payload = bytes(buf[:1]), bytes(buf[HEADER:end])
                    del buf[:end]
                    if kind != proto.FRAME_INPUT:
                        continue
                    for key in payload.split(b";"):
                        if key == b"END":
                            os.write(report, json.dumps(came).encode())
                            os._exit(0)
                        if key:
                            came[key.decode()] = now


def one(flood: bool, keys: int) -> dict[str, object]:
    """One run in this process (its nsdash from PYTHONPATH): per key, send()'s time and the key's."""
    from nsdash.machines.client import ConsoleSession
    from nsdash.machines.protocol import LineReader
    from nsdash.tui.console import connection
    from nsdash.tui.console.terminal import TerminalModel

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        ours.close()
        os.close(r)
        console_end(theirs, flood, w)
    theirs.close()
    os.close(w)

    class Control:  # what ConsoleSession uses of client.Control
        sock, lines = ours, LineReader()

        def close(self) -> None:
            ours.close()

    session = ConsoleSession(Control())  # type: ignore[arg-type]
    conn = connection.ConsoleConnection("bench", TerminalModel(80, 24), lambda reason: None,
                                        attach=lambda name, rows, cols: session)
    conn.start()
    time.sleep(0.3)  # attached, and the flood (if any) under way
    sent: dict[str, tuple[float, float]] = {}
    for i in range(keys):
        time.sleep(random.uniform(0.010, 0.030))
        key = f"{i:05d}"
        start = time.monotonic()
        conn.send(f"{key};".encode())
        sent[key] = (start, time.monotonic())
    conn.send(b"END;")
    report = b""
    while chunk := os.read(r, 1 << 20):
        report += chunk
    os.waitpid(pid, 0)
    conn.close()
    came = json.loads(report)
    return {"module": connection.__file__,
            "ui_us": [(done - start) * 1e6 for start, done in sent.values()],
            "arrival_ms": [(came[k] - start) * 1e3 for k, (start, _) in sent.items() if k in came]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer", type=Path, help="another checkout, run alternately")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keys", type=int, default=200)
    ap.add_argument("--one", choices=("rest", "flood"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one == "flood", a.keys)))
        return
    sides = [("this", REPO)] + ([("peer", a.peer.resolve())] if a.peer else [])
    loads = [os.getloadavg()[0]]
    got: dict[tuple[str, str], dict[str, list[float]]] = {}
    for run in range(a.runs):
        for mode in ("rest", "flood"):
            for name, checkout in (sides if run % 2 == 0 else sides[::-1]):
                out = subprocess.run([sys.executable, __file__, "--one", mode, "--keys", str(a.keys)],
                                     env={**os.environ, "PYTHONPATH": str(checkout)}, check=True,
                                     capture_output=True, text=True).stdout
                result = json.loads(out)
                assert str(result["module"]).startswith(str(checkout)), result["module"]
                slot = got.setdefault((name, mode), {"ui_us": [], "arrival_ms": [], "runs": []})
                slot["ui_us"] += result["ui_us"]
                slot["arrival_ms"] += result["arrival_ms"]
                slot["runs"].append(statistics.median(result["arrival_ms"]))
        loads.append(os.getloadavg()[0])
    print(f"{a.runs} runs x {a.keys} keys per side and mode; load {min(loads):.1f}-{max(loads):.1f}")
    for (name, mode), slot in sorted(got.items(), key=lambda item: (item[0][1], item[0][0])):
        ui, arrival = sorted(slot["ui_us"]), sorted(slot["arrival_ms"])

        def q(values: list[float], p: float) -> float:
            return values[min(len(values) - 1, int(p * len(values)))]

        runs = ", ".join(f"{m:.3f}" for m in slot["runs"])
        print(f"{mode:5} {name:4}  send() on the UI thread: median {q(ui, 0.5):7.1f} us, p90 {q(ui, 0.9):7.1f}, "
              f"max {ui[-1]:8.1f}   key at the console: median {q(arrival, 0.5):6.3f} ms, "
              f"p90 {q(arrival, 0.9):6.3f}, max {arrival[-1]:7.2f} (run medians {runs})")


if __name__ == "__main__":
    main()
