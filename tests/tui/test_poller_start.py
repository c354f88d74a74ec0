"""The poller makes the host readers in its own thread (nothing opened on the UI thread before the
first frame), and a host it cannot read is one error snapshot, not a dead poller thread's traceback."""

from __future__ import annotations

import pytest
from _pollerkit import StubReaders, collect

from nsdash.errors import NsdashError
from nsdash.tui.host_readers import FirstSnapshot
from nsdash.tui.poller import Poller


def test_readers_are_made_in_the_pollers_thread_with_the_cadence_asked_before():
    posted, arrived, post = collect()
    poller = Poller(None, post, interval=30.0, make_readers=StubReaders)
    poller.walk_tree_every(1)  # asked before the readers exist (the user clicked the tree at once)
    poller.start()
    try:
        assert arrived.acquire(timeout=30)
        readers = poller.readers
        assert isinstance(readers, StubReaders)
        assert readers.made_in.name == "nsdash-poller"
        assert readers.tree_every == 1
        assert posted[0].snapshot.timestamp == 1.0 and not posted[0].snapshot.errors
    finally:
        poller.stop()
    assert readers.closed


@pytest.mark.parametrize("made_by", ["the poller", "FirstSnapshot"])
def test_a_host_it_cannot_read_is_one_error_snapshot(made_by):
    """Readers the poller cannot make, in its own thread or in FirstSnapshot's: one error snapshot."""
    posted, arrived, post = collect()

    def unreadable():
        raise NsdashError("cgroup2 is not mounted", "mount it")

    if made_by == "the poller":
        poller = Poller(None, post, make_readers=unreadable)
    else:
        poller = Poller(None, post, first=FirstSnapshot(unreadable))
    poller.start()
    try:
        assert arrived.acquire(timeout=30)
    finally:
        poller.stop()
    assert len(posted) == 1
    assert posted[0].snapshot.errors[0].startswith("cannot read the host: cgroup2 is not mounted")


@pytest.mark.parametrize("close_readers", [True, False])
def test_a_stop_closes_the_readers_unless_the_process_exits_next(close_readers):
    """The dashboard's own process (nsdash.cli.dashboard) leaves the readers' files to the kernel:
    the thread ends all the same, without closing them one by one."""
    posted, arrived, post = collect()
    poller = Poller(None, post, interval=30.0, make_readers=StubReaders)
    poller.start()
    try:
        assert arrived.acquire(timeout=30)
        readers = poller.readers
    finally:
        poller.stop(close_readers=close_readers)
    assert poller._thread is not None and not poller._thread.is_alive()
    assert isinstance(readers, StubReaders) and readers.closed is close_readers
    if not close_readers:
        readers.close()  # (this process goes on: the test's own clean-up)


@pytest.mark.parametrize("process_ends", [False, True])
async def test_the_app_leaves_the_readers_open_only_when_its_process_ends_with_it(process_ends):
    from nsdash.tui.app import NsdashApp

    readers = StubReaders()
    app = NsdashApp(readers=readers, interval=30.0, process_ends=process_ends)
    async with app.run_test(size=(160, 48)) as pilot:
        for _ in range(3000):  # (30 s at most)
            if readers.snapshots:
                break
            await pilot.pause(0.01)
        assert readers.snapshots
    assert app.poller is not None and app.poller._thread is not None and not app.poller._thread.is_alive()
    assert readers.closed is not process_ends
    readers.close()
