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
