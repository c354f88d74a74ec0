"""--private-users-ownership=chown against a real tree: owners move into the range, once."""

from __future__ import annotations

import os
import stat
import struct

import pytest

from nsdash.errors import UsageError
from nsdash.launcher import userns


def test_chown_shifts_every_owner_once_and_keeps_setid_bits(busybox_tree):
    base = userns.pick_base(busybox_tree.name)
    suid = busybox_tree / "bin" / "su-test"
    suid.write_text("")
    os.chmod(suid, 0o4755)
    os.lchown(busybox_tree / "bin", 0, 5)
    changed = userns.shift_ownership(busybox_tree, base, userns.RANGE_SIZE)
    assert changed > 10
    for dirpath, dirs, files in os.walk(busybox_tree):
        for name in [*dirs, *files]:
            st = os.lstat(os.path.join(dirpath, name))
            assert base <= st.st_uid < base + userns.RANGE_SIZE
            assert base <= st.st_gid < base + userns.RANGE_SIZE
    assert os.lstat(busybox_tree / "bin").st_gid == base + 5
    assert stat.S_IMODE(os.stat(suid).st_mode) == 0o4755
    assert userns.shift_ownership(busybox_tree, base, userns.RANGE_SIZE) == 0  # idempotent
    # the next pick for this tree reuses the range its owner records
    assert userns.pick_base("another-name", root_owner=busybox_tree.stat().st_uid) == base


def test_chown_refuses_an_owner_it_cannot_map(busybox_tree):
    os.lchown(busybox_tree / "etc", 70000, 0)
    with pytest.raises(UsageError, match="owned by ID 70000"):
        userns.shift_ownership(busybox_tree, userns.PICK_FIRST, userns.RANGE_SIZE)


def test_a_finished_chown_is_not_walked_again(busybox_tree):
    """The root is shifted last: a shifted root means the walk finished, as nspawn judges it."""
    base = userns.pick_base(busybox_tree.name)
    passwd = busybox_tree / "etc" / "passwd"
    assert not userns.already_shifted(busybox_tree, base)
    userns.shift_ownership(busybox_tree, base, userns.RANGE_SIZE)
    assert userns.already_shifted(busybox_tree, base)
    os.lchown(passwd, 0, 0)  # changed behind our back after a finished walk
    userns.prepare_tree(str(busybox_tree), base, userns.RANGE_SIZE, "chown")
    assert os.lstat(passwd).st_uid == 0  # not walked again
    os.lchown(busybox_tree, 0, 0)  # what a walk killed half-way leaves: the root unshifted
    userns.prepare_tree(str(busybox_tree), base, userns.RANGE_SIZE, "chown")
    assert os.lstat(passwd).st_uid == base and userns.already_shifted(busybox_tree, base)


def _acl(entries: list[tuple[int, int, int]]) -> bytes:
    """A system.posix_acl_* value: version 2, then (tag, perm, id) entries."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


def _acl_entries(path, name: str) -> list[tuple[int, int, int]]:
    value = os.getxattr(path, name, follow_symlinks=False)
    return [struct.unpack_from("<HHI", value, 4 + 8 * i) for i in range((len(value) - 4) // 8)]


def test_chown_shifts_the_ids_named_in_acls(busybox_tree):
    """As nspawn's chown does: a tree's ACL naming group 4 (Debian's journal grants adm) names
    the container's group 4 afterwards, not the host's."""
    undefined = 0xFFFFFFFF
    entries = [(0x01, 7, undefined), (0x02, 5, 1000), (0x04, 5, undefined), (0x08, 5, 4),
               (0x10, 5, undefined), (0x20, 5, undefined)]
    journal = busybox_tree / "var" / "log" / "journal"
    journal.mkdir(parents=True)
    os.setxattr(journal, "system.posix_acl_access", _acl(entries))
    os.setxattr(journal, "system.posix_acl_default", _acl(entries))
    base = userns.pick_base(busybox_tree.name)
    userns.shift_ownership(busybox_tree, base, userns.RANGE_SIZE)
    shifted = [(0x01, 7, undefined), (0x02, 5, base + 1000), (0x04, 5, undefined), (0x08, 5, base + 4),
               (0x10, 5, undefined), (0x20, 5, undefined)]
    assert _acl_entries(journal, "system.posix_acl_access") == shifted
    assert _acl_entries(journal, "system.posix_acl_default") == shifted
    assert os.lstat(journal).st_uid == base
