"""The session's check that the cached trees stay read-only (tests/conftest.py), against real
spawns: a plain one into a cache-shaped copy is named, an ephemeral one is not."""

from __future__ import annotations

import subprocess

from conftest import cache_changes, cache_manifest, run_nsdash


def _cache_with_copy(busybox_cache, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    subprocess.run(["cp", "-a", str(busybox_cache), str(cache / busybox_cache.name)], check=True)
    return cache, cache / busybox_cache.name


def test_a_plain_spawn_of_a_cached_tree_is_caught(busybox_cache, tmp_path, machine_name):
    cache, tree = _cache_with_copy(busybox_cache, tmp_path)
    before = cache_manifest(cache)
    r = run_nsdash("spawn", "-q", "-P", "-M", machine_name, "-D", str(tree), "/bin/true")
    assert r.returncode == 0, r.stderr
    changes = cache_changes(before, cache_manifest(cache))
    assert f"{tree}: added etc/resolv.conf" in changes
    assert f"{tree}: added etc/localtime" in changes


def test_an_ephemeral_spawn_is_no_false_alarm(busybox_cache, tmp_path, machine_name):
    cache, tree = _cache_with_copy(busybox_cache, tmp_path)
    before = cache_manifest(cache)
    r = run_nsdash("spawn", "-q", "-P", "-x", "-M", machine_name, "-D", str(tree),
                   "/bin/sh", "-c", "echo x > /etc/hostname; touch /etc/new /root/new")
    assert r.returncode == 0, r.stderr
    assert cache_changes(before, cache_manifest(cache)) == []
