"""machines/imagescan (the read-only image verbs' half): what it reads without os, pathlib or
subprocess is what those gave -- the birth time `stat -c %W` printed, os.path.samefile's answer --
and what a verb does not show is not read."""

import os
import subprocess
import tempfile

import pytest

from nsdash.machines import images, imagescan
from nsdash.system import birthtime


def _tree(tmp_path):
    tree = tmp_path / "images" / "box"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "os-release").write_text('PRETTY_NAME="Box OS"\n')
    (tree / "etc" / "hostname").write_text("boxhost\n")
    return tree


def test_birth_time_is_what_stat_printed(tmp_path):
    """On this file system and on a tmpfs (which keeps birth times), followed through a symlink."""
    with tempfile.TemporaryDirectory(dir="/dev/shm") as shm:
        (tmp_path / "link").symlink_to(shm)
        known = 0
        for path in (_tree(tmp_path), tmp_path / "link", tmp_path / "images" / "box" / "etc" / "hostname"):
            printed = int(subprocess.run(["stat", "-L", "-c", "%W", str(path)], capture_output=True, text=True,
                                         check=True).stdout)
            known += printed > 0
            assert birthtime.birth_time(str(path)) == (float(printed) if printed > 0 else None)
        assert known  # a time was compared, not only None with None
    with pytest.raises(FileNotFoundError):
        birthtime.birth_time(str(tmp_path / "gone"))


def test_find_reads_everything_image_status_shows(tmp_path):
    tree = _tree(tmp_path)
    image = imagescan.find("box", (tmp_path / "images",))
    assert (image.name, image.where, image.path, image.type) == ("box", str(tree), tree, "directory")
    assert (image.os_release, image.hostname) == ({"PRETTY_NAME": "Box OS"}, "boxhost")
    assert image.mtime == os.stat(tree).st_mtime and image.read_only is False
    assert image.crtime == birthtime.birth_time(str(tree))
    assert images.find is imagescan.find and images.Image is imagescan.Image  # one copy


def test_list_images_reads_neither_times_nor_guest_files_it_does_not_show(tmp_path, monkeypatch):
    _tree(tmp_path)
    (tmp_path / "images" / "disk.raw").write_bytes(b"\0" * 512)
    (tmp_path / "images" / ".#half").mkdir()  # an image being made: skipped
    monkeypatch.setattr(imagescan, "_guest_facts", lambda path: (_ for _ in ()).throw(AssertionError(path)))
    monkeypatch.setattr(imagescan, "_crtime", lambda path: (_ for _ in ()).throw(AssertionError(path)))
    found = imagescan.discover((tmp_path / "images",), crtime=False, facts=False)
    assert [(i.name, i.type, i.crtime, i.os_release, i.hostname) for i in found] == [
        ("box", "directory", None, {}, None), ("disk", "raw", None, {}, None)]


def test_same_file_is_samefile(tmp_path):
    tree = _tree(tmp_path)
    (tmp_path / "link").symlink_to(tree)
    for a, b in ((tree, tmp_path / "link"), (tree, tree / "etc"), (tree / "etc", tmp_path / "link" / "etc")):
        assert imagescan._same_file(str(a), str(b)) == os.path.samefile(a, b)


def test_show_image_reads_no_guest_file(tmp_path, monkeypatch, capsys):
    """show-image's properties have no os-release or hostname: neither is read."""
    from nsdash.cli import images as cli

    tree = _tree(tmp_path)
    monkeypatch.setenv("NSDASH_IMAGE_PATH", str(tmp_path / "images"))
    monkeypatch.setattr(imagescan, "_guest_facts", lambda path: (_ for _ in ()).throw(AssertionError(path)))
    assert cli.main(["show-image", "box"]) == 0
    assert f"Path={tree}\n" in capsys.readouterr().out
