"""sandbox.open_in_root opens a path that exists with no symlink on it in one openat2 (issue 16:
the child's set-up before init's exec); anything else still takes the component walk, which
follows the tree's symlinks by hand inside the root."""

from __future__ import annotations

import os

import pytest

from nsdash.launcher import sandbox


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/os-release").write_text("ID=test\n")
    (root / "etc").mkdir()
    (root / "etc/os-release").symlink_to("../usr/lib/os-release")  # relative, last component
    (root / "lib").symlink_to("/usr/lib")  # absolute: the tree's /usr/lib, not the host's
    fd = sandbox.open_root(str(root))
    yield root, fd
    os.close(fd)


@pytest.fixture
def calls(monkeypatch):
    """Counts of the openat2 and lstat calls open_in_root makes."""
    counted = {"openat2": 0, "lstat": 0}
    openat2, lstat = sandbox.sc.openat2, os.lstat

    def counting_openat2(*a, **k):
        counted["openat2"] += 1
        return openat2(*a, **k)

    def counting_lstat(*a, **k):
        counted["lstat"] += 1
        return lstat(*a, **k)

    monkeypatch.setattr(sandbox.sc, "openat2", counting_openat2)
    monkeypatch.setattr(os, "lstat", counting_lstat)
    return counted


def _same(fd: int, path) -> bool:
    a, b = os.fstat(fd), os.stat(path)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def test_a_plain_existing_path_is_one_openat2_and_no_walk(tree, calls):
    root, fd = tree
    got = sandbox.open_in_root(fd, "/usr/lib/os-release", directory=False, create=False)
    try:
        assert _same(got, root / "usr/lib/os-release")
    finally:
        os.close(got)
    assert calls == {"openat2": 1, "lstat": 0}  # the walk: an openat2 and an lstat per component


def test_symlinks_on_the_way_and_at_the_end_are_still_followed_inside_the_root(tree, calls):
    root, fd = tree
    for path in ("/etc/os-release", "/lib/os-release"):
        got = sandbox.open_in_root(fd, path, directory=False, create=False)
        try:
            assert _same(got, root / "usr/lib/os-release"), path  # not the link, not the host's file
        finally:
            os.close(got)
    assert calls["lstat"] > 0  # those took the walk


def test_a_missing_path_is_created_by_the_walk_and_a_file_is_no_directory(tree):
    root, fd = tree
    got = sandbox.open_in_root(fd, "/run/host/inaccessible", directory=True, create=True)
    os.close(got)
    assert (root / "run/host/inaccessible").is_dir()
    with pytest.raises(NotADirectoryError):
        sandbox.open_in_root(fd, "/usr/lib/os-release", directory=True, create=False)
    with pytest.raises(FileNotFoundError):
        sandbox.open_in_root(fd, "/nowhere/x", directory=False, create=False)
