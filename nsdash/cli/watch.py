"""`nsdash _watch --interval S`: the far side of the dashboard over -H (hidden, internal).

Run by the far side's `nsdash _remote` on a channel of the dashboard's ssh
session (nsdash.remote.hosts.HostWatch), it stays running and writes one
watch line (nsdash.remote.watch) per interval: the machines as `list -o
json` gives them, and the cgroup tree and cgtop rows the local dashboard
would show, read by the dashboard's own readers (nsdash.monitor.host.
HostSnapshots: the same sampler, rates, machine map and cached machine list),
bounded as nsdash.remote.watch says.  One process for the whole session, not
one per refresh.

Its stdin takes the dashboard's wishes, one line each: a number is the new
interval in seconds (+ and - in the dashboard), an empty line asks for a line
at once (after an action).  Its stdin's end, or the session's hang-up, ends it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from nsdash.errors import UsageError
from nsdash.system.ready import readable

MIN_INTERVAL, MAX_INTERVAL = 0.25, 30.0


def _far_readers() -> Any:
    """HostSnapshots that keep `list -o json`'s entries and walk a bounded tree without processes."""
    from nsdash.cli.machinectl import machine_json
    from nsdash.monitor import tree
    from nsdash.monitor.host import HostSnapshots
    from nsdash.remote import watch

    class FarReaders(HostSnapshots):
        def __init__(self) -> None:
            super().__init__()
            self.tree_every = 1  # the bounded walk is cheap; each line carries the tree of now
            self.listed: list[dict[str, Any]] = []
            self.more = 0

        def _list_registry(self, errors: list[str]) -> list[Any]:
            found = super()._list_registry(errors)
            self.listed = [machine_json(m) for m in found]
            return found

        def _walk_tree(self) -> tuple[Any, dict[int, str]]:
            paths, self.more = bounded_cgroups(self.mount, watch.MAX_CGROUPS)
            return tree.from_paths(paths), {}

        def _with_links(self, machines: Any) -> Any:
            return machines  # the line does not carry links: do not read /proc/LEADER/net/dev

        def line(self) -> bytes:
            snap = self.snapshot()
            assert snap.tree is not None
            cgroups = [node.path for node in snap.tree.iter()]
            sent = set(cgroups)
            rows = [[r.path, r.tasks, r.cpu_percent, r.cpu_usec, r.memory, r.io_read_bps, r.io_write_bps]
                    for r in snap.rows if r.path in sent]
            machine_of = {path: name for path, name in snap.machine_of.items() if path in sent}
            return watch.encode(self.listed, cgroups, rows, machine_of, self.more)

    return FarReaders()


def bounded_cgroups(mount: str, most: int) -> tuple[list[str], int]:
    """Paths to send (parents first) and how many were left out: machine.slice's whole subtree
    first, then the top TOP_DEPTH levels of the rest, MOST in all."""
    from nsdash.monitor.tree import list_cgroups
    from nsdash.remote.watch import MACHINE_SLICE, TOP_DEPTH

    machines = list_cgroups(mount, MACHINE_SLICE)
    top = list_cgroups(mount, "/", depth=TOP_DEPTH)
    chosen = ["/"]
    seen = {"/"}
    # list_cgroups gives parents before children, so any prefix of either list hangs together
    for path in (*top[:1], *machines, *top):
        if path not in seen:
            seen.add(path)
            chosen.append(path)
    left = max(0, len(chosen) - most)
    return chosen[:most], left


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _wishes(data: bytes, interval: float) -> tuple[float, bool]:
    """The new interval and whether a line is wanted at once, from what came on stdin."""
    now = False
    for line in data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n"):
        text = line.strip()
        if not text:
            now = True
            continue
        try:
            interval = min(MAX_INTERVAL, max(MIN_INTERVAL, float(text)))
        except ValueError:
            continue
        now = True
    return interval, now


def serve(interval: float, out: int = 1, wishes: int = 0) -> int:
    readers = _far_readers()
    try:
        while True:
            _write(out, readers.line())
            deadline = time.monotonic() + interval
            while (left := deadline - time.monotonic()) > 0:
                if not readable([wishes], left):
                    break
                data = os.read(wishes, 4096)
                if not data:
                    return 0  # the dashboard is gone
                interval, now = _wishes(data, interval)
                if now:
                    break
    finally:
        readers.close()


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="nsdash _watch", add_help=False, exit_on_error=False)
    p.add_argument("--interval", type=float, default=1.0)
    try:
        ns, unknown = p.parse_known_args(argv)  # (argparse's own complaint would be a second line)
    except argparse.ArgumentError:
        unknown = argv
    if unknown:
        raise UsageError("bad arguments for 'nsdash _watch'", "it takes --interval SECONDS only")
    if sys.stdout.isatty():
        raise UsageError("'nsdash _watch' is the far side of the dashboard over -H",
                         "run 'nsdash -H HOST' for the dashboard")
    return serve(min(MAX_INTERVAL, max(MIN_INTERVAL, ns.interval)))
