"""Smaller host-side rules: non-root callers get one line, state files are root's, no link outlives its machine."""

from __future__ import annotations

import os
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import NSDASH, run_nsdash, wait_for

from nsdash.machines import state as st

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture
def running(busybox_tree, machine_name, detached) -> str:
    detached("-q", "-D", str(busybox_tree), "/bin/sleep", "600")
    wait_for(lambda: (s := st.read_state(st.machine_dir(machine_name))) and s.leader)
    return machine_name


@pytest.mark.parametrize("argv", [["list"], ["list", "-o", "json"], ["status", "{name}"], ["ps", "-M", "{name}"],
                                  ["start", "{name}"], ["journal", "-M", "{name}"], ["terminate", "{name}"]])
def test_a_non_root_caller_gets_one_line_never_a_traceback(running, argv):
    args = [a.format(name=running) for a in argv]
    env = {k: v for k, v in os.environ.items() if k != "NSDASH_DEBUG"}
    r = subprocess.run([*NOBODY, *NSDASH, *args], capture_output=True, text=True, timeout=30, cwd="/", env=env)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode != 0 and r.stderr.count("\n") == 1, r.stderr
    assert "root" in r.stderr  # it says what is needed
    assert st.supervisor_alive(st.machine_dir(running))  # and nothing happened to the machine


# The other verbs that touch a machine, run as nobody against one running machine (one start for all).
MORE_VERBS = [["login", "{name}"], ["shell", "{name}", "/bin/true"], ["poweroff", "{name}"], ["reboot", "{name}"],
              ["kill", "{name}"], ["set-property", "{name}", "TasksMax=5"], ["systemctl", "-M", "{name}", "list-units"],
              ["trace", "-M", "{name}", "--all"], ["profile", "-M", "{name}"], ["debug", "-M", "{name}", "1"],
              ["spawn", "-xD", "/", "/bin/true"],
              # a tree that exists in a directory only root may enter: not "does not exist", not "no image"
              ["spawn", "-M", "{name}-2", "-D", "{root}", "/bin/true"], ["spawn", "-M", "{image}", "/bin/true"]]


def test_every_verb_on_a_machine_tells_a_non_root_caller_in_one_line(running, tmp_path):
    root = str(st.read_state(st.machine_dir(running)).root)
    # The tree exists, below a directory nobody may enter (pytest's /tmp/pytest-of-root is 0700).
    assert any(not os.stat(p).st_mode & 0o001 for p in Path(root).parents), root
    home = tmp_path / "machines"  # as /var/lib/machines: 0700, an image in it
    (home / "img").mkdir(parents=True)
    home.chmod(0o700)
    env = {k: v for k, v in os.environ.items() if k != "NSDASH_DEBUG"} | {"NSDASH_IMAGE_PATH": str(home)}
    for argv in MORE_VERBS:
        args = [a.format(name=running, root=root, image="img") for a in argv]
        r = subprocess.run([*NOBODY, *NSDASH, *args], capture_output=True, text=True, timeout=30, cwd="/",
                           env=env, stdin=subprocess.DEVNULL)
        assert "Traceback" not in r.stderr, (args, r.stderr)
        assert r.returncode != 0 and r.stderr.count("\n") == 1 and "needs root" in r.stderr, (args, r.stderr)
    assert st.supervisor_alive(st.machine_dir(running))
    assert st.read_state(st.machine_dir(running)).state == "running"  # nothing happened to the machine


def test_state_files_are_root_only(running):
    d = st.machine_dir(running)
    names = sorted(os.listdir(d))
    assert {st.STATE_FILE, st.CONSOLE_LOG, st.LOCK_FILE, st.CONTROL} <= set(names), names
    for name in names:  # the index, the lock and the control socket too, not only state.json
        mode = stat.S_IMODE(os.lstat(d / name).st_mode)
        assert mode & 0o037 == 0, (name, oct(mode))  # 0600 or 0640 at most


@pytest.fixture
def journal_link(busybox_tree) -> Iterator[Path]:
    """Where --link-journal links the tree's journal on the host: /var/log/journal/MACHINE-ID,
    for a machine ID new to the tree.  Whatever is left there goes after the test, and
    /var/log/journal too if the test made it."""
    host_journal = Path("/var/log/journal")
    made = not host_journal.exists()
    host_journal.mkdir(parents=True, exist_ok=True)
    mid = uuid.uuid4().hex
    (busybox_tree / "etc/machine-id").write_text(mid + "\n")
    link = host_journal / mid
    try:
        yield link
    finally:
        if os.path.islink(link):
            link.unlink()
        if made:
            host_journal.rmdir()


@pytest.mark.parametrize("guest_removes_its_journal", [True, False])
def test_terminate_leaves_no_dangling_journal_link(busybox_tree, machine_name, detached, journal_link,
                                                   guest_removes_its_journal):
    link, mid = journal_link, journal_link.name
    script = f"rm -rf /var/log/journal/{mid}; exec sleep 600" if guest_removes_its_journal else "exec sleep 600"
    detached("-q", "--link-journal=guest", "-D", str(busybox_tree), "/bin/sh", "-c", script)
    wait_for(lambda: link.is_symlink())
    assert Path(os.readlink(link)) == busybox_tree / "var/log/journal" / mid
    if guest_removes_its_journal:
        wait_for(lambda: not link.exists())  # dangling now
    r = run_nsdash("terminate", machine_name, timeout=30)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: not st.supervisor_alive(st.machine_dir(machine_name)))
    # A dangling link goes with the machine; one that still leads to the tree's journal
    # stays, as systemd-nspawn's does (a stopped machine's journal is read through it).
    assert os.path.lexists(link) == (not guest_removes_its_journal)
    assert not os.path.lexists(link) or link.is_dir()


def test_a_link_the_machine_did_not_make_is_left_alone(busybox_tree, machine_name, detached, journal_link):
    # A link that was there before the machine (another tool's, or an earlier run's) stays.
    link = journal_link
    link.symlink_to(busybox_tree / "var/log/journal" / link.name)
    detached("-q", "--link-journal=guest", "-D", str(busybox_tree), "/bin/sleep", "600")
    wait_for(lambda: (s := st.read_state(st.machine_dir(machine_name))) and s.leader)
    assert run_nsdash("terminate", machine_name, timeout=30).returncode == 0
    wait_for(lambda: not st.supervisor_alive(st.machine_dir(machine_name)))
    assert link.is_symlink()
