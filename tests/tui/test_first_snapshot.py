"""`nsdash` takes the host's first snapshot in a thread while it imports Textual (issue 16: the
first full frame within 250 ms), and the poller takes over those readers and that snapshot."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading
from pathlib import Path

from _pollerkit import StubReaders, collect

from nsdash.tui.host_readers import FirstSnapshot, HostReaders
from nsdash.tui.poller import Poller

REPO = Path(__file__).resolve().parents[2]


def _run(code: str) -> subprocess.CompletedProcess:
    """CODE in a fresh interpreter whose stdin and stdout are a terminal (the dashboard asks)."""
    parent, child = pty.openpty()
    try:
        return subprocess.run([sys.executable, "-c", code], stdin=child, stdout=child, stderr=subprocess.PIPE,
                              text=True, cwd=REPO, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    finally:
        os.close(parent)
        os.close(child)


def _dashboard_stopped_by(probe: str) -> str:
    """What PROBE wrote on stderr: the dashboard's entry point run in a fresh interpreter after
    PROBE (code that may use sys), which ends the run with exit 7 once it has seen what it looks for."""
    out = _run(f"import sys\n{probe}from nsdash.cli import dashboard\ndashboard.main([])\n")
    assert out.returncode == 7, out.stderr
    return out.stderr


def test_the_readers_module_imports_no_toolkit():
    out = _run("import sys, nsdash.tui.host_readers; "
               "sys.stderr.write(' '.join(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')))")
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""


def test_nsdash_starts_the_first_snapshot_before_it_imports_textual():
    """The dashboard's entry point makes FirstSnapshot while Textual is not loaded yet, and hands
    it to the app (here the probe ends the run when it is made)."""
    assert _dashboard_stopped_by("import nsdash.tui.host_readers as hr\n"
                                 "class Probe:\n"
                                 "    def __init__(self):\n"
                                 "        sys.stderr.write('textual loaded: %s' % ('textual' in sys.modules))\n"
                                 "        raise SystemExit(7)\n"
                                 "hr.FirstSnapshot = Probe\n") == "textual loaded: False"


def test_the_poller_posts_the_first_snapshot_and_keeps_its_readers():
    """The real host's readers: made in FirstSnapshot's thread, their snapshot the poller's first
    post (the very object), the readers the poller's own, closed when it stops."""
    made_in: list[str] = []

    class Recorded(HostReaders):
        closed = 0

        def close(self) -> None:
            self.closed += 1
            super().close()

    def make() -> HostReaders:
        made_in.append(threading.current_thread().name)
        return Recorded()

    first = FirstSnapshot(make)
    posted, arrived, post = collect()
    poller = Poller(None, post, interval=30.0, first=first)
    poller.walk_tree_every(1)  # asked before the poller had its readers
    poller.start()
    try:
        assert arrived.acquire(timeout=60)
        readers = poller.readers
        assert readers is first.readers and isinstance(readers, HostReaders)
        assert posted[0].snapshot is first.snapshot and not posted[0].snapshot.errors
        assert posted[0].snapshot.rows and posted[0].snapshot.tree is not None
        assert made_in == ["nsdash-first-snapshot"]
        assert readers.tree_every == 1
        assert isinstance(readers, Recorded) and readers.closed == 0
    finally:
        poller.stop()
    assert readers.closed == 1
    first.close()  # taken by the poller: nothing more to close
    assert readers.closed == 1


def test_a_first_snapshot_that_failed_is_an_error_and_the_poller_goes_on():
    readers = StubReaders(fail_first=True)
    posted, arrived, post = collect()
    poller = Poller(None, post, interval=30.0, first=FirstSnapshot(lambda: readers))
    poller.start()
    try:
        assert arrived.acquire(timeout=30)
        assert "Input/output error" in posted[0].snapshot.errors[0]
        poller.refresh_now()  # the loop runs on those readers
        assert arrived.acquire(timeout=30)
        assert posted[1].snapshot.timestamp == 1.0 and not posted[1].snapshot.errors
        assert readers.snapshots == 2
    finally:
        poller.stop()
    assert readers.closed


async def test_an_app_that_never_polled_closes_the_first_snapshots_readers():
    from tuikit import sample_app

    readers = StubReaders()
    first = FirstSnapshot(lambda: readers)
    first._thread.join()  # made before the app ends: the app's close() closes them
    app = sample_app(first=first)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
    assert readers.closed


def test_readers_made_after_the_app_ended_are_closed_by_their_thread_and_quitting_never_waits():
    """A host read that takes its time (a process stuck in the kernel holds its cmdline): the
    app's close() returns at once, and the thread closes the readers once it has them."""
    go = threading.Event()
    readers = StubReaders()

    def slow() -> StubReaders:
        go.wait(60)
        return readers

    first = FirstSnapshot(slow)
    first.close()  # returns at once: nothing made yet
    assert not readers.closed
    go.set()
    first._thread.join(60)
    assert readers.closed and readers.snapshots == 1


def test_the_app_is_imported_without_ssl_and_ssl_imports_after():
    out = _run("import sys\n"
               "from nsdash.cli import dashboard\n"
               "with dashboard.asyncio_without_tls():\n"
               "    import nsdash.tui.app\n"
               "sys.stderr.write('%s %s %s|' % ('asyncio' in sys.modules, 'ssl' in sys.modules, '_ssl' in sys.modules))\n"
               "import ssl\n"
               "sys.stderr.write(str(ssl.OPENSSL_VERSION.startswith('OpenSSL')))\n")
    assert out.returncode == 0, out.stderr
    assert out.stderr == "True False False|True"


def test_nsdash_imports_the_app_without_ssl():
    """The dashboard's entry point imports the app inside asyncio_without_tls (an import hook
    ends the run when the app's module is asked for, telling what ssl is then)."""
    assert _dashboard_stopped_by("class Stop:\n"
                                 "    def find_spec(self, name, path=None, target=None):\n"
                                 "        if name == 'nsdash.tui.app':\n"
                                 "            sys.stderr.write(repr(sys.modules.get('ssl', 'absent')))\n"
                                 "            raise SystemExit(7)\n"
                                 "sys.meta_path.insert(0, Stop())\n") == "None"


def test_the_first_frame_loads_no_emoji_table():
    """Nothing on the dashboard is Rich markup with emoji codes (the tree's root label was:
    rich's table of 3,600 emoji names loaded before the first frame)."""
    out = _run("import asyncio, sys\n"
               "sys.path.insert(0, 'tests/tui')\n"
               "from tuikit import feed_sample, sample_app\n"
               "async def main():\n"
               "    app = sample_app()\n"
               "    async with app.run_test(size=(160, 48)) as pilot:\n"
               "        await feed_sample(app, pilot, steps=1)\n"
               "        sys.stderr.write(str(app.screen.query_one('#tree').root.label))\n"
               "asyncio.run(main())\n"
               "sys.stderr.write(' %s' % ('rich._emoji_codes' in sys.modules))\n")
    assert out.returncode == 0, out.stderr
    assert out.stderr == "/ False"
