"""The end-of-session check that the cached trees were used read-only: the manifest
it compares notices every kind of change a run could make to a tree."""

from __future__ import annotations

import os
import shutil

from conftest import (
    SHALLOW_BELOW,
    cache_changes,
    cache_entries,
    cache_manifest,
    manifest_changes,
    tree_manifest,
)


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


# ---------------------------------------------------------------- the session-start check of the whole cache

def _cache(root):
    """A cache as nsdash.demo.trees lays it out: NAME-KEY trees, images/NAME-KEY.raw, a build under way."""
    for name in ("debian-2114f8d2eaa7", "busybox-d277fc716c5f"):
        tree = _tree(root / name)
        (tree / "usr/lib").mkdir(parents=True)
        (tree / "usr/lib/os-release").write_text("ID=debian\n")
        (tree / "etc/systemd/system").mkdir(parents=True)
    (root / "images").mkdir()
    (root / "images/debian-gpt-e013432350ad.raw").write_bytes(b"\0" * 512)
    (root / ".sid-b8d22ccfb01e.building-12-ab").mkdir()
    return root


def test_the_cache_entries_are_its_finished_trees_and_images(tmp_path):
    cache = _cache(tmp_path / "cache")
    assert [str(p.relative_to(cache)) for p in cache_entries(cache)] == [
        "busybox-d277fc716c5f", "debian-2114f8d2eaa7", "images/debian-gpt-e013432350ad.raw"]


def test_a_shallow_manifest_walks_the_top_and_all_of_etc_only(tmp_path):
    tree = _cache(tmp_path / "cache") / "debian-2114f8d2eaa7"
    shallow = tree_manifest(tree, SHALLOW_BELOW)
    assert {".", "etc", "usr", "etc/hostname", "etc/systemd", "etc/systemd/system"} <= shallow.keys()
    assert "usr/lib" not in shallow


def test_what_a_plain_spawn_writes_into_a_cached_tree_is_named(tmp_path):
    """A spawn without -x writes /etc/resolv.conf and /etc/localtime and rewrites /etc/hostname."""
    cache = _cache(tmp_path / "cache")
    before = cache_manifest(cache)
    etc = cache / "debian-2114f8d2eaa7/etc"
    (etc / "resolv.conf").write_text("nameserver 10.0.0.1\n")
    (etc / "localtime").symlink_to("../usr/share/zoneinfo/UTC")
    (etc / "hostname").write_text("a-much-longer-name\n")
    changes = cache_changes(before, cache_manifest(cache))
    tree = str(cache / "debian-2114f8d2eaa7")
    assert f"{tree}: added etc/resolv.conf" in changes
    assert f"{tree}: added etc/localtime" in changes
    assert any(c.startswith(f"{tree}: changed etc/hostname (") for c in changes)
    assert not [c for c in changes if "busybox" in c or "images" in c]


def test_an_image_written_to_is_named(tmp_path):
    cache = _cache(tmp_path / "cache")
    before = cache_manifest(cache)
    with open(cache / "images/debian-gpt-e013432350ad.raw", "r+b") as f:
        f.write(b"\1" * 1024)
    assert cache_changes(before, cache_manifest(cache)) == [
        f"{cache}/images/debian-gpt-e013432350ad.raw: changed . (size, mtime)"]


def test_a_tree_built_during_the_session_is_not_a_change(tmp_path):
    cache = _cache(tmp_path / "cache")
    before = cache_manifest(cache)
    (cache / ".sid-b8d22ccfb01e.building-12-ab").rename(cache / "sid-b8d22ccfb01e")
    (cache / "images/debian-fs-88462ac74efe.raw").write_bytes(b"")
    assert cache_changes(before, cache_manifest(cache)) == []


def test_a_tree_removed_is_named_unless_a_newer_build_replaced_it(tmp_path):
    cache = _cache(tmp_path / "cache")
    before = cache_manifest(cache)
    shutil.rmtree(cache / "busybox-d277fc716c5f")
    assert cache_changes(before, cache_manifest(cache)) == [f"{cache}/busybox-d277fc716c5f: removed"]
    _tree(cache / "busybox-0123456789ab")  # another checkout's recipe built it anew
    (cache / "images/debian-gpt-e013432350ad.raw").rename(cache / "images/debian-gpt-0123456789ab.raw")
    assert cache_changes(before, cache_manifest(cache)) == []
