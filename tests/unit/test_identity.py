"""Machine identity: the one os-release parser (systemd's quoting), confined identity reads, the namespace check."""

import os

import pytest

from nsdash.machines import identity
from nsdash.system.idfiles import normalise_id, parse_os_release


@pytest.mark.parametrize("text, expected", [
    ('ID=debian\nVERSION_ID="12"\n# c\nPRETTY_NAME=\'D 12\'\n', {"ID": "debian", "VERSION_ID": "12", "PRETTY_NAME": "D 12"}),
    ('NAME="a \\"b\\" \\$c \\\\ \\n"\n', {"NAME": 'a "b" $c \\ \\n'}),  # only "\\`$ are escapes inside "..."
    ("X='it''s'\n", {"X": "its"}),  # shell-like concatenation
    ("X='a\\b'\n", {"X": "a\\b"}),  # single quotes: literal
    ("X=a\\ b  \n", {"X": "a b"}),  # unquoted: backslash escapes, trailing blanks dropped
    ("X=ab\\\ncd\nY=1\n", {"X": "abcd", "Y": "1"}),  # continuation
    ("; comment\nnot an assignment\n=nokey\nID = fedora\n", {"ID": "fedora"}),
    ('X="two\nlines"\n', {"X": "two\nlines"}),
    ('X="unterminated', {"X": "unterminated"}),
    (b"ID=caf\xc3\xa9\xff\n", {"ID": "caf\u00e9\ufffd"}),
])
def test_os_release_is_parsed_with_systemds_quoting(text, expected):
    assert parse_os_release(text) == expected


def test_machine_ids_in_their_spellings():
    assert normalise_id("7CB6B85E-8215-444A-B415-011596679BA2\n") == "7cb6b85e8215444ab415011596679ba2"
    for bad in (None, "", "0" * 32, "uninitialized", "xyz" * 11):
        assert normalise_id(bad) is None


def test_identity_files_are_read_confined(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("ID=hostsecret\n")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/os-release").write_text("ID=guest\n")
    assert identity.os_release(root) == {"ID": "guest"}  # etc/ missing: usr/lib/
    for plant in (str(secret), "../../secret"):  # resolved in the root: not there, so usr/lib's
        (root / "etc/os-release").unlink(missing_ok=True)
        (root / "etc/os-release").symlink_to(plant)
        assert identity.os_release(root) == {"ID": "guest"}
    (root / "etc/os-release").unlink()
    (root / "etc/os-release").symlink_to("/dev/zero")  # the root's own /dev/zero: a device, refused
    (root / "dev").mkdir()
    os.mknod(root / "dev/zero", 0o666 | 0o020000, os.makedev(1, 5))
    with pytest.raises(OSError):
        identity.os_release(root)
    (root / "etc/os-release").unlink()
    os.mkfifo(root / "etc/os-release")
    with pytest.raises(OSError):
        identity.os_release(root)
    (root / "etc/machine-id").symlink_to("/etc/machine-id")
    assert identity.machine_id(root) is None or identity.machine_id(root) != identity.machine_id("/")
    (root / "etc/machine-id").unlink()
    (root / "etc/machine-id").write_text("08c30baea87644339ade293f4e706ff1\n")
    assert identity.machine_id(root) == "08c30baea87644339ade293f4e706ff1"


def test_shares_host_namespace():
    assert identity.shares_host_namespace(os.getpid(), "net") is True
    assert identity.shares_host_namespace(2**22 + 12345, "net") is None


def test_the_os_release_cache_reads_again_only_what_changed(tmp_path, monkeypatch):
    """OsReleaseCache answers as os_release does at every step (confined, refusals raised),
    and reads the file again only when the one it resolves to is another or changed."""
    reads = []
    real = identity.os_release
    monkeypatch.setattr(identity, "os_release", lambda root: reads.append(root) or real(root))
    secret = tmp_path / "secret"
    secret.write_text("ID=hostsecret\n")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "usr/lib").mkdir(parents=True)
    lib = root / "usr/lib/os-release"
    lib.write_text("ID=guest\n")
    old = 1_600_000_000
    os.utime(lib, (old, old))  # (a change time a second old is what the cache trusts; ctime follows)
    cache = identity.OsReleaseCache()
    time_ns = identity.time.time_ns
    monkeypatch.setattr(identity.time, "time_ns", lambda: time_ns() + 5_000_000_000)  # reads 5 s later
    assert cache(str(root)) == {"ID": "guest"} and cache(str(root)) == {"ID": "guest"}
    assert len(reads) == 1
    (root / "etc/os-release").symlink_to("../usr/lib/os-release")  # the usual link: the same file
    assert cache(str(root)) == {"ID": "guest"} and len(reads) == 1
    lib.write_text("ID=gueSt\n")  # rewritten in place, same size
    assert cache(str(root)) == {"ID": "gueSt"} and len(reads) == 2
    for plant in (str(secret), "../../secret"):  # resolved in the root: not there, so usr/lib's
        (root / "etc/os-release").unlink()
        (root / "etc/os-release").symlink_to(plant)
        assert cache(str(root)) == {"ID": "gueSt"}
    (root / "etc/os-release").unlink()
    (root / "etc/os-release").write_text("ID=other\n")  # etc/ first, as systemd looks
    assert cache(str(root)) == {"ID": "other"}
    (root / "etc/os-release").unlink()
    os.mkfifo(root / "etc/os-release")
    for _ in range(2):  # refused each time, never answered from what was kept
        with pytest.raises(OSError):
            cache(str(root))
    (root / "etc/os-release").unlink()
    monkeypatch.setattr(identity.time, "time_ns", time_ns)
    lib.write_text("ID=fresh\n")  # changed this very tick: read, but not kept
    before = len(reads)
    assert cache(str(root)) == {"ID": "fresh"} and cache(str(root)) == {"ID": "fresh"}
    assert len(reads) == before + 2
    cache.sweep()
    cache.sweep()  # not asked since: forgotten
    assert not cache._known
