"""systemd-nspawn's --template=DIR: make the container's tree from a template on first use,
and the one tree copy nsdash makes (machinectl clone uses it too).

A copy is a btrfs snapshot where the template is a btrfs subvolume (instant),
else `cp -a --reflink=auto` (shares blocks where the file system can, keeps
owners, modes, device nodes, xattrs and ACLs).  Mounts below the template are
not copied (cp -a crosses none when the template is its own mount: cp has
--one-file-system; nspawn's snapshot excludes sub-mounts too).  The copy is
made under a hidden temporary name beside the directory and renamed into
place with RENAME_NOREPLACE: a concurrent start, or one interrupted, never
leaves a half tree under the name.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from pathlib import Path

from nsdash.errors import NsdashError, SpecError

BTRFS_SUBVOLUME_INODE = 256  # every btrfs subvolume's top directory


def is_subvolume(path: Path) -> bool:
    """PATH is the top of a btrfs subvolume (inode 256 on btrfs)."""
    try:
        if os.stat(path).st_ino != BTRFS_SUBVOLUME_INODE:
            return False
    except OSError:
        return False
    out = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True)
    return out.stdout.strip() == "btrfs"


def copy_tree(source: Path, dest: Path) -> None:
    """Copy tree SOURCE to DEST (which must not exist): a btrfs snapshot, else a reflink copy."""
    if is_subvolume(source) and shutil.which("btrfs"):
        argv = ["btrfs", "subvolume", "snapshot", str(source), str(dest)]
    else:
        argv = ["cp", "-a", "--reflink=auto", "--one-file-system", "--no-target-directory", str(source), str(dest)]
    out = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
        raise NsdashError(f"copying {source} failed: {last}", "check the free space and the source tree")


def populate(template: str, directory: str, quiet: bool = False) -> bool:
    """Make DIRECTORY from TEMPLATE unless DIRECTORY exists; True if it was made."""
    src = Path(template)
    if not src.is_dir():
        raise SpecError(f"template {template} is not a directory", "pass an OS tree with --template=DIR")
    dest = Path(os.path.abspath(directory))
    if os.path.lexists(dest):
        if not quiet:  # nspawn says so too: the template is for the first start only
            import sys

            sys.stderr.write(f"Directory {dest} already exists, not populating from template {template}.\n")
        return False
    if not dest.parent.is_dir():
        raise SpecError(f"{dest.parent} does not exist", "create the directory that is to hold the tree")
    # ctypes only for a tree made here: list-images reads this module too.
    from nsdash.system.syscalls import renameat2_noreplace

    temp = dest.parent / f".#{dest.name}{secrets.token_hex(8)}"
    try:
        copy_tree(src, temp)
        try:
            renameat2_noreplace(temp, dest)
        except FileExistsError:  # another start made it meanwhile: use theirs
            shutil.rmtree(temp)
            return False
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(temp)
        raise
    return True
