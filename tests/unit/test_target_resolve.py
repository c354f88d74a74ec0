"""`systemctl -M M` and the readers' -M resolve a machine to its leader and cgroup only: what
`list` and `status` show of it (its os-release, read confined, and its addresses) is not read."""

from __future__ import annotations

import fcntl
import os

import pytest

from nsdash.errors import MachineNotFound
from nsdash.inside.target import resolve
from nsdash.machines import registry
from nsdash.machines import state as st


@pytest.fixture
def running(tmp_path, monkeypatch):
    """Machine 'web' as a supervisor leaves it: its state, its lock held, this process as leader."""
    monkeypatch.setenv("NSDASH_STATE_DIR", str(tmp_path / "state"))
    d = tmp_path / "state" / "machines" / "web"
    d.mkdir(parents=True)
    st.write_state(d, st.MachineState(name="web", root="/", leader=os.getpid(), cgroup="/machine.slice/web",
                                      supervisor=os.getpid(), started="2026-01-01T00:00:00Z",
                                      since="2026-01-01T00:00:00Z"))
    lock = os.open(d / st.LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)  # the supervisor's hold: another open of the file cannot share it
    yield d
    os.close(lock)


def test_resolve_reads_neither_os_release_nor_addresses(running, monkeypatch):
    def refused(*args, **kwargs):
        raise AssertionError("read for a verb that does not show it")

    readers = registry._os_release, registry.addresses
    monkeypatch.setattr(registry, "_os_release", refused)
    monkeypatch.setattr(registry, "addresses", refused)
    target = resolve("web")
    assert (target.name, target.leader, target.cgroup) == ("web", os.getpid(), "/machine.slice/web")
    monkeypatch.setattr(registry, "_os_release", readers[0])
    monkeypatch.setattr(registry, "addresses", readers[1])
    shown = registry.lookup("web")  # what status shows: read as before
    assert shown.leader == os.getpid() and shown.os_release and not shown.orphan


def test_an_unknown_machine_is_still_named_with_the_choices(running):
    with pytest.raises(MachineNotFound, match="no machine named 'we'") as e:
        resolve("we")
    assert "web" in e.value.oneline()
