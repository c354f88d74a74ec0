"""The dashboard's machine list at rest (issue 16): it looks at the machines' entries only when
inotify says one changed, and a real machine started or stopped still shows at the next refresh."""

from __future__ import annotations

from nsdash.monitor import host
from nsdash.tui.host_readers import HostReaders
from tests.conftest import run_nsdash, wait_for


def test_a_machine_started_and_stopped_shows_at_the_next_refresh(detached, busybox_tree, machine_name, monkeypatch):
    monkeypatch.setattr(host, "MACHINES_REREAD", 3600.0)  # only what the watch says reads the list
    readers = HostReaders(with_machined=False)
    try:
        def listed() -> dict[str, str]:
            return {m.name: m.state for m in readers.snapshot().machines}

        assert machine_name not in listed()
        detached("-bD", str(busybox_tree))
        assert listed().get(machine_name) in ("starting", "running")  # at the very next refresh
        wait_for(lambda: listed().get(machine_name) == "running", what="the machine running")
        looks = readers.state_looks
        for _ in range(3):
            assert listed().get(machine_name) == "running"
        assert readers.state_looks == looks  # at rest: no look at the entries
        r = run_nsdash("terminate", machine_name, timeout=60)
        assert r.returncode == 0, r.stderr
        assert machine_name not in listed()
    finally:
        readers.close()
