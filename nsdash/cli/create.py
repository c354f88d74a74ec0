"""`nsdash create`: a bootable Debian or Ubuntu tree in one command, through debootstrap
(Fedora, Arch and openSUSE through mkosi, where it and their package manager and mirror are at hand).

    nsdash create [--distribution=debian|ubuntu|fedora|arch|opensuse] [--release=R] [--packages=LIST]
                  [--root-password=PW] [--mirror=URL] NAME|DIR

NAME makes /var/lib/machines/NAME (the image home, nsdash.system.paths); a
DIR (anything with a '/') makes that directory.  The tree gets what a user
needs to boot it and log in: systemd and D-Bus (plus procps and iproute2),
a machine ID, a hostname, and root without a password unless
--root-password is given.  debootstrap's own steps are shown on stderr.

The work is nsdash.machines.create (the dashboard's create form runs the same):
the tree is built under a hidden temporary name beside its final place and
renamed there only when complete; a failure or Ctrl-C removes it (and any
mount debootstrap left in it), so nothing half made is ever under the name.
"""

from __future__ import annotations

import os
import sys

from nsdash.cli.quickparse import Parser
from nsdash.errors import UsageError
from nsdash.machines import create, mkosi


def _parser() -> Parser:
    p = Parser("nsdash create", __doc__.split("\n\n")[0])
    p.add_argument("target", metavar="NAME|DIR")
    p.add_argument("--distribution", "-d", default="debian",
                   help="debian or ubuntu (debootstrap); " + ", ".join(mkosi.DISTRIBUTIONS) + " (mkosi)")
    p.add_argument("--release", "-r")
    p.add_argument("--packages", default="", help="more packages, comma-separated")
    p.add_argument("--root-password")
    p.add_argument("--mirror")
    return p


def _step(line: str) -> None:
    sys.stderr.write(line + "\n")  # already escaped by nsdash.machines.create


def main(argv: list[str]) -> int:
    ns = _parser().parse_args(argv)
    if os.geteuid() != 0:
        raise UsageError("nsdash create needs root (debootstrap does)", "run it with sudo")
    p = create.plan(ns.target, ns.distribution, ns.release, ns.mirror, ns.packages, ns.root_password)
    final = create.run(p, _step)
    sys.stderr.write(f"Created {p.distribution} {p.release} in {final}; boot it with "
                     f"'nsdash spawn -bD {final}'.\n")
    return 0
