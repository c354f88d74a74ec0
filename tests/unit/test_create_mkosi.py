"""`nsdash create` for mkosi's distributions: what is missing is named in one line, and
the mkosi command line asked for a plain directory tree with systemd and D-Bus."""

from __future__ import annotations

from pathlib import Path

import pytest

from nsdash.errors import NsdashError
from nsdash.machines import create, mkosi


def _which(*present: str):
    return lambda tool: f"/usr/bin/{tool}" if tool in present else None


def test_nothing_missing_when_mkosi_its_manager_and_mirror_are_there():
    assert mkosi.missing("fedora", None, _which("mkosi", "dnf"), lambda url: None) is None


def test_each_missing_thing_is_named_with_its_debian_package():
    what, fix = mkosi.missing("arch", None, _which(), lambda url: "Name or service not known")
    assert what == ("missing mkosi, pacman, a reachable mirror "
                    "(https://geo.mirror.pkgbuild.com: Name or service not known)")
    assert fix == "install Debian's mkosi and pacman-package-manager packages, and pass --mirror=URL of one"
    asked: list[str] = []

    def reach(url: str) -> None:
        asked.append(url)

    what, fix = mkosi.missing("opensuse", "http://m.example/os", _which("mkosi"), reach)
    assert (what, fix) == ("missing zypper", "install Debian's zypper package")
    assert asked == ["http://m.example/os"]  # --mirror is the one asked, not the default


def test_mkosi_argv_makes_a_directory_tree_with_the_boot_packages_and_extras():
    argv = mkosi.argv("fedora", "39", None, ("less", "systemd"), Path("/x/.#t"))
    assert argv[0] == "mkosi" and argv[-1] == "build"
    assert {"--distribution=fedora", "--release=39", "--format=directory", "--output=/x/.#t",
            "--bootable=no"} <= set(argv)
    assert "--package=systemd,dbus,passwd,procps-ng,iproute,less" in argv  # no duplicates
    assert not any(a.startswith("--mirror") for a in argv)
    assert "--mirror=http://m" in mkosi.argv("arch", "rolling", "http://m", (), Path("/t"))


def test_plan_refuses_in_one_line_naming_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("NSDASH_IMAGE_PATH", str(tmp_path))
    monkeypatch.setattr(mkosi, "missing", lambda d, m: ("missing dnf", "install Debian's dnf package"))
    with pytest.raises(NsdashError) as e:
        create.plan("box", "fedora")
    assert e.value.message == "cannot create a tree of fedora here (through mkosi): missing dnf"
    assert list(tmp_path.iterdir()) == []


def test_plan_takes_the_distributions_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("NSDASH_IMAGE_PATH", str(tmp_path))
    monkeypatch.setattr(mkosi, "missing", lambda d, m: None)
    p = create.plan("box", "opensuse", packages="vim")
    assert (p.release, p.mirror, p.packages) == ("tumbleweed", "https://download.opensuse.org", ("vim",))
    assert p.final == tmp_path / "box"
    assert set(create.NAMES) == {"debian", "ubuntu", "fedora", "arch", "opensuse"}
    assert [create.default_release(d) for d in ("debian", "fedora")] == ["bookworm", "39"]
