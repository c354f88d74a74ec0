"""`nsdash create`: a bootable Debian or Ubuntu tree in one command, through debootstrap.

    nsdash create [--distribution=debian|ubuntu] [--release=R] [--packages=LIST]
                  [--root-password=PW] [--mirror=URL] NAME|DIR

NAME makes /var/lib/machines/NAME (the image home, nsdash.system.paths); a
DIR (anything with a '/') makes that directory.  The tree gets what a user
needs to boot it and log in: systemd and D-Bus (plus procps and iproute2),
a machine ID, a hostname, and root without a password unless
--root-password is given.  debootstrap's own steps are shown on stderr.

The tree is built under a hidden temporary name beside its final place and
renamed there only when complete; a failure or Ctrl-C removes it (and any
mount debootstrap left in it), so nothing half made is ever under the name.
The finishing steps are the demo trees' (nsdash.demo.trees), so a created tree
and the test suite's Debian tree are made the same way.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path

from nsdash.errors import NsdashError, UsageError
from nsdash.launcher import names
from nsdash.machines import images
from nsdash.system import paths
from nsdash.system.text import escape

DISTRIBUTIONS = {
    # name -> (default release, default mirror, the keyring debootstrap checks signatures with)
    "debian": ("bookworm", None, "/usr/share/keyrings/debian-archive-keyring.gpg"),
    "ubuntu": ("jammy", "http://archive.ubuntu.com/ubuntu", "/usr/share/keyrings/ubuntu-archive-keyring.gpg"),
}
SCRIPTS = Path("/usr/share/debootstrap/scripts")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nsdash create", description=__doc__.split("\n\n")[0])
    p.add_argument("target", metavar="NAME|DIR")
    p.add_argument("--distribution", "-d", default="debian", choices=sorted(DISTRIBUTIONS))
    p.add_argument("--release", "-r")
    p.add_argument("--packages", default="", help="more packages, comma-separated")
    p.add_argument("--root-password")
    p.add_argument("--mirror")
    return p


def target_path(target: str) -> tuple[Path, str]:
    """Where the tree goes, and its hostname: NAME in the image home, or DIR as given."""
    if "/" not in target:
        return images.check_new(target, paths.image_home()), target
    path = Path(target).absolute()
    if os.path.lexists(path):
        raise UsageError(f"{path} exists already", "name a directory that does not exist yet")
    if not path.parent.is_dir():
        raise UsageError(f"{path.parent} is not a directory", "create the parent directory first")
    return path, names.hostname_cleanup(path.name) or "container"


def _check_reachable(distribution: str, release: str, mirror: str) -> None:
    keyring = DISTRIBUTIONS[distribution][2]
    if not (SCRIPTS / release).exists():
        raise UsageError(f"debootstrap does not know the {distribution} release '{escape(release)}'",
                         f"pick one of {SCRIPTS}, or upgrade debootstrap")
    missing, fixes = [], []
    try:
        with urllib.request.urlopen(f"{mirror}/dists/{release}/Release", timeout=15):
            pass
    except (urllib.error.URLError, OSError) as e:
        missing.append(f"the archive {mirror} cannot be reached ({getattr(e, 'reason', e)})")
        fixes.append("pass --mirror=URL of a reachable mirror")
    if not os.path.exists(keyring):
        # never --no-check-gpg: a tree whose packages nobody checked is not worth booting
        missing.append(f"its signing keyring {keyring} is not installed")
        fixes.append(f"install the {distribution}-keyring package")
    if missing:
        raise NsdashError(f"cannot create a {distribution} tree here: {' and '.join(missing)}",
                          " and ".join(fixes))


def _debootstrap(argv: list[str]) -> None:
    """Run debootstrap, its steps (I:/W:/E: lines) shown on stderr as they come."""
    last: deque[str] = deque(maxlen=5)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            line = line.rstrip()
            last.append(line)
            if line[:2] in ("I:", "W:", "E:"):
                sys.stderr.write(escape(line) + "\n")
        rc = proc.wait()
    except BaseException:
        proc.terminate()
        proc.wait()
        raise
    if rc != 0:
        why = next((x for x in reversed(last) if x.startswith("E:")), last[-1] if last else f"status {rc}")
        raise NsdashError(f"debootstrap failed: {escape(why)}", "see the steps above; check the mirror and release")


def build(dest: Path, hostname: str, distribution: str, release: str, mirror: str,
          packages: list[str], root_password: str | None) -> None:
    """debootstrap into DEST (an empty directory), then finish the tree as the demo trees are."""
    from nsdash.demo import trees

    include = list(dict.fromkeys([*trees.SYSTEMD_BASE, *packages]))
    # dpkg's fsync of every file buys nothing for a tree thrown away if the build fails
    (dest / trees.UNSAFE_IO).parent.mkdir(parents=True, exist_ok=True)
    (dest / trees.UNSAFE_IO).write_text("force-unsafe-io\n")
    argv = ["debootstrap", "--variant=minbase", f"--include={','.join(include)}"]
    if distribution == "ubuntu":
        argv.append("--components=main,universe")
    _debootstrap([*argv, release, str(dest), mirror])
    sys.stderr.write("I: Setting up the machine ID, the hostname and root's login...\n")
    with tempfile.NamedTemporaryFile(prefix="nsdash-create-", suffix=".log") as log:
        try:
            trees._finish_debian(dest, hostname, Path(log.name))  # noqa: SLF001 - the one finishing recipe
        except subprocess.CalledProcessError as e:
            raise NsdashError(f"finishing the tree failed: {' '.join(map(str, e.cmd))}") from None
    if root_password is not None:
        set_root_password(dest, root_password)


def set_root_password(tree: Path, password: str) -> None:
    """Give root in TREE this password (hashed by the tree's own chpasswd, on its stdin:
    never on a command line, where `ps` would show it)."""
    if "\n" in password or ":" in password:
        raise UsageError("--root-password may not contain ':' or a newline", "pick another password")
    done = subprocess.run(["chroot", str(tree), "chpasswd"], input=f"root:{password}\n", text=True,
                          capture_output=True)
    if done.returncode != 0:
        raise NsdashError(f"setting root's password failed: {escape(done.stderr.strip())}")


def main(argv: list[str]) -> int:
    try:
        ns = _parser().parse_args(argv)
    except SystemExit as e:
        if e.code == 0:
            raise
        raise UsageError("bad arguments for 'nsdash create'", "see 'nsdash create --help'") from None
    if os.geteuid() != 0:
        raise UsageError("nsdash create needs root (debootstrap does)", "run it with sudo")
    final, hostname = target_path(ns.target)
    default_release, default_mirror, _ = DISTRIBUTIONS[ns.distribution]
    release = ns.release or default_release
    mirror = (ns.mirror or default_mirror or _debian_mirror()).rstrip("/")
    _check_reachable(ns.distribution, release, mirror)
    packages = [p for p in ns.packages.replace(" ", ",").split(",") if p]
    final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = images.temp_name(final.parent, final.name)
    temp.mkdir(0o755)
    try:
        build(temp, hostname, ns.distribution, release, mirror, packages, ns.root_password)
        images.publish(temp, final)
    except BaseException:
        sys.stderr.write("I: Removing the unfinished tree...\n")
        images.remove_tree(temp)
        raise
    sys.stderr.write(f"Created {ns.distribution} {release} in {final}; boot it with "
                     f"'nsdash spawn -bD {final}'.\n")
    return 0


def _debian_mirror() -> str:
    from nsdash.demo import trees

    return trees._debian_mirror()  # noqa: SLF001 - the host's own Debian mirror, found once
