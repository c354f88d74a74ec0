"""--image=FILE: the Debian tree as a disk image, booted through loop devices.

The images are made by Debian's tools, not by nsdash (nsdash.demo.trees:
sfdisk writes a GPT following the Discoverable Partitions Specification,
`mkfs.ext4 -d` fills each partition from a directory): "debian-gpt" has the
root partition, a /srv partition marked read-only (GPT bit 60) and a /home
partition marked no-auto (bit 63); "debian-fs" is the tree as one bare ext4.
Each test boots a copy in the session's temporary directory (the cached ones
stay untouched), so the leak check sees any loop device left bound to it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from nsdash.demo import trees
from nsdash.launcher.image import HOLDER, loop_devices
from nsdash.machines import state as st
from nsdash.system import paths
from tests.conftest import console_log, run_nsdash, teardown_machine, wait_for
from tests.integration.test_guests import POWEROFF_LINE, Terminal, _ask, _login

BOOT = 90.0


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("images")


def _copy(kind: str, dest: Path) -> Path:
    subprocess.run(["cp", "--sparse=always", str(trees.ensure_image(kind)), str(dest)], check=True)
    return dest


@pytest.fixture(scope="session")
def gpt_image(image_dir) -> Path:
    return _copy("debian-gpt", image_dir / "debian.raw")


@pytest.fixture(scope="session")
def fs_image(image_dir) -> Path:
    return _copy("debian-fs", image_dir / "plain.raw")


def _loops_of(image: Path) -> list[str]:
    """Loop devices bound to IMAGE (or to a deleted copy of it beside it)."""
    return [d.name for d in loop_devices() if d.backing.startswith(str(image.parent))]


def _no_loops_left(image: Path) -> None:
    wait_for(lambda: not _loops_of(image), 10, what=f"the loop devices of {image} to be unbound")


def _host_mounts() -> list[str]:
    holder = str(paths.state_root() / HOLDER)
    with open("/proc/self/mountinfo") as f:
        return [p for p in (line.split()[4] for line in f) if p.startswith(holder)]


def _sh(name: str, script: str) -> str:
    r = run_nsdash("shell", name, "/bin/sh", "-c", script, timeout=BOOT)
    assert r.returncode == 0, r.stderr
    return r.stdout.replace("\r", "")


def test_gpt_image_boots_detached_with_its_partitions_to_login_and_powers_off(gpt_image, detached, machine_name):
    detached("-b", f"--image={gpt_image}", "--wait")
    wait_for(lambda: re.search(r"\S login: ", console_log(machine_name)), BOOT, what="the login prompt")
    assert _loops_of(gpt_image), "no loop device holds the image while it runs"
    assert not _host_mounts(), "the host kept its copy of the image's mounts"
    assert re.fullmatch(r"/dev/loop\d+p1 rw,\S+\n", _sh(machine_name, "findmnt -no SOURCE,OPTIONS /"))
    assert _sh(machine_name, "findmnt -no OPTIONS /srv").startswith("ro,")  # the partition's GPT read-only bit
    assert _sh(machine_name, "cat /srv/nsdash-image-marker") == "srv\n"
    assert "Read-only file system" in _sh(machine_name, "touch /srv/x 2>&1 || true")
    assert _sh(machine_name, "ls -A /home; findmnt -n /home || echo none") == "none\n"  # no-auto: not mounted
    assert _sh(machine_name, "systemctl is-system-running --wait || true") == "running\n"
    r = run_nsdash("list")
    assert machine_name in r.stdout and "debian" in r.stdout
    r = run_nsdash("poweroff", machine_name, timeout=60)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: not st.supervisor_alive(st.machine_dir(machine_name)), 60, what="the machine to stop")
    _no_loops_left(gpt_image)


def test_gpt_image_boots_in_the_terminal_and_powers_off(gpt_image, machine_name):
    term = Terminal("-b", "-i", str(gpt_image), "-M", machine_name)
    try:
        _login(term, 0)
        assert re.fullmatch(r"/dev/loop\d+p1", _ask(term, "findmnt -no SOURCE /"))
        assert _ask(term, "cat /srv/nsdash-image-marker") == "srv"
        since = term.console.mark()
        term.type("poweroff\r")
        assert term.wait(BOOT) == 0
        term.console.wait_ended(10)
        assert re.search(POWEROFF_LINE["systemd"], term.console.text()[since:])
    finally:
        term.close(machine_name)
    _no_loops_left(gpt_image)


def test_bare_ext4_image_boots(fs_image, detached, machine_name):
    detached("-b", "-i", str(fs_image), "--wait")
    out = _sh(machine_name, "findmnt -no SOURCE,FSTYPE /; . /etc/os-release; echo $ID")
    assert re.match(r"/dev/loop\d+ ext4\n", out) and out.endswith("debian\n"), out
    assert run_nsdash("poweroff", machine_name, timeout=60).returncode == 0
    wait_for(lambda: not st.supervisor_alive(st.machine_dir(machine_name)), 60, what="the machine to stop")
    _no_loops_left(fs_image)


def test_read_only_and_ephemeral_leave_the_image_unchanged(fs_image, machine_name):
    before = os.stat(fs_image)
    r = run_nsdash("spawn", "-q", "--register=no", "--read-only", "-i", str(fs_image), "-M", machine_name,
                   "/bin/sh", "-c", "touch /etc/x 2>&1; findmnt -no OPTIONS /")
    assert r.returncode == 0 and "Read-only file system" in r.stdout and "\nro," in r.stdout, r.stdout + r.stderr
    r = run_nsdash("spawn", "-q", "--register=no", "-x", "-i", str(fs_image), "-M", f"{machine_name}-x", "/bin/sh", "-c",
                   "echo changed > /etc/nsdash-ephemeral && cat /etc/nsdash-ephemeral")
    assert r.returncode == 0 and r.stdout.strip() == "changed", r.stderr
    r = run_nsdash("spawn", "-q", "--register=no", "--read-only", "-i", str(fs_image), "-M", machine_name,
                   "/bin/sh", "-c", "ls /etc/nsdash-ephemeral 2>&1 || true")
    assert "No such file" in r.stdout, r.stdout
    after = os.stat(fs_image)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert sorted(p.name for p in fs_image.parent.iterdir() if p.name.startswith(".#")) == []  # no copy left
    _no_loops_left(fs_image)


def test_an_image_in_use_is_refused_in_one_line(fs_image, detached, machine_name):
    detached("-i", str(fs_image), "/bin/sleep", "600")
    (loop,) = _loops_of(fs_image)
    for extra in ([], ["--read-only"]):
        r = run_nsdash("spawn", "-i", str(fs_image), *extra, "/bin/true")
        assert r.returncode != 0 and r.stderr.count("\n") == 1, r.stderr
        assert f"is in use: /dev/{loop} holds it read-write" in r.stderr, r.stderr
    assert _loops_of(fs_image) == [loop]
    teardown_machine(machine_name)
    _no_loops_left(fs_image)


def test_a_killed_supervisor_leaves_no_loop_device_after_the_clean_up(gpt_image, detached, machine_name):
    detached("-i", str(gpt_image), "/bin/sleep", "600")
    state = st.read_state(st.machine_dir(machine_name))
    assert state is not None and state.root == str(gpt_image)
    os.kill(state.supervisor, signal.SIGKILL)
    wait_for(lambda: not st.supervisor_alive(st.machine_dir(machine_name)), 10, what="the supervisor to die")
    assert _loops_of(gpt_image), "the machine still runs, so its mounts hold the device"
    teardown_machine(machine_name)  # the orphan clean-up kills the machine: its mount namespace goes
    _no_loops_left(gpt_image)
    assert not _host_mounts()


def _gpt(path: Path, parts: str, size_mib: int = 8) -> Path:
    subprocess.run(["truncate", "-s", f"{size_mib}M", str(path)], check=True)
    subprocess.run(["sfdisk", "-q", str(path)], input=f"label: gpt\n{parts}", text=True, check=True)
    return path


def _bad_images(d: Path) -> dict[str, tuple[Path, str]]:
    (d / "dir.raw").mkdir(exist_ok=True)
    zeros = d / "zeros.raw"
    subprocess.run(["truncate", "-s", "4M", str(zeros)], check=True)
    home_only = _gpt(d / "home-only.raw", "size=4MiB, type=933ac7e1-2eb4-4f13-b844-0e14e2aef915\n")
    no_fs = _gpt(d / "no-fs.raw", "size=4MiB, type=4f68bce3-e8cd-4db1-96e7-fbcaf984b709\n")
    os.mkfifo(d / "fifo.raw")
    return {
        "fifo": (d / "fifo.raw", "is neither a regular file nor a block device"),
        "missing": (d / "missing.raw", "does not exist"),
        "directory": (d / "dir.raw", "is a directory"),
        "zeros": (zeros, "has no GPT partition table and no file system nsdash knows"),
        "no root": (home_only, "has a GPT partition table but no root partition for x86_64"),
        "unknown file system": (no_fs, "partition 1 (root) holds no file system nsdash knows"),
    }


@pytest.mark.parametrize("kind", ["missing", "directory", "fifo", "zeros", "no root", "unknown file system"])
def test_bad_images_get_one_line_and_leave_nothing(kind, tmp_path, machine_name):
    image, words = _bad_images(tmp_path)[kind]
    r = run_nsdash("spawn", "-b", "-i", str(image), "-M", machine_name)
    assert r.returncode != 0 and r.stderr.startswith("nsdash: ") and r.stderr.count("\n") == 1, r.stderr
    assert words in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not _loops_of(image) and not _host_mounts() and not st.machine_dir(machine_name).exists()


@pytest.mark.parametrize("argv,words", [
    (["-D", "/tmp"], "--directory= and --image= may not be combined"),
    (["--template=/tmp"], "--template= may not be combined with --image="),
    (["--bind=+/etc:/x"], "paths relative to the image ('+') are not supported with --image"),
])
def test_options_nspawn_refuses_with_image_get_one_line(fs_image, argv, words):
    r = run_nsdash("spawn", "-i", str(fs_image), *argv, "/bin/true")
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and words in r.stderr, r.stderr
    assert not _loops_of(fs_image)


def test_list_images_and_start_know_raw_images(fs_image, tmp_path, machine_name, monkeypatch):
    images = tmp_path / "machines"
    images.mkdir()
    shutil.copy(fs_image, images / f"{machine_name}.raw")  # sparse enough for a test: it is removed after
    monkeypatch.setenv("NSDASH_IMAGE_PATH", str(images))
    r = run_nsdash("list-images")
    row = next(line for line in r.stdout.splitlines() if line.startswith(machine_name))
    assert row.split()[1] == "raw", r.stdout
    try:
        r = run_nsdash("start", machine_name, "--wait", timeout=BOOT + 30)
        assert r.returncode == 0, r.stderr
        assert _sh(machine_name, "findmnt -no FSTYPE /").strip() == "ext4"
        r = run_nsdash("image-status", machine_name)
        assert r.returncode == 0 and "raw" in r.stdout, r.stdout
        r = run_nsdash("remove", machine_name)  # the running machine's image
        assert r.returncode != 0 and r.stderr.count("\n") == 1 and (images / f"{machine_name}.raw").exists(), r.stderr
    finally:
        teardown_machine(machine_name)
    _no_loops_left(images / f"{machine_name}.raw")


def test_dry_run_mounts_the_image_read_only_for_the_plan_and_leaves_nothing(gpt_image, machine_name):
    r = run_nsdash("spawn", "--dry-run", "-b", "-i", str(gpt_image), "-M", machine_name)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^  root +/ +ext4 +partition 1$", r.stdout, re.M), r.stdout
    assert re.search(r"^  srv +/srv +ext4 +partition 2 \(ro\)$", r.stdout, re.M), r.stdout
    assert re.search(r"^command: +/usr/lib/systemd/systemd$", r.stdout, re.M), r.stdout  # read in the image
    assert not _loops_of(gpt_image) and not _host_mounts()


def test_an_immutable_image_boots_read_only_and_its_ephemeral_copy_writable(fs_image, machine_name):
    # `nsdash read-only` marks an image with the immutable flag; nspawn then implies --read-only
    subprocess.run(["chattr", "+i", str(fs_image)], check=True)
    try:
        r = run_nsdash("spawn", "-q", "--register=no", "-i", str(fs_image), "-M", machine_name,
                       "/bin/sh", "-c", "findmnt -no OPTIONS /")
        assert r.returncode == 0 and r.stdout.startswith("ro,"), r.stdout + r.stderr
        r = run_nsdash("spawn", "-q", "--register=no", "-x", "-i", str(fs_image), "-M", machine_name,
                       "/bin/sh", "-c", "touch /etc/x && findmnt -no OPTIONS /")
        assert r.returncode == 0 and r.stdout.startswith("rw,"), r.stdout + r.stderr
    finally:
        subprocess.run(["chattr", "-i", str(fs_image)], check=True)
    _no_loops_left(fs_image)


def test_link_journal_guest_is_refused_and_try_guest_links_nothing(fs_image, detached, machine_name):
    r = run_nsdash("spawn", "--link-journal=guest", "-i", str(fs_image), "-M", machine_name, "/bin/true")
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "host has no path into an --image" in r.stderr
    detached("--link-journal=try-guest", "-i", str(fs_image), "/bin/sleep", "600")
    into_images = [p for p in Path("/var/log/journal").glob("*")
                   if p.is_symlink() and str(paths.state_root() / HOLDER) in os.readlink(p)]
    assert into_images == []  # a link into the image's mounts would dangle as soon as the machine runs
    teardown_machine(machine_name)
    _no_loops_left(fs_image)


def test_an_mbr_image_with_a_bootable_linux_partition_runs(busybox_cache, tmp_path, machine_name):
    image = tmp_path / "mbr.raw"
    subprocess.run(["truncate", "-s", "24M", str(image)], check=True)
    subprocess.run(["sfdisk", "-q", str(image)], input="label: dos\nsize=4MiB, type=82\nsize=16MiB, type=83, bootable\n",
                   text=True, check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "offset=5242880", "-d", str(busybox_cache), str(image), "16M"],
                   check=True)
    r = run_nsdash("spawn", "-q", "--register=no", "-i", str(image), "-M", machine_name, "/bin/sh", "-c",
                   "grep ' / / ' /proc/self/mountinfo | sed 's/.* - //'; cat /etc/hostname")
    assert r.returncode == 0 and re.fullmatch(r"ext4 /dev/loop\d+p2 rw\S*\nbusybox\n", r.stdout), r.stdout + r.stderr
    _no_loops_left(image)


def test_an_image_that_is_no_os_tree_is_refused_after_mounting_and_leaves_nothing(tmp_path, machine_name):
    empty = tmp_path / "empty"
    empty.mkdir()
    image = tmp_path / "empty.raw"
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(empty), str(image), "8M"], check=True)
    r = run_nsdash("spawn", "-b", "-i", str(image), "-M", machine_name)
    assert r.returncode != 0 and r.stderr.count("\n") == 1, r.stderr
    assert f"{image} does not look like an OS tree" in r.stderr, r.stderr
    _no_loops_left(image)
    assert not _host_mounts() and not st.machine_dir(machine_name).exists()


def test_the_machine_is_named_after_the_image_file(gpt_image):
    r = run_nsdash("spawn", "--dry-run", "-i", str(gpt_image), "/bin/true")
    assert r.returncode == 0 and re.search(r"^machine: +debian$", r.stdout, re.M), r.stdout + r.stderr
