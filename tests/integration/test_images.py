"""machinectl's image verbs on real trees: clone, rename, remove, read-only,
export-tar and import-tar, and the refusals (bad names, busy images, damaged
archives) with nothing left behind.

Every test works in its own image directory (NSDASH_IMAGE_PATH) holding a
copy of the BusyBox demo tree with a few extra kinds of file added (a device
node, a FIFO, a hard link, a setuid file, an xattr, a dangling symlink), so a
round trip must keep more than plain files.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pty
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import NSDASH, REPO, run_nsdash, tree_manifest, wait_for

from nsdash.system import fsflags


def manifest(root: Path) -> dict[str, tuple]:
    """Every entry: mode, owner, size, mtime (s), content hash, link target, device, xattrs."""
    def entry(path: str) -> tuple:
        st = os.lstat(path)
        digest = target = None
        if stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            target = os.readlink(path)
        xattrs = {} if stat.S_ISLNK(st.st_mode) else {
            k: os.getxattr(path, k, follow_symlinks=False) for k in os.listxattr(path, follow_symlinks=False)}
        rdev = st.st_rdev if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else None
        mtime = None if stat.S_ISDIR(st.st_mode) and path == str(root) else int(st.st_mtime)
        return (st.st_mode, st.st_uid, st.st_gid, st.st_size if not stat.S_ISDIR(st.st_mode) else None,
                mtime, digest, target, rdev, tuple(sorted(xattrs.items())), st.st_nlink)

    return tree_manifest(root, entry=entry)


@pytest.fixture
def image(image_dir, busybox_cache, machine_name) -> str:
    """An image named after the test's machine name: the BusyBox tree plus special files."""
    tree = image_dir / machine_name
    subprocess.run(["cp", "-a", str(busybox_cache), str(tree)], check=True)
    os.mknod(tree / "dev-null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mkfifo(tree / "fifo", 0o600)
    (tree / "data").write_bytes(os.urandom(200_000))
    os.link(tree / "data", tree / "data-link")
    (tree / "suid").write_text("#!/bin/sh\n")
    os.chown(tree / "suid", 1234, 5678)
    os.chmod(tree / "suid", 0o4755)
    os.setxattr(tree / "data", "user.nsdash", b"kept")
    os.symlink("/nowhere/at/all", tree / "dangling")
    return machine_name


def hidden(d: Path) -> list[str]:
    return [n for n in os.listdir(d) if n.startswith(".")]


def ok(*args: str) -> subprocess.CompletedProcess:
    r = run_nsdash(*args)
    assert r.returncode == 0, r.stderr
    return r


def refused(*args: str) -> str:
    r = run_nsdash(*args)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    return r.stderr


def test_clone_rename_read_only_remove(image_dir, image):
    before = manifest(image_dir / image)
    ok("clone", image, image + "-c")
    assert manifest(image_dir / (image + "-c")) == before
    ok("rename", image + "-c", image + "-r")
    assert not (image_dir / (image + "-c")).exists()
    assert manifest(image_dir / (image + "-r")) == before

    ok("read-only", image + "-r")
    assert fsflags.is_immutable(image_dir / (image + "-r"))
    with pytest.raises(PermissionError):
        (image_dir / (image + "-r") / "new").write_text("x")
    listed = ok("list-images", "-o", "json").stdout
    assert f'"name": "{image}-r", "type": "directory", "ro": true' in listed
    assert "RO: read-only" in ok("image-status", image + "-r").stdout
    assert "ReadOnly=yes" in ok("show-image", image + "-r").stdout
    ok("rename", image + "-r", image + "-r2")  # a read-only image keeps its flag across a rename
    assert fsflags.is_immutable(image_dir / (image + "-r2"))
    ok("read-only", image + "-r2", "no")
    assert not fsflags.is_immutable(image_dir / (image + "-r2"))

    ok("clone", "--read-only", image, image + "-ro")
    assert fsflags.is_immutable(image_dir / (image + "-ro"))
    ok("remove", image + "-r2", image + "-ro")  # read-only images are removable, as in machinectl
    assert sorted(os.listdir(image_dir)) == [image]
    assert manifest(image_dir / image) == before


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz", ".tar.xz", ".tar.bz2", ".tar.zst"])
def test_export_import_round_trip(image_dir, image, tmp_path, suffix):
    before = manifest(image_dir / image)
    archive = tmp_path / f"{image}{suffix}"
    r = ok("export-tar", image, str(archive))
    lines = r.stderr.splitlines()
    assert lines[0].startswith("Exported ") and lines[0].endswith(" MiB")  # progress, then the summary
    assert lines[-1].startswith(f"Exported image '{image}' to {archive} (")
    assert not hidden(tmp_path)
    magic = archive.read_bytes()[:6]
    expected = {".tar": b"", ".tar.gz": b"\x1f\x8b", ".tar.xz": b"\xfd7zXZ\x00", ".tar.bz2": b"BZh",
                ".tar.zst": b"\x28\xb5\x2f\xfd"}[suffix]
    assert magic.startswith(expected)
    r = ok("import-tar", str(archive), image + "-i")
    assert "Imported 0% (0.0 MiB)" in r.stderr and "Imported 100%" in r.stderr
    assert manifest(image_dir / (image + "-i")) == before
    assert not hidden(image_dir)


def test_export_to_stdout_and_import_from_stdin_round_trip(image_dir, image):
    """`-` (or no FILE for export-tar) is standard output or input, as machinectl takes it: a
    pipe from one to the other; never a file named "-"."""
    before = manifest(image_dir / image)
    export = subprocess.Popen([*NSDASH, "export-tar", "--format=gzip", image], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, cwd=image_dir)
    assert export.stdout is not None
    r = run_nsdash("import-tar", "-", image + "-p", stdin=export.stdout)
    export.stdout.close()
    assert export.wait(timeout=60) == 0, export.stderr.read() if export.stderr else ""
    assert r.returncode == 0, r.stderr
    assert export.stderr is not None and export.stderr.read().decode().splitlines()[-1].startswith(
        f"Exported image '{image}' to standard output (")
    assert r.stderr.splitlines()[-1].startswith(f"Imported standard input as image '{image}-p' (")
    assert manifest(image_dir / (image + "-p")) == before
    assert sorted(os.listdir(image_dir)) == [image, image + "-p"]  # no "-", nothing hidden


@pytest.mark.parametrize("redirect, line", [
    (">&-", "nsdash: standard output is closed (or read-only): the archive has nowhere to go; "
            "name a FILE, or run it with its output open"),
    ("1</dev/null", "nsdash: standard output is closed (or read-only): the archive has nowhere to go; "
                    "name a FILE, or run it with its output open"),
])
def test_export_to_a_closed_stdout_is_one_line(image_dir, image, redirect, line):
    r = subprocess.run(["sh", "-c", f'exec "$@" {redirect}', "sh", *NSDASH, "export-tar", image, "-"],
                       capture_output=True, text=True, cwd=image_dir, timeout=60)
    assert (r.returncode, r.stderr) == (1, line + "\n")
    assert sorted(os.listdir(image_dir)) == [image]


def test_export_into_a_device_fifo_or_directory_never_replaces_it(image_dir, image, tmp_path):
    """A FILE that exists and is not a regular file is written into, as machinectl's open(2)
    does, never renamed over: `export-tar NAME /dev/full` put a regular file where the host's
    /dev/full was.  (A node of our own here, with /dev/full's numbers: ENOSPC, one line.)"""
    out = tmp_path / "out"
    out.mkdir()
    full = out / "full"
    os.mknod(full, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    assert "No space left on device" in refused("export-tar", "-q", image, str(full))
    assert stat.S_ISCHR(os.lstat(full).st_mode) and hidden(out) == []
    fifo = out / "fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["sh", "-c", 'exec wc -c < "$1"', "sh", str(fifo)], stdout=subprocess.PIPE, text=True)
    ok("export-tar", "-q", image, str(fifo))
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert int(reader.communicate(timeout=60)[0]) > 200_000  # the archive went through the FIFO
    assert "is a directory" in refused("export-tar", image, str(out))
    assert hidden(out) == [] and sorted(os.listdir(out)) == ["fifo", "full"]


def _in_a_terminal(*args: str) -> tuple[int, bytes]:
    """`nsdash ARGS` with a new terminal on its stdin, stdout and stderr: its exit status and output."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(NSDASH[0], [*NSDASH, *args], dict(os.environ, PYTHONPATH=str(REPO)))
    out = b""
    with contextlib.suppress(OSError):
        while chunk := os.read(fd, 4096):
            out += chunk
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out


def test_an_error_in_a_terminal_clears_the_progress_line_first(image_dir, image, tmp_path):
    """In a terminal the progress line is rewritten in place, without a newline: an error
    after it was written onto it ('Exported 1.0 MiBnsdash: export-tar failed: ...')."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["sh", "-c", 'head -c 1500000 < "$1" > /dev/null', "sh", str(fifo)])  # then it goes
    status, out = _in_a_terminal("export-tar", image, str(fifo))
    reader.wait(timeout=60)
    assert status == 1, out
    before, _, after = out.partition(b"nsdash: export-tar failed: Broken pipe")
    assert b"Exported " in before and before.endswith(b"\r\x1b[K"), out  # the error starts its own line


def test_stdio_refusals_are_one_line(image_dir, image, tmp_path):
    assert "needs a NAME" in refused("import-tar", "-")
    for args in (("export-tar", image, "-"), ("import-tar", "-", "tty")):  # a terminal on both ends
        status, out = _in_a_terminal(*args)
        assert status == 1
        assert b"refusing to " in out and b"a terminal" in out, out
    assert sorted(os.listdir(image_dir)) == [image]


def test_import_name_from_the_file_and_read_only(image_dir, image, tmp_path):
    archive = tmp_path / "imported.tar.gz"
    ok("export-tar", "--format=gzip", "-q", image, str(archive))
    ok("import-tar", "--read-only", "-q", str(archive))
    assert fsflags.is_immutable(image_dir / "imported")
    refused_line = refused("import-tar", str(archive))  # the name exists now
    assert "exists already" in refused_line
    ok("remove", "imported")


def test_remove_rename_and_read_only_refused_while_a_machine_runs_from_the_image(image_dir, image, detached):
    detached("-D", str(image_dir / image), "/bin/sh", "-c", "sleep 300")
    wait_for(lambda: "In use by" in run_nsdash("image-status", image).stdout, what="the machine to run")
    assert "in use by running machine" in refused("remove", image)
    assert "in use by running machine" in refused("rename", image, image + "-x")
    # (read-only made the running machine's tree immutable under it; machined says EBUSY)
    assert "in use by running machine" in refused("read-only", image)
    assert not fsflags.is_immutable(image_dir / image)
    assert (image_dir / image).is_dir()
    assert sorted(os.listdir(image_dir)) == [image]
    ok("clone", image, image + "-c")  # copying a busy image is fine, as in machinectl


def test_bad_names_and_missing_images_get_one_line(image_dir, image, tmp_path):
    assert "invalid" in refused("clone", image, "a/b")
    assert "invalid" in refused("rename", image, "../escape")
    assert "invalid" in refused("image-status", "x/y")
    assert "no image named" in refused("remove", image + "-missing")
    assert "no image named" in refused("export-tar", image + "-missing", str(tmp_path / "x.tar"))
    assert "exists already" in refused("clone", image, image)
    assert "cannot read" in refused("import-tar", str(tmp_path / "none.tar"), "fine")
    assert "is not a directory" in refused("export-tar", image, str(tmp_path / "nodir" / "x.tar"))
    assert "unknown --format" in refused("export-tar", "--format=lz4", image, str(tmp_path / "x.tar"))
    assert "invalid boolean" in refused("read-only", image, "maybe")
    assert sorted(os.listdir(image_dir)) == [image]
    assert sorted(os.listdir(tmp_path)) == ["machines"]


def test_damaged_archives_are_refused_and_leave_nothing(image_dir, image, tmp_path):
    good = tmp_path / "good.tar.xz"
    ok("export-tar", "-q", image, str(good))
    truncated = tmp_path / "truncated.tar.xz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar archive at all\n" * 100)
    for archive in (truncated, junk):
        assert "not a usable tar archive" in refused("import-tar", "-q", str(archive), "broken")
        assert sorted(os.listdir(image_dir)) == [image]  # no image and no hidden temporary tree


@pytest.mark.parametrize("member", ["escape/through-symlink", "../dotdot", "escape/../../dotdot"])
def test_an_archive_never_writes_outside_its_image(image_dir, tmp_path, member):
    outside = tmp_path / "outside"
    outside.mkdir()
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        link = tarfile.TarInfo("escape")
        link.type, link.linkname = tarfile.SYMTYPE, str(outside)
        tar.addfile(link)
        info = tarfile.TarInfo(member)
        info.size = 6
        tar.addfile(info, io.BytesIO(b"owned\n"))
    assert "not a usable tar archive" in refused("import-tar", "-q", str(evil), "evil")
    assert os.listdir(outside) == []
    assert not (tmp_path / "dotdot").exists() and not (image_dir.parent.parent / "dotdot").exists()
    assert os.listdir(image_dir) == []


def test_leading_slashes_are_stripped(image_dir, tmp_path):
    archive = tmp_path / "abs.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo(f"/{tmp_path.name}-absolute")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    ok("import-tar", "-q", str(archive), "abs")
    assert (image_dir / "abs" / f"{tmp_path.name}-absolute").read_bytes() == b"abc"
    assert not Path(f"/{tmp_path.name}-absolute").exists()


def test_a_symlinked_image_is_followed_and_removing_it_removes_only_the_link(image_dir, busybox_tree, tmp_path):
    (image_dir / "linked").symlink_to(busybox_tree)
    before = manifest(busybox_tree)
    assert "linked directory no" in " ".join(ok("list-images").stdout.split())
    ok("clone", "linked", "copied")
    assert not (image_dir / "copied").is_symlink() and manifest(image_dir / "copied") == before
    ok("remove", "linked")
    assert not os.path.lexists(image_dir / "linked")
    assert manifest(busybox_tree) == before


# ---------------------------------------------------------------- --template


def test_template_makes_the_tree_on_first_start_only(image, image_dir, tmp_path, machine_name):
    template = image_dir / image
    tree = tmp_path / "made" / machine_name
    tree.parent.mkdir()
    r = run_nsdash("spawn", "-q", "-P", "--resolv-conf=off", "--timezone=off", f"--template={template}", "-D",
                   str(tree), "/bin/sh", "-c",
                   "cat /etc/hostname; echo first > /marker")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "busybox"
    assert (tree / "marker").read_text() == "first\n"
    (tree / "marker").unlink()
    assert manifest(tree) == manifest(template)
    assert os.listdir(tree.parent) == [machine_name]  # no temporary copy left beside it

    (tree / "kept").write_text("mine\n")
    r = run_nsdash("spawn", "-P", f"--template={template}", "-D", str(tree), "/bin/cat", "/kept")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "mine"
    assert "already exists, not populating from template" in r.stderr


def test_template_by_machine_name_goes_to_the_image_home(image, image_dir, machine_name):
    r = run_nsdash("spawn", "-q", "-P", f"--template={image_dir / image}", "-M", machine_name + "-t", "/bin/true")
    assert r.returncode == 0, r.stderr
    assert (image_dir / (machine_name + "-t") / "bin/busybox").exists()
    ok("remove", machine_name + "-t")


def test_template_refusals(image, image_dir, tmp_path):
    tree = tmp_path / "never"
    assert "is not a directory" in refused("spawn", f"--template={tmp_path / 'missing'}", "-D", str(tree), "/bin/true")
    assert "--ephemeral" in refused("spawn", "-x", f"--template={image_dir / image}", "-D", str(tree), "/bin/true")
    assert not tree.exists()
    assert sorted(os.listdir(tmp_path)) == ["machines"]


def test_settings_beside_the_image_follow_clone_rename_and_remove(image_dir, image):
    (image_dir / f"{image}.nspawn").write_text("[Exec]\nBoot=yes\n")
    ok("clone", image, image + "-c")
    assert (image_dir / f"{image}-c.nspawn").read_text() == "[Exec]\nBoot=yes\n"
    ok("rename", image + "-c", image + "-r")
    assert not (image_dir / f"{image}-c.nspawn").exists()
    assert (image_dir / f"{image}-r.nspawn").read_text() == "[Exec]\nBoot=yes\n"
    ok("remove", image + "-r")
    assert sorted(os.listdir(image_dir)) == [image, f"{image}.nspawn"]


def test_raw_images_clone_rename_read_only_and_remove(image_dir, machine_name):
    """A NAME.raw disk image through every verb; names with dots keep them (NAME.v2.raw)."""
    data = os.urandom(3 << 20)
    (image_dir / f"{machine_name}.raw").write_bytes(data)
    ok("clone", machine_name, machine_name + ".v2")
    assert (image_dir / f"{machine_name}.v2.raw").read_bytes() == data
    ok("rename", machine_name + ".v2", machine_name + ".v3")
    assert sorted(os.listdir(image_dir)) == [f"{machine_name}.raw", f"{machine_name}.v3.raw"]

    ok("read-only", machine_name + ".v3")
    assert os.stat(image_dir / f"{machine_name}.v3.raw").st_mode & 0o222 == 0
    assert f'"name": "{machine_name}.v3", "type": "raw", "ro": true' in ok("list-images", "-o", "json").stdout
    ok("read-only", machine_name + ".v3", "no")
    assert os.stat(image_dir / f"{machine_name}.v3.raw").st_mode & 0o200
    ok("clone", "--read-only", machine_name, machine_name + "-ro")
    assert os.stat(image_dir / f"{machine_name}-ro.raw").st_mode & 0o222 == 0

    assert "is a raw disk image" in refused("export-tar", machine_name, str(image_dir.parent / "x.tar"))
    ok("remove", machine_name + ".v3", machine_name + "-ro")
    assert os.listdir(image_dir) == [f"{machine_name}.raw"]


def test_an_ephemeral_machine_on_the_image_makes_it_busy_too(image_dir, image, detached, machine_name):
    """-x runs on an overlay of the image, so its root is not the tree: nsdash's state knows."""
    before = manifest(image_dir / image)
    detached("-x", "-D", str(image_dir / image), "/bin/sh", "-c", "sleep 300")
    wait_for(lambda: "In use by" in run_nsdash("image-status", image).stdout, what="the machine to run")
    assert f"in use by running machine '{machine_name}'" in refused("remove", image)
    assert "in use by running machine" in refused("rename", image, image + "-x")
    assert f'"used_by": ["{machine_name}"]' in ok("image-status", "-o", "json", image).stdout
    assert manifest(image_dir / image) == before and sorted(os.listdir(image_dir)) == [image]


VENDOR_SCRIPT = """
set -e
mount -t tmpfs -o mode=0755 nsdash-test /usr/local/games   # only in this mount namespace
cp -a "$TREE" /usr/local/games/"$NAME"
export NSDASH_IMAGE_PATH="$HOME_DIR:/usr/local/games"
for verb in "remove $NAME" "rename $NAME $NAME-r" "read-only $NAME no"; do
    "$@" $verb 2>&1 && echo "$verb: allowed" || true
done
"$@" clone "$NAME" "$NAME-c" && echo cloned
"$@" image-status "$NAME" | grep RO:
ls /usr/local/games
"""


def test_vendor_images_under_usr_are_never_changed_only_cloned(image_dir, busybox_cache, machine_name):
    """An image in /usr/local/games stands for /usr/lib/machines (a tmpfs over it in a mount
    namespace of the test's own, so the host's /usr is never written)."""
    from conftest import NSDASH, REPO

    env = {**os.environ, "TREE": str(busybox_cache), "NAME": machine_name, "HOME_DIR": str(image_dir)}
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", VENDOR_SCRIPT, "sh", *NSDASH],
                       env=env, capture_output=True, text=True, timeout=120, cwd=REPO)
    out = r.stdout.splitlines()
    assert r.returncode == 0, (r.stdout, r.stderr)
    refusals = [line for line in out if "is a vendor image" in line]
    assert len(refusals) == 3 and all(line.startswith("nsdash: ") for line in refusals), out
    assert not any(line.endswith(": allowed") for line in out), out
    assert "cloned" in out and out[-1] == machine_name  # the vendor image is still there, unchanged
    assert "read-only" in next(line for line in out if "RO:" in line)
    assert os.listdir(image_dir) == [machine_name + "-c"]  # the clone went to the first directory
    assert machine_name not in os.listdir("/usr/local/games")  # the tmpfs went with the namespace
