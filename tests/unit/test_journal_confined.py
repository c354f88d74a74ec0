"""A machine's journal directory is read confined: no symlink out, no FIFO, no device; following still works.

Real journal files (systemd-journal-remote writes them); the directory is a
JournalDir confined to a root made in tmp_path, with a "host" journal beside
that root which no planted symlink may reach.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from nsdash.journal.export import export_entry, journal_remote, write_journal
from nsdash.journal.locate import JournalDir, check_journal_file, journal_dirs
from nsdash.journal.merge import MergedLog
from nsdash.journal.reader import JournalSource

pytestmark = pytest.mark.skipif(journal_remote() is None, reason="needs systemd-journal-remote")

MID = "08c30baea87644339ade293f4e706ff1"
BOOT = "1b1b1b1b1b1b4b1b9b1b1b1b1b1b1b1b"
T0 = 1_795_929_965_000_000


def entries(*messages: str, start: int = 0) -> list[bytes]:
    return [export_entry({"MESSAGE": m, "PRIORITY": "6", "SYSLOG_IDENTIFIER": "t"}, T0 + (start + i) * 1000,
                         1000 + start + i, BOOT) for i, m in enumerate(messages)]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    host = tmp_path / "host-journal"
    host.mkdir()
    write_journal(host / "system.journal", entries("HOST SECRET"))
    r = tmp_path / "root"
    (r / "var/log/journal" / MID).mkdir(parents=True)
    write_journal(r / "var/log/journal" / MID / "system.journal", entries("one", "two"))
    return r


def messages(src) -> list[str]:
    return [e.message for e in src.entries()]


def test_planted_files_are_skipped_by_name_and_the_rest_is_read(root, tmp_path):
    d = root / "var/log/journal" / MID
    (d / "abs.journal").symlink_to(tmp_path / "host-journal/system.journal")
    (d / "climb.journal").symlink_to("../../../../../host-journal/system.journal")
    (d / "inside.journal").symlink_to("system.journal")  # even inside the directory: journald makes no links
    os.mkfifo(d / "fifo.journal")
    (d / "zero.journal").symlink_to("/dev/zero")
    with JournalSource(JournalDir(root, f"var/log/journal/{MID}")) as src:
        assert messages(src) == ["one", "two"]
        skipped = "\n".join(src.skipped)
    for name in ("abs.journal", "climb.journal", "inside.journal", "fifo.journal", "zero.journal"):
        assert name in skipped


@pytest.mark.parametrize("target", ["{tmp}/host-journal", "../../../../host-journal", "/proc/self/root{tmp}/host-journal"])
def test_a_journal_directory_symlinked_out_of_the_root_is_not_found(root, tmp_path, target):
    d = root / "var/log/journal" / MID
    for f in d.iterdir():
        f.unlink()
    d.rmdir()
    d.symlink_to(target.format(tmp=tmp_path))
    assert journal_dirs(MID, root, None, tmp_path / "no-host") == ()
    assert not JournalDir(root, f"var/log/journal/{MID}").exists()


def test_the_host_directory_of_the_hosts_own_id_is_never_a_machines(root, tmp_path, monkeypatch):
    host = tmp_path / "host"
    (host / MID).mkdir(parents=True)
    assert [d.path for d in journal_dirs(MID, None, None, host)] == [str(host / MID)]
    from nsdash.machines import identity

    monkeypatch.setattr(identity, "machine_id", lambda r: MID if str(r) == "/" else None)
    assert journal_dirs(MID, None, None, host) == ()  # a guest claiming the host's ID gets nothing of it


def _follow(log: MergedLog, want: str, timeout: float = 5.0) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while want not in got and time.monotonic() < deadline:
        log.wait(timeout=0.5)
        got += [e.message for e in log.read_new()]
    return got


def test_following_sees_appended_entries_and_new_files(root):
    d = root / "var/log/journal" / MID
    with MergedLog([JournalSource(JournalDir(root, f"var/log/journal/{MID}"))]) as log:
        assert [e.message for e in log.tail(10)] == ["one", "two"]
        assert 0 <= log.recheck_ms() <= 100  # no inotify on descriptors: it looks again soon
        write_journal(d / "system.journal", entries("three", start=2))
        assert log.wait(timeout=2.0)  # woken by the change (our inotify on the confined directory)
        assert _follow(log, "three") == ["three"]
        assert not log.wait(timeout=0.05)  # events drained: no busy loop
        # rotation: a new file appears (journald's archive + a fresh system.journal)
        write_journal(d / "user-1000.journal", entries("four", start=3))
        assert _follow(log, "four") == ["four"]  # read once, nothing repeated after the reopen
        write_journal(d / "user-1000.journal", entries("five", start=4))
        assert _follow(log, "five") == ["five"]


def test_an_empty_directory_reads_empty_and_picks_up_the_first_file(root):
    d = root / "var/log/journal" / MID
    (d / "system.journal").unlink()
    with MergedLog([JournalSource(JournalDir(root, f"var/log/journal/{MID}"))]) as log:
        assert log.tail(10) == []
        write_journal(d / "system.journal", entries("first"))
        assert _follow(log, "first") == ["first"]


def _inotify_fds() -> int:
    return sum(os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify" for fd in os.listdir("/proc/self/fd")
               if os.path.islink(f"/proc/self/fd/{fd}"))


def test_a_read_that_does_not_follow_makes_no_inotify(root):
    """`journal -n 20`: closing an inotify that watched waits for an fsnotify grace period at exit."""
    d = root / "var/log/journal" / MID
    before = _inotify_fds()
    with MergedLog([JournalSource(JournalDir(root, f"var/log/journal/{MID}"), follow=False)]) as log:
        assert [e.message for e in log.tail(10)] == ["one", "two"]
        assert _inotify_fds() == before
        # Asked to follow after all: the watch is made then, and changes from then on wake it.
        log.filenos()
        assert _inotify_fds() == before + 1
        write_journal(d / "system.journal", entries("three", start=2))
        assert log.wait(timeout=2.0)
        assert _follow(log, "three") == ["three"]
    assert _inotify_fds() == before


def test_a_file_journald_is_still_creating_is_skipped_then_read_when_whole(root, tmp_path):
    """The header of a file being created is short or points past the file: libsystemd
    refuses it (ENODATA), and given descriptors it would refuse every file with it."""
    d = root / "var/log/journal" / MID
    write_journal(tmp_path / "whole.journal", entries("late", start=5))
    whole = (tmp_path / "whole.journal").read_bytes()
    (d / "user-1000.journal").write_bytes(whole[:150])  # the signature and part of the header
    with MergedLog([JournalSource(JournalDir(root, f"var/log/journal/{MID}"))]) as log:
        assert [e.message for e in log.tail(10)] == ["one", "two"]
        assert any("user-1000.journal: truncated" in s for s in log.sources[0].skipped)
        with open(d / "user-1000.journal", "r+b") as f:  # the same file, now whole
            f.write(whole)
        assert _follow(log, "late") == ["late"]


def test_a_file_libsystemd_refuses_is_skipped_and_the_others_read(root, tmp_path):
    """A file our header check passes but libsystemd refuses (here: an incompatible flag it does
    not know, as a newer guest's journald may write) costs only that file, not the journal."""
    d = root / "var/log/journal" / MID
    write_journal(tmp_path / "newer.journal", entries("from the future"))
    raw = bytearray((tmp_path / "newer.journal").read_bytes())
    raw[12:16] = (int.from_bytes(raw[12:16], "little") | 1 << 31).to_bytes(4, "little")
    (d / "newer.journal").write_bytes(bytes(raw))
    assert check_journal_file(d / "newer.journal") is None
    with JournalSource(JournalDir(root, f"var/log/journal/{MID}")) as src:
        assert messages(src) == ["one", "two"]
        assert any("newer.journal: refused by libsystemd" in s for s in src.skipped)


def test_a_reader_walks_to_its_directory_once(root, monkeypatch):
    """Opening a reader lists the directory and opens its files on one confined walk to it
    (there were two: one for the listing that says what changed, one to open the files)."""
    from nsdash.journal import locate

    walks: list[str] = []
    real_open = locate.JournalDir.open

    def counting_open(self):
        walks.append(self.path)
        return real_open(self)

    monkeypatch.setattr(locate.JournalDir, "open", counting_open)
    with JournalSource(JournalDir(root, f"var/log/journal/{MID}"), follow=False) as src:
        assert messages(src) == ["one", "two"]
        assert walks == [str(root / "var/log/journal" / MID)]
