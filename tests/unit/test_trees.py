"""The tree recipes: the cache key follows the recipe, the matrix names only trees
that can be built, and the command line refuses an unknown tree in one line."""

from __future__ import annotations

import dataclasses

import pytest

from nsdash.demo import trees


def test_the_matrix_is_exactly_the_trees_that_can_be_built():
    assert set(trees.MATRIX) | set(trees.TEST_HOSTS) == set(trees.NAMES)
    assert not set(trees.MATRIX) & set(trees.TEST_HOSTS)
    assert {trees.MATRIX[name] for name in trees.GUESTS} <= {"systemd", "sysvinit", "openrc", "runit"}
    assert all(trees.GUESTS[name].init == trees.MATRIX[name] for name in trees.GUESTS)


def test_each_guest_has_a_cache_key_of_its_own():
    names = [*trees.GUESTS, *trees.TEST_HOSTS]
    keys = {trees.recipe_hash(name) for name in names}
    assert len(keys) == len(names)
    assert all(len(k) == 12 and int(k, 16) >= 0 for k in keys)


def test_changing_a_recipe_changes_its_cache_key(monkeypatch):
    before = trees.recipe_hash("runit")
    changed = dataclasses.replace(trees.GUESTS["runit"], include=(*trees.GUESTS["runit"].include, "less"))
    monkeypatch.setitem(trees.GUESTS, "runit", changed)
    assert trees.recipe_hash("runit") != before


def test_the_tree_path_is_the_name_and_the_key_in_the_cache(monkeypatch, tmp_path):
    monkeypatch.setattr(trees, "CACHE", tmp_path)
    assert trees.tree_path("trixie") == tmp_path / f"trixie-{trees.recipe_hash('trixie')}"


def test_an_unknown_tree_is_refused_in_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        trees.main(["trixie", "fedora"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("unknown tree 'fedora'; choose from " + ", ".join(trees.NAMES))


def test_a_fresh_tree_has_nothing_changed_after_its_build(monkeypatch, tmp_path):
    """The build ends by stamping the top directory, so `find TREE -cnewer TREE` (what a
    change after the build looks like) lists nothing for a tree just built."""
    import os
    import subprocess
    import time

    def build(dest, log):
        (dest / "etc").mkdir()
        time.sleep(0.02)
        (dest / "etc" / "hostname").write_text("x\n")  # a late finishing step, as _finish_debian's

    monkeypatch.setattr(trees, "CACHE", tmp_path)
    monkeypatch.setattr(trees, "_builder", lambda name: build)
    monkeypatch.setattr(trees, "recipe_hash", lambda name: "0" * 12)
    tree = trees.ensure("busybox")
    changed = subprocess.run(["find", str(tree), "-mindepth", "1", "-cnewer", str(tree)],
                             capture_output=True, text=True, check=True).stdout.split()
    assert changed == [] and os.listdir(tree) == ["etc"]
