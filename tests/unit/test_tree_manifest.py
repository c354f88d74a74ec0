"""The end-of-session check that the cached trees were used read-only: the manifest
it compares notices every kind of change a run could make to a tree."""

from __future__ import annotations

import os

from conftest import manifest_changes, tree_manifest


def _tree(root):
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("guest\n")
    (root / "etc/os-release").symlink_to("../usr/lib/os-release")
    return root


def test_an_untouched_tree_has_no_changes(tmp_path):
    root = _tree(tmp_path / "t")
    assert manifest_changes(tree_manifest(root), tree_manifest(root)) == []


def test_every_kind_of_change_is_named(tmp_path):
    root = _tree(tmp_path / "t")
    before = tree_manifest(root)
    (root / "etc/localtime").write_text("")                      # a file added
    (root / "etc/hostname").chmod(0o600)                          # a mode
    (root / "etc/os-release").unlink()                            # a symlink retargeted
    (root / "etc/os-release").symlink_to("/usr/lib/os-release")
    os.utime(root, ns=(0, 0))                                     # the root's own mtime
    changes = manifest_changes(before, tree_manifest(root))
    assert "added etc/localtime" in changes
    assert "changed etc/hostname (mode)" in changes
    assert any(c.startswith("changed etc/os-release (") and "symlink target" in c for c in changes)
    assert any(c.startswith("changed . (") and "mtime" in c for c in changes)


def test_a_removed_or_resized_file_is_named(tmp_path):
    root = _tree(tmp_path / "t")
    before = tree_manifest(root)
    (root / "etc/os-release").unlink()
    mtime = os.lstat(root / "etc/hostname").st_mtime_ns
    (root / "etc/hostname").write_text("another-name\n")
    os.utime(root / "etc/hostname", ns=(mtime, mtime))            # same mtime, new size
    changes = manifest_changes(before, tree_manifest(root))
    assert "removed etc/os-release" in changes
    assert "changed etc/hostname (size)" in changes
