"""A guest cannot claim another machine's -j host journal by copying its machine ID.

Machine A runs with --link-journal=host: its journal is the host's
/var/log/journal/A_ID, holding a line only A's journal has.  Machine B's guest
writes A_ID into its own /etc/machine-id while it runs: `nsdash journal -M B`
must still show B's journal only (the ID B's supervisor recorded at start, not
the one its guest wrote later), before and after A stops.  A third machine
whose tree carries A_ID is refused while A runs (one line, nothing left
behind) and starts once A has stopped.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import TAG, run_nsdash, teardown_machine, wait_for

from nsdash.journal.export import export_entry, journal_remote, write_journal
from nsdash.journal.locate import locate
from nsdash.launcher import inuse
from nsdash.machines import state as st

MARK = "only-in-machine-a-journal"


def _tree(cache: Path, base: Path, name: str, machine_id: str) -> Path:
    tree = base / name
    subprocess.run(["cp", "-a", str(cache), str(tree)], check=True)
    (tree / "etc/machine-id").write_text(machine_id + "\n")
    return tree


def _start(tree: Path, name: str, *extra: str, script: str = "true") -> subprocess.CompletedProcess:
    return run_nsdash("spawn", "--detach", "-q", "-D", str(tree), "-M", name, *extra, "/bin/sh", "-c",
                      f"{script}; : > /run/planted; exec sleep 600", timeout=60)


def _planted(name: str) -> bool:
    s = st.read_state(st.machine_dir(name))
    return bool(s and s.leader and Path(f"/proc/{s.leader}/root/run/planted").exists())


def _journal(name: str) -> subprocess.CompletedProcess:
    r = run_nsdash("journal", "-M", name, "-o", "cat", "-n", "100", timeout=30)
    assert "Traceback" not in r.stderr, r.stderr
    return r


@pytest.fixture
def setting(busybox_cache, tmp_path):
    if journal_remote() is None:
        pytest.fail("systemd-journal-remote is needed to write machine A's journal")
    a_id, b_id = uuid.uuid4().hex, uuid.uuid4().hex
    names = {k: f"{TAG}-jc-{k}" for k in "abc"}
    trees = {"a": _tree(busybox_cache, tmp_path, names["a"], a_id),
             "b": _tree(busybox_cache, tmp_path, names["b"], b_id),
             "c": _tree(busybox_cache, tmp_path, names["c"], a_id)}
    host_dir = Path("/var/log/journal") / a_id
    try:
        yield a_id, b_id, names, trees, host_dir
    finally:
        for name in names.values():
            teardown_machine(name)
        shutil.rmtree(host_dir, ignore_errors=True)


def test_a_copied_machine_id_claims_neither_the_journal_nor_the_id(setting):
    a_id, b_id, names, trees, host_dir = setting
    a, b, c = names["a"], names["b"], names["c"]
    r = _start(trees["a"], a, "--link-journal=host")
    assert r.returncode == 0, r.stderr
    assert host_dir.is_dir() and not host_dir.is_symlink()
    write_journal(host_dir / "system.journal",
                  [export_entry({"MESSAGE": MARK, "PRIORITY": "6", "SYSLOG_IDENTIFIER": "a"},
                                1_700_000_000_000_000, 1000, uuid.uuid4().hex)])
    assert MARK in _journal(a).stdout  # the control: A's own journal shows the line

    r = _start(trees["b"], b, script=f"echo {a_id} > /etc/machine-id")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: _planted(b), what="B copied A's machine ID")
    b_state = st.read_state(st.machine_dir(b))
    assert b_state is not None
    assert Path(f"/proc/{b_state.leader}/root/etc/machine-id").read_text().strip() == a_id
    logs = locate(b)
    assert logs.machine_id == b_id  # recorded by B's supervisor at start
    assert all(a_id not in str(d) for d in logs.journal_dirs)
    assert MARK not in _journal(b).stdout

    # A third machine whose tree holds A's ID and links its journal is refused while A runs:
    # one line, nothing left.  (Linking nothing, it would run: copies of a tree share an ID.)
    r = _start(trees["c"], c, "--link-journal=try-host")
    assert r.returncode != 0
    assert f"machine ID {a_id} is in use by running machine '{a}'" in r.stderr
    assert r.stderr.strip().count("\n") <= 1 and "Traceback" not in r.stderr
    assert not st.machine_dir(c).exists()
    assert inuse.id_holder(a_id) == a
    r = _start(trees["c"], c)  # linking nothing, a copy of A's ID runs beside A, as nspawn lets it
    assert r.returncode == 0, r.stderr
    assert inuse.id_holder(a_id) == a and MARK not in _journal(c).stdout
    assert run_nsdash("terminate", c, timeout=60).returncode == 0
    wait_for(lambda: not st.machine_dir(c).exists(), what="C gone")

    # A stops: B still does not get A's journal, and the ID is free for C.
    r = run_nsdash("terminate", a, timeout=60)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: not st.machine_dir(a).exists(), what="A gone")
    assert inuse.id_holder(a_id) is None
    assert MARK not in _journal(b).stdout
    r = _start(trees["c"], c, "--link-journal=try-host")
    assert r.returncode == 0, r.stderr
    assert inuse.id_holder(a_id) == c
