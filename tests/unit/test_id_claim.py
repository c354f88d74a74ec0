"""A machine ID is held by one machine at a time (launcher/inuse.IdClaim); a holder's name survives
it only while that machine's guest still runs."""

from __future__ import annotations

import pytest

from nsdash.errors import MachineExists
from nsdash.launcher import inuse

ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture(autouse=True)
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("NSDASH_STATE_DIR", str(tmp_path))
    return tmp_path


def test_one_holder_at_a_time_named_in_the_refusal():
    first = inuse.IdClaim(ID, "web")
    try:
        assert inuse.id_holder(ID) == "web"
        with pytest.raises(MachineExists, match=f"machine ID {ID} is in use by running machine 'web'"):
            inuse.IdClaim(ID, "copy")
    finally:
        first.close()
    assert inuse.id_holder(ID) is None
    second = inuse.IdClaim(ID, "copy")  # free again
    assert inuse.id_holder(ID) == "copy"
    second.close()


def test_a_dead_holders_file_counts_only_while_its_guest_runs(state):
    (state / inuse.ID_DIR).mkdir()
    (state / inuse.ID_DIR / ID).write_text("ghost-machine-of-no-cgroup")  # left by a SIGKILLed supervisor
    assert inuse.id_holder(ID) is None  # nothing of it runs
    claim = inuse.IdClaim(ID, "web")
    assert inuse.id_holder(ID) == "web"
    claim.close()


def test_a_holder_file_with_a_hostile_name_names_nobody(state):
    (state / inuse.ID_DIR).mkdir()
    (state / inuse.ID_DIR / ID).write_text("\x1b]0;x\x07")
    assert inuse.id_holder(ID) is None


def test_only_a_normalised_id_names_a_file():
    for bad in ("../../etc/passwd", ID.upper(), ID[:-1], ""):
        with pytest.raises(ValueError):
            inuse.IdClaim(bad, "web")
        assert inuse.id_holder(bad) is None
