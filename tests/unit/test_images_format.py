"""The image verbs' pure parts: formats by suffix and by content, default names, output."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from nsdash.cli.images import format_status, parse_bool, show_properties
from nsdash.errors import UsageError
from nsdash.machines import images


@pytest.mark.parametrize("file, fmt, expected", [
    ("a.tar", None, "uncompressed"), ("a.tar.xz", None, "xz"), ("a.tgz", None, "gzip"),
    ("a.tar.bz2", None, "bzip2"), ("a.tar.zst", None, "zstd"), ("a.tar.xz", "gzip", "gzip"),
    ("a.tar.gz", "uncompressed", "uncompressed"),
])
def test_export_format_by_option_then_suffix(file, fmt, expected):
    assert images.format_for(file, fmt) == expected


def test_unknown_format_is_refused():
    with pytest.raises(UsageError, match="unknown --format 'lz4'"):
        images.format_for("a.tar", "lz4")


@pytest.mark.parametrize("head, expected", [
    (b"\x1f\x8b\x08\x00", "gzip"), (b"\xfd7zXZ\x00\x00", "xz"), (b"BZh91AY", "bzip2"),
    (b"\x28\xb5\x2f\xfd\x00", "zstd"), (b"./\x00\x00\x00", "uncompressed"),
])
def test_import_compression_by_content(head, expected):
    assert images._sniff(head) == expected


@pytest.mark.parametrize("file, name", [
    ("/x/debian.tar.xz", "debian"), ("fedora.tgz", "fedora"), ("plain.tar", "plain"), ("odd", "odd"),
])
def test_import_name_from_the_file(file, name):
    assert images._default_import_name(file) == name


def test_status_and_properties_escape_what_the_guest_wrote():
    image = images.Image("box", Path("/var/lib/machines/box"), "directory", True, 0.0, None,
                         {"PRETTY_NAME": "Evil\x1b[2J OS"}, "host\x07")
    text = format_status(image, ["m1"])
    assert "\x1b" not in text and "\x07" not in text
    assert "RO: read-only" in text and "In use by: m1" in text and "Created: n/a" in text
    props = dict(show_properties(image))
    assert props["ReadOnly"] == "yes" and props["Type"] == "directory" and props["Path"] == str(image.path)


def test_vendor_images_are_those_under_usr():
    assert images.Image("v", Path("/usr/lib/machines/v"), "directory", True, 0, None, {}, None).vendor
    assert not images.Image("w", Path("/var/lib/machines/w"), "directory", False, 0, None, {}, None).vendor


@pytest.mark.parametrize("text, value", [("yes", True), ("1", True), ("on", True), ("no", False), ("false", False)])
def test_booleans(text, value):
    assert parse_bool(text) is value


class _Err(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_is_a_line_per_tenth_in_a_log_and_one_rewritten_line_in_a_terminal(monkeypatch):
    from nsdash.cli.images import ProgressLine

    log = _Err(False)
    monkeypatch.setattr(sys, "stderr", log)
    p = ProgressLine("Imported")
    for done in range(0, 101, 5):
        p(done << 20, 100 << 20)
    p.finish("Imported x.")
    lines = log.getvalue().splitlines()
    assert lines[0] == "Imported 0% (0.0 MiB)" and lines[-2] == "Imported 100% (100.0 MiB)"
    assert len(lines) == 12 and lines[-1] == "Imported x."  # 0..100 by tenths, then the summary

    term = _Err(True)
    monkeypatch.setattr(sys, "stderr", term)
    p = ProgressLine("Exported")
    p(3 << 20, None)
    p.finish("Exported y.")
    assert term.getvalue() == "\rExported 3.0 MiB\x1b[K\r\x1b[KExported y.\n"
    quiet = _Err(False)
    monkeypatch.setattr(sys, "stderr", quiet)
    q = ProgressLine("Exported", quiet=True)
    q(1, 2)
    q.finish("done")
    assert quiet.getvalue() == ""
