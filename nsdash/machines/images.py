"""machinectl's images: find, describe, clone, rename, remove, mark read-only,
export to and import from tar archives.

An image is a directory tree (or a btrfs subvolume, or a `NAME.raw` disk
image) named NAME in one of the image directories (nsdash.system.paths:
/etc/machines, /run/machines, /var/lib/machines, /var/lib/container, /usr/local/lib/machines,
/usr/lib/machines; the first one holding NAME wins, as in machinectl).  New
images (clone, import) are always made in /var/lib/machines.

Every new image is built under a hidden temporary name (`.#NAME…`, which
list-images skips) in its final directory and renamed into place only when
complete, so a failure or a Ctrl-C never leaves a half-made image under its
name.  Images under /usr are the vendor's: read-only, never renamed or removed.
An image a running machine uses (its root is the tree, or nsdash's state says
the machine was started from it) is neither renamed nor removed.  An image's
NAME.nspawn settings go with it on clone, rename and remove, as machinectl's do.

Archives are written and read by GNU tar as systemd-importd does (numeric
owners, modes, device nodes, xattrs and ACLs kept); compression is chosen by
--format or the file's suffix when exporting and by the content when
importing.  GNU tar never writes outside the target: it drops leading '/',
refuses members with '..', and makes symlinks that point out of the tree only
after everything else is extracted, so no member can be written through them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from nsdash.errors import MachineExists, NsdashError, UsageError
from nsdash.launcher import template
from nsdash.machines.imagescan import Image, check_name, discover, find, users, users_of  # noqa: F401 - the lean half, re-exported
from nsdash.system import fsflags, mountinfo, paths
from nsdash.system.fdio import writable

CHUNK = 1 << 20

# --format name -> (suffixes, compressor argv, magic bytes)
FORMATS: dict[str, tuple[tuple[str, ...], list[str], bytes]] = {
    "xz": ((".xz", ".txz"), ["xz", "-c", "-T0"], b"\xfd7zXZ\x00"),
    "gzip": ((".gz", ".tgz"), ["gzip", "-c"], b"\x1f\x8b"),
    "bzip2": ((".bz2", ".tbz2"), ["bzip2", "-c"], b"BZh"),
    "zstd": ((".zst", ".tzst"), ["zstd", "-c", "-q"], b"\x28\xb5\x2f\xfd"),
}
TAR_COMMON = ["--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls"]

Progress = Callable[[int, int | None], None]  # bytes done, bytes in all (None: unknown)


class ImageBusy(MachineExists):
    """An image a running machine uses."""


def disk_usage(image: Image) -> int | None:
    """Bytes IMAGE takes on disk (du -sx: hard links once, this file system only), or None when
    it cannot be told.  Walks the whole tree: callers keep it off the UI thread, and seldom."""
    if image.type == "raw":
        with contextlib.suppress(OSError):
            return os.stat(image.path).st_blocks * 512
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError):
        out = subprocess.run(["du", "-sxB1", "--", str(image.path.resolve())], capture_output=True,
                             text=True, timeout=60, stdin=subprocess.DEVNULL)
        # du reports what it could read even when some entry failed (its status is then 1)
        return int(out.stdout.split()[0])
    return None


# ---------------------------------------------------------------- building blocks


def temp_name(directory: Path, name: str) -> Path:
    """A hidden, unique name in DIRECTORY to build image NAME under (list-images skips it)."""
    return directory / f".#{name}{secrets.token_hex(8)}"


def _mounts_below(path: Path) -> list[str]:
    return mountinfo.mounts_under(os.path.realpath(path))


def remove_tree(path: Path) -> None:
    """Remove a tree or file, immutable flags included (a read-only image, or files a guest
    marked).  Mounts left below it (debootstrap's /proc and /sys, when it was interrupted)
    are detached first: removing files through a mount of /sys or a bind mount would reach
    far outside the tree."""
    if not os.path.lexists(path):
        return
    if not path.is_symlink():
        from nsdash.system.syscalls import MNT_DETACH, umount2

        for point in sorted(_mounts_below(path), key=len, reverse=True):
            with contextlib.suppress(OSError):
                umount2(point, MNT_DETACH)
        left = _mounts_below(path)
        if left:
            raise NsdashError(f"{left[0]} is still mounted; {path} was not removed",
                              f"unmount it, then remove {path} by hand")
    if path.is_dir() and not path.is_symlink():
        with contextlib.suppress(OSError):
            fsflags.set_immutable(path, False)
        if template.is_subvolume(path) and shutil.which("btrfs"):
            subprocess.run(["btrfs", "property", "set", "-ts", str(path), "ro", "false"],
                           capture_output=True)
            if subprocess.run(["btrfs", "subvolume", "delete", str(path)], capture_output=True).returncode == 0:
                return
        # chattr -R: files a guest marked immutable (or append-only) would stop rmtree
        subprocess.run(["chattr", "-R", "-f", "-i", "-a", str(path)], capture_output=True)
        shutil.rmtree(path)
    else:
        path.unlink()


def check_new(name: str, home: Path) -> Path:
    """HOME/NAME for a new image NAME, refused in one line if the name is bad or taken."""
    check_name(name, "new image name")
    for d in paths.image_dirs():
        for candidate in (d / name, d / f"{name}.raw"):
            if os.path.lexists(candidate):
                raise UsageError(f"an image named '{name}' exists already ({candidate})",
                                 "pick another name, or remove that image first")
    return home / name


def _raw_aware(target: Path, image: Image) -> Path:
    """TARGET for a copy of IMAGE: NAME.raw for a raw image (an added suffix: a name with a
    dot, such as deb.12, is a whole name, not a stem to replace)."""
    return target.with_name(target.name + ".raw") if image.type == "raw" else target


@contextlib.contextmanager
def _locked(image: Image) -> Iterator[None]:
    """The tree's start lock (inuse.start_guard takes it too), so no machine starts on the
    image while it is renamed or removed; then the image must have no running user."""
    fd = os.open(image.path, os.O_RDONLY | os.O_CLOEXEC | (os.O_DIRECTORY if image.type != "raw" else 0))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ImageBusy(f"image '{image.name}' is being started",
                            "try again once the machine runs, after stopping it") from None
        running = users(image)
        if running:
            raise ImageBusy(f"image '{image.name}' is in use by running machine '{running[0]}'",
                            f"stop it first with 'nsdash terminate {running[0]}'")
        yield
    finally:
        os.close(fd)


def _writable(image: Image, verb: str) -> None:
    if image.vendor:
        raise UsageError(f"image '{image.name}' is a vendor image ({image.path}) and cannot be {verb}",
                         f"clone it with 'nsdash clone {image.name} NEW' and use the copy")


# ---------------------------------------------------------------- verbs


def settings_files(image: Image) -> list[Path]:
    """IMAGE's .nspawn files, which machinectl clones, renames and removes with it: in
    /etc/systemd/nspawn, /run/systemd/nspawn, and beside the image."""
    from nsdash.launcher.settings import TRUSTED_DIRS

    found = []
    for base in (*map(Path, TRUSTED_DIRS), image.path.parent):
        candidate = base / f"{image.name}.nspawn"
        if candidate.is_file() and not candidate.is_symlink():
            found.append(candidate)
    return found


def _follow_settings(files: list[Path], old: Image, new_name: str, new_dir: Path, action: str) -> None:
    """Carry the settings along: a file beside the image goes beside the new one."""
    for f in files:
        target = (new_dir if f.parent == old.path.parent else f.parent) / f"{new_name}.nspawn"
        if os.path.lexists(target):
            continue  # never overwrite settings someone wrote for the new name
        if action == "copy":
            shutil.copy2(f, target)
        else:
            os.rename(f, target)




def clone(name: str, new: str, read_only: bool = False) -> Image:
    """A copy of NAME as NEW in /var/lib/machines: a btrfs snapshot where NAME is a
    subvolume, else `cp -a --reflink=auto` (shares blocks where the file system can)."""
    image = find(name)
    home = paths.image_home()
    target = _raw_aware(check_new(new, home), image)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = temp_name(home, new)
    try:
        template.copy_tree(image.path.resolve(), temp)  # (a symlinked image: the tree it points to)
        if image.type != "raw":
            # the copy of a read-only tree is writable unless asked otherwise
            fsflags.set_immutable(temp, False)
        publish(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            remove_tree(temp)
        raise
    if read_only:  # after the rename: an immutable directory cannot be renamed
        _set_read_only(target, "raw" if image.type == "raw" else image.type, True)
    _follow_settings(settings_files(image), image, new, home, "copy")
    return find(new)


def publish(temp: Path, target: Path) -> None:
    """Rename the finished TEMP to TARGET, refusing (not replacing) a TARGET made meanwhile."""
    from nsdash.system.syscalls import renameat2_noreplace

    try:
        renameat2_noreplace(temp, target)
    except FileExistsError:
        raise UsageError(f"an image named '{target.name}' exists already ({target})",
                         "pick another name") from None


def rename(name: str, new: str) -> Image:
    image = find(name)
    _writable(image, "renamed")
    target = _raw_aware(check_new(new, image.path.parent), image)
    with _locked(image):
        immutable = image.type == "directory" and fsflags.is_immutable(image.path)
        if immutable:  # an immutable directory cannot be renamed; machinectl lifts the flag meanwhile
            fsflags.set_immutable(image.path, False)
        try:
            publish(image.path, target)
        finally:
            if immutable:
                fsflags.set_immutable(target if target.exists() else image.path, True)
        _follow_settings(settings_files(image), image, new, image.path.parent, "rename")
    return find(new)


def remove(name: str) -> None:
    image = find(name)
    _writable(image, "removed")
    with _locked(image):
        # Move it out of sight first, so a failure half-way never leaves a broken image under its name.
        temp = temp_name(image.path.parent, name)
        if image.type == "directory" and not image.path.is_symlink():
            fsflags.set_immutable(image.path, False)
        os.rename(image.path, temp)  # a symlinked image: only the link goes, as a link is all it is
    remove_tree(temp)
    for f in settings_files(image):
        f.unlink()


def _set_read_only(path: Path, kind: str, on: bool) -> None:
    if kind == "raw":
        mode = os.lstat(path).st_mode & 0o7777
        os.chmod(path, (mode & ~0o222) if on else (mode | 0o200))
    elif kind == "subvolume":
        _run(["btrfs", "property", "set", "-ts", str(path), "ro", "true" if on else "false"], "btrfs")
    else:
        try:
            fsflags.set_immutable(path, on)
        except OSError as e:
            if e.errno in (errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL) and not on:
                return
            raise NsdashError(f"cannot mark {path} read-only: {os.strerror(e.errno or 0)}",
                              "the file system has no immutable flag; keep the image elsewhere") from None


def set_read_only(name: str, on: bool = True) -> Image:
    image = find(name)
    _writable(image, "changed")
    with _locked(image):  # a running machine's tree turned immutable under it: machined refuses (EBUSY)
        _set_read_only(image.path.resolve(), image.type, on)
    return find(name)


def _run(argv: list[str], what: str) -> None:
    out = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
        raise NsdashError(f"{what} failed: {last}")


# ---------------------------------------------------------------- tar archives


def format_for(path: str, fmt: str | None) -> str:
    """The compression of an export: --format, else the file's suffix, else uncompressed."""
    if fmt:
        if fmt != "uncompressed" and fmt not in FORMATS:
            raise UsageError(f"unknown --format '{fmt}'",
                             "use one of uncompressed, " + ", ".join(FORMATS))
        return fmt
    for name, (suffixes, _, _) in FORMATS.items():
        if path.endswith(suffixes):
            return name
    return "uncompressed"


def _sniff(head: bytes) -> str:
    for name, (_, _, magic) in FORMATS.items():
        if head.startswith(magic):
            return name
    return "uncompressed"


def _tail(f: IO[bytes]) -> str:
    f.seek(0)
    # tar's first complaint names the cause; its last line is only "Exiting with failure status"
    lines = [ln for ln in f.read().decode("utf-8", "replace").splitlines()
             if ln.strip() and "Removing leading" not in ln and "Exiting with failure" not in ln]
    return lines[0] if lines else ""


STDIO = ("-", "")  # an export's FILE, an import's FILE: standard output or input, as machinectl takes them


def export_tar(name: str, file: str, fmt: str | None = None, progress: Progress | None = None) -> int:
    """Write image NAME to FILE as a tar archive; the number of bytes written.  FILE is
    written under a temporary name beside it and renamed at the end; "-" is standard
    output (never a terminal, as machinectl refuses one); a device or FIFO is written
    into (as machinectl's open(2) does), never replaced; a symlink's target is written."""
    image = find(name)
    if image.type == "raw":
        raise UsageError(f"image '{name}' is a raw disk image", "copy the .raw file instead of exporting a tar")
    fmt = format_for(file, fmt)
    if fmt != "uncompressed" and not shutil.which(FORMATS[fmt][1][0]):
        raise UsageError(f"--format={fmt} needs {FORMATS[fmt][1][0]}", f"install {FORMATS[fmt][1][0]}")
    if file in STDIO:
        if not writable(1):
            raise UsageError("standard output is closed (or read-only): the archive has nowhere to go",
                             "name a FILE, or run it with its output open")
        if os.isatty(1):
            raise UsageError("refusing to write the archive to a terminal",
                             "name a FILE, or send standard output to one (> NAME.tar) or to a pipe")
        with open(1, "wb", closefd=False) as out:
            return _write_tar(name, image.path, fmt, out, progress)
    try:
        mode = os.stat(file).st_mode
    except FileNotFoundError:
        mode = stat.S_IFREG  # a new file (or a dangling symlink's target)
    if stat.S_ISDIR(mode):
        raise UsageError(f"cannot write {file}: it is a directory", f"name a file in it, e.g. {file}/{name}.tar")
    if not stat.S_ISREG(mode):
        # /dev/stdout, a FIFO: the rename below would put a regular file in its place
        # (`export-tar NAME /dev/full` replaced the host's /dev/full)
        with open(file, "wb") as out:
            return _write_tar(name, image.path, fmt, out, progress)
    target = Path(os.path.realpath(file))
    if not target.parent.is_dir():
        raise UsageError(f"cannot write {target}: {target.parent} is not a directory",
                         "create the directory first, or name a file in an existing one")
    temp = target.parent / f".#{target.name}{secrets.token_hex(8)}"
    try:
        with open(temp, "xb") as out:
            written = _write_tar(name, image.path, fmt, out, progress)
        os.rename(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    return written


def _write_tar(name: str, tree: Path, fmt: str, out: IO[bytes], progress: Progress | None) -> int:
    """TREE as a tar archive (compressed as FMT) into OUT; the number of tar bytes."""
    written = 0
    with tempfile.TemporaryFile() as errors:
        tar = subprocess.Popen(["tar", *TAR_COMMON, "--sparse", "-C", str(tree), "-c", "."],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors)
        comp = None
        if fmt != "uncompressed":
            comp = subprocess.Popen(FORMATS[fmt][1], stdin=subprocess.PIPE, stdout=out, stderr=errors)
        assert tar.stdout is not None
        sink = comp.stdin if comp is not None else out
        assert sink is not None
        try:
            while chunk := tar.stdout.read(CHUNK):
                sink.write(chunk)
                written += len(chunk)
                if progress:
                    progress(written, None)
        except BaseException:
            for child in (tar, comp):
                if child is not None:
                    child.kill()
                    child.wait()
            raise
        tar_rc = tar.wait()
        comp_rc = 0
        if comp is not None:
            sink.close()
            comp_rc = comp.wait()
        if tar_rc != 0 or comp_rc != 0:
            raise NsdashError(f"exporting '{name}' failed: {_tail(errors) or 'tar failed'}")
    return written


def _default_import_name(file: str) -> str:
    base = Path(file).name
    for suffix in (".tar.xz", ".tar.gz", ".tar.bz2", ".tar.zst", ".txz", ".tgz", ".tbz2", ".tzst", ".tar"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def import_tar(file: str, name: str | None = None, read_only: bool = False,
               progress: Progress | None = None) -> Image:
    """Unpack tar archive FILE (compressed or not) as image NAME in /var/lib/machines.
    A damaged archive is refused and leaves nothing behind."""
    stdin = file in STDIO
    if stdin and not name:
        raise UsageError("an archive read from standard input needs a NAME", "add the image's NAME after -")
    name = name or _default_import_name(file)
    check_name(name)
    target = check_new(name, paths.image_home())
    if stdin and os.isatty(0):
        raise UsageError("refusing to read the archive from a terminal", "name a FILE, or send one in (< FILE)")
    try:
        src = open(0 if stdin else file, "rb", closefd=not stdin)  # noqa: SIM115 - closed in the finally below
    except OSError as e:
        raise UsageError(f"cannot read {file}: {e.strerror}", "name an existing tar archive") from None
    home = paths.image_home()
    temp = temp_name(home, name)
    try:
        total = os.fstat(src.fileno()).st_size or None
        head = src.read(8)
        fmt = _sniff(head)
        if fmt != "uncompressed" and not shutil.which(FORMATS[fmt][1][0]):
            raise UsageError(f"{file} is {fmt}-compressed and {FORMATS[fmt][1][0]} is missing",
                             f"install {FORMATS[fmt][1][0]}")
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.mkdir(temp, 0o755)
        _unpack(src, head, fmt, temp, file, progress, total)
        publish(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            remove_tree(temp)
        raise
    finally:
        src.close()
    if read_only:
        _set_read_only(target, "directory", True)
    return find(name)


def _unpack(src: IO[bytes], head: bytes, fmt: str, dest: Path, file: str,
            progress: Progress | None, total: int | None) -> None:
    with tempfile.TemporaryFile() as errors:
        tar_argv = ["tar", *TAR_COMMON, "--same-permissions", "--same-owner", "-C", str(dest), "-x"]
        comp = None
        if fmt != "uncompressed":
            comp = subprocess.Popen([FORMATS[fmt][1][0], "-dc"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=errors)
            tar = subprocess.Popen(tar_argv, stdin=comp.stdout, stdout=subprocess.DEVNULL, stderr=errors)
            assert comp.stdout is not None
            comp.stdout.close()  # tar holds it now
            sink = comp.stdin
        else:
            tar = subprocess.Popen(tar_argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors)
            sink = tar.stdin
        assert sink is not None
        done = 0
        try:
            chunk = head
            while chunk:
                sink.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
                chunk = src.read(CHUNK)
        except BrokenPipeError:
            pass  # tar (or the decompressor) gave up: its exit status says why
        finally:
            with contextlib.suppress(BrokenPipeError):
                sink.close()
        comp_rc = comp.wait() if comp is not None else 0
        tar_rc = tar.wait()
        if tar_rc != 0 or comp_rc != 0:
            reason = _tail(errors) or f"tar exited with status {tar_rc}"
            raise NsdashError(f"{file} is not a usable tar archive: {reason}",
                              "check the file (tar -tf), or export the image again")
