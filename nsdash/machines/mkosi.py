"""`nsdash create` for the distributions debootstrap cannot make: through mkosi (Debian's
package), which drives the distribution's own package manager (dnf, pacman, zypper)
against its mirror.

That needs three things on the host: mkosi, the package manager mkosi calls, and a
reachable mirror.  missing() names each one that is not at hand, so that a create
which cannot work says so in one line, before anything is written.  When all three
are there, build() runs mkosi into the hidden temporary directory that
nsdash.machines.create made (its steps, mkosi's '‣' lines, handed on as progress),
and the tree then gets the same finishing as a Debian tree: a machine ID, a
hostname, root without a password.
"""

from __future__ import annotations

import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Distribution:
    release: str  # the default release
    mirror: str  # the default mirror; reachable() asks it for its top directory
    manager: str  # the package manager mkosi runs on the host for it
    manager_package: str  # Debian's package that ships the manager
    packages: tuple[str, ...]  # what the tree needs to boot with systemd and D-Bus


DISTRIBUTIONS = {
    "fedora": Distribution("39", "https://download.fedoraproject.org/pub/fedora/linux", "dnf", "dnf",
                           ("systemd", "dbus", "passwd", "procps-ng", "iproute")),
    "arch": Distribution("rolling", "https://geo.mirror.pkgbuild.com", "pacman", "pacman-package-manager",
                         ("systemd", "dbus", "procps-ng", "iproute2")),
    "opensuse": Distribution("tumbleweed", "https://download.opensuse.org", "zypper", "zypper",
                             ("systemd", "dbus-1", "shadow", "procps", "iproute2")),
}


def reachable(url: str) -> str | None:
    """None if URL answers, else why not (one short phrase)."""
    try:
        with urllib.request.urlopen(url, timeout=15):
            return None
    except (urllib.error.URLError, OSError, ValueError) as e:
        return str(getattr(e, "reason", e))


def missing(distribution: str, mirror: str | None,
            which: Callable[[str], str | None] = shutil.which,
            reach: Callable[[str], str | None] = reachable) -> tuple[str, str] | None:
    """What a mkosi create of DISTRIBUTION lacks here and how to get it (one phrase each), or
    None when it can run.  WHICH and REACH are the host's (tests pass their own)."""
    d = DISTRIBUTIONS[distribution]
    lacking, packages = [], []
    for tool, package in (("mkosi", "mkosi"), (d.manager, d.manager_package)):
        if which(tool) is None:
            lacking.append(tool)
            packages.append(package)
    fixes = [f"install Debian's {' and '.join(packages)} package{'s' if len(packages) > 1 else ''}"] if packages else []
    url = mirror or d.mirror
    why = reach(url)
    if why is not None:
        lacking.append(f"a reachable mirror ({url}: {why})")
        fixes.append("pass --mirror=URL of one")
    if not lacking:
        return None
    return "missing " + ", ".join(lacking), ", and ".join(fixes)


def argv(distribution: str, release: str, mirror: str | None, packages: tuple[str, ...], dest: Path) -> list[str]:
    """mkosi's command line for a plain directory tree at DEST (which must not exist)."""
    d = DISTRIBUTIONS[distribution]
    wanted = list(dict.fromkeys([*d.packages, *packages]))
    line = ["mkosi", f"--distribution={distribution}", f"--release={release}", "--format=directory",
            f"--output={dest}", f"--package={','.join(wanted)}", "--bootable=no", "--with-network"]
    if mirror:
        line.append(f"--mirror={mirror}")
    return [*line, "build"]


def build(dest: Path, distribution: str, release: str, mirror: str | None, packages: tuple[str, ...],
          run_steps: Callable[[list[str], str | None], None]) -> None:
    """mkosi into DEST (an empty directory, removed first: mkosi makes its output itself).
    RUN_STEPS runs a command line in a directory and hands its steps on."""
    dest.rmdir()
    # mkosi reads mkosi.default and mkosi.* from its working directory: give it an empty one
    with tempfile.TemporaryDirectory(prefix="nsdash-mkosi-") as cwd:
        run_steps(argv(distribution, release, mirror, packages, dest), cwd)
