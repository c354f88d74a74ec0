"""`python -m nsdash.tui.screenshots DIR`: SVG screenshots of the real dashboard over the demo machines.

Starts demo-busybox and demo-debian (as `nsdash --demo` does) unless they are
running, drives the real app headless with the pilot, and writes overview.svg,
machine-view.svg, console.svg, spawn-form.svg and images.svg.  Machines it started are
powered off again afterwards; machines that were already running are left alone.
Without root (or without a working launcher) it says so and falls back to the
fixed sample data, naming the files accordingly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path

from nsdash.errors import NsdashError

SIZE = (150, 42)


async def _wait(pilot, condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise NsdashError(f"screenshots: timed out waiting for {what}")
        await pilot.pause(0.1)


async def _shoot_real(out: Path, seconds: float) -> list[Path]:
    from textual.widgets import Input

    from nsdash.tui.app import NsdashApp
    from nsdash.tui.screens.machine import MachineScreen
    from nsdash.tui.widgets.console_pane import ConsolePane
    from nsdash.tui.widgets.machine_list import MachineList

    app = NsdashApp(interval=1.0)
    written: list[Path] = []

    def save(name: str) -> None:
        written.append(Path(app.save_screenshot(filename=name, path=str(out))))

    async with app.run_test(size=SIZE) as pilot:
        ml = app.screen.query_one(MachineList)
        await _wait(pilot, lambda: {"demo-busybox", "demo-debian"} <= set(ml._rows), 60, "the demo machines")
        ml.focus()
        ml.select("demo-busybox")
        await pilot.pause(seconds)  # let the sparklines and the journal fill a little
        save("overview.svg")
        await pilot.press("v")
        await _wait(pilot, lambda: isinstance(app.screen, MachineScreen), 10, "the machine view")
        await pilot.pause(2)
        save("machine-view.svg")
        await pilot.press("a")
        pane = app.screen.query_one(ConsolePane)
        await _wait(pilot, lambda: pane.connection is not None, 10, "the console")
        await pilot.press("enter")
        await _wait(pilot, lambda: any("login:" in line for line in pane.screen_text()), 30, "the login prompt")
        await pilot.press(*"root", "enter")
        await pilot.pause(1.5)
        await pilot.press(*"ps", "enter")
        await pilot.pause(1.0)
        save("console.svg")
        await pilot.press("ctrl+right_square_bracket")
        await pilot.press("escape")
        await pilot.press("s")
        await _wait(pilot, lambda: app.screen.__class__.__name__ == "SpawnScreen", 10, "the spawn form")
        await pilot.pause(0.5)
        app.screen.query_one("#spawn-name", Input).value = "web-1"
        save("spawn-form.svg")
        await pilot.press("escape")
        await _shoot_images(app, pilot, save)
    return written


async def _shoot_images(app, pilot, save) -> None:
    """images.svg: the Images panel.  Where the host has no images, it lists the demo trees'
    cache instead (only read), so the picture shows the demo machines running on them."""
    from nsdash.machines import images
    from nsdash.tui.screens.images import ImagesScreen

    saved = os.environ.get("NSDASH_IMAGE_PATH")
    if not images.discover() and saved is None:
        from nsdash.demo import trees

        os.environ["NSDASH_IMAGE_PATH"] = str(trees.CACHE)
    try:
        await pilot.press("I")
        await _wait(pilot, lambda: isinstance(app.screen, ImagesScreen) and app.screen.loaded, 60, "the images")
        await pilot.pause(1)
        save("images.svg")
        await pilot.press("escape")
    finally:
        if saved is None:
            os.environ.pop("NSDASH_IMAGE_PATH", None)


async def _shoot_sample(out: Path) -> list[Path]:
    from nsdash.tui import sample_data as sd
    from nsdash.tui.app import NsdashApp
    from nsdash.tui.messages import JournalLines, SnapshotReady

    app = NsdashApp(poll=False, clock=lambda: sd.T0)
    written: list[Path] = []
    async with app.run_test(size=SIZE) as pilot:
        for i in range(30):
            app.post_message(SnapshotReady(sd.snapshot(i)))
            await pilot.pause()
        app.post_message(JournalLines(("demo-debian",), sd.JOURNAL, reset=True))
        await pilot.pause()
        written.append(Path(app.save_screenshot(filename="sample-overview.svg", path=str(out))))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nsdash.tui.screenshots")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--settle", type=float, default=8.0, help="seconds of live data before the overview")
    parser.add_argument("--sample", action="store_true", help="use the fixed sample data, not real machines")
    args = parser.parse_args(argv)
    args.directory.mkdir(parents=True, exist_ok=True)
    if args.sample or os.geteuid() != 0:
        if not args.sample:
            sys.stderr.write("nsdash: screenshots of real machines need root; writing sample-data ones\n")
        paths = asyncio.run(_shoot_sample(args.directory))
    else:
        from nsdash.cli.dashboard import start_demo_machines
        from nsdash.machines import client

        started = start_demo_machines(lambda text: sys.stderr.write(text + "\n"))
        try:
            paths = asyncio.run(_shoot_real(args.directory, args.settle))
        finally:
            for name in started:
                with contextlib.suppress(NsdashError, OSError):
                    client.poweroff(name, wait=True)
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except NsdashError as e:
        sys.stderr.write(f"nsdash: {e.oneline()}\n")
        sys.exit(1)
