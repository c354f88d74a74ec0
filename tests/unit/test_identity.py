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
