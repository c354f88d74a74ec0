"""Attack the child's sandbox helpers: symlink and race escapes of bind targets,
unmasked /proc files, leaked fds, a cwd outside the root, the caller's keyring.

Each attack runs in a forked child with its own mount namespace, so every
mount dies with it.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import threading
import time

import pytest
from _forked import ChildError, in_child

from nsdash.launcher import sandbox
from nsdash.system import syscalls

LIBC = ctypes.CDLL(None, use_errno=True)


def _private_mount_ns() -> None:
    syscalls.unshare(syscalls.CLONE_NEWNS)
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    for d in ("etc", "proc", "sys", "dev", "srv"):
        (root / d).mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "abs").symlink_to("/etc")  # absolute: means the tree's /etc
    (root / "up").symlink_to("../../../../../../..")  # climbs: must stop at the tree's /
    (root / "out").symlink_to(str(tmp_path / "outside"))
    return root


@pytest.fixture
def source(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "marker").write_text("bound")
    return src


@pytest.mark.parametrize("target,lands", [
    ("/abs/x", "etc/x"),
    ("/up/x", "x"),
    ("/up/up/etc/y", "etc/y"),
    ("/out/z", "out-dir/z"),
])
def test_symlinked_bind_target_lands_inside_the_root(tree, source, target, lands):
    outside = tree.parent / "outside"

    def attack():
        _private_mount_ns()
        sandbox.bind_in_root(str(tree), str(source), target)
        found_in = [str(p.relative_to(tree)) for p in tree.rglob("marker")]
        escaped = [str(p) for p in outside.rglob("marker")] + [str(p) for p in tree.parent.glob("*/marker")
                                                                if tree not in p.parents and p.parent != source]
        return {"found": found_in, "escaped": escaped}

    out = in_child(attack)
    assert out["escaped"] == []
    expected = lands.replace("out-dir", str(outside).lstrip("/"))
    assert out["found"] == [f"{expected}/marker"]
    assert not (outside / "z").exists()  # nothing created outside either


def test_dotdot_in_a_target_is_refused(tree, source):
    with pytest.raises(ChildError, match=r"'\.\.'"):
        in_child(lambda: sandbox.bind_in_root(str(tree), str(source), "/etc/../../x"))


def test_symlink_swapped_during_setup_never_lets_a_bind_escape(tree, source):
    """A thread flips /srv/t between a directory and a symlink to the host while we bind."""
    outside = tree.parent / "outside"
    link = tree / "srv" / "flip"
    stop = threading.Event()

    def attack():
        _private_mount_ns()
        escapes = 0

        def flipper():
            while not stop.is_set():
                try:
                    os.symlink(str(outside), str(link) + ".new")
                    os.replace(str(link) + ".new", link)
                    os.unlink(link)
                    os.mkdir(link)
                    os.rmdir(link)
                except OSError:
                    pass

        t = threading.Thread(target=flipper)
        t.start()
        landed = 0
        try:
            for _ in range(400):
                try:
                    sandbox.bind_in_root(str(tree), str(source), "/srv/flip/t")
                except (OSError, sandbox.SandboxError):
                    continue
                landed += 1
                if (outside / "t" / "marker").exists():
                    escapes += 1
                # undo whatever got mounted, wherever it is
                with open("/proc/self/mountinfo") as f:
                    lines = f.read().splitlines()
                for line in lines[::-1]:
                    mp = line.split()[4]
                    if mp.startswith(str(tree.parent)):
                        syscalls.umount2(mp, syscalls.MNT_DETACH)
        finally:
            stop.set()
            t.join()
        return {"escapes": escapes, "landed": landed,
                "outside": sorted(p.name for p in outside.iterdir())}

    out = in_child(attack, timeout=60)
    assert out["escapes"] == 0
    assert out["landed"] > 0
    # a directory "t" may appear in outside only if a mkdir escaped: it must not
    assert "t" not in out["outside"]


def test_a_target_that_exists_swapped_for_a_symlink_never_lets_a_bind_escape(tree):
    """The flip where the target exists whole on the directory side, so that open_in_root's
    one-call openat2 (its first try since session 9) is what races: /srv/flip is by turns a
    directory holding t and a symlink to a host directory that holds t too, flipped by a
    process on another core.  Every fd opened is inside the tree (review21)."""
    outside = tree.parent / "outside"
    (outside / "t").mkdir()
    srv = tree / "srv"
    (srv / "flip.dir" / "t").mkdir(parents=True)
    (srv / "flip.lnk").symlink_to(outside)

    def attack():
        flipper = os.fork()
        if flipper == 0:
            while True:  # (killed below)
                for side in ("flip.dir", "flip.lnk"):
                    try:
                        os.rename(srv / side, srv / "flip")
                        os.rename(srv / "flip", srv / side)
                    except OSError:
                        pass
        landed = refused = escapes = 0
        deadline = time.monotonic() + 10
        try:
            while (landed < 300 or refused < 300) and time.monotonic() < deadline:
                fd = sandbox.open_root(str(tree))
                try:
                    tfd = sandbox.open_in_root(fd, "/srv/flip/t", create=False)
                except (OSError, sandbox.SandboxError):
                    refused += 1
                    continue
                finally:
                    os.close(fd)
                landed += 1
                if not os.readlink(sandbox.fd_path(tfd)).startswith(f"{tree}/"):
                    escapes += 1
                os.close(tfd)
        finally:
            os.kill(flipper, 9)
            os.waitpid(flipper, 0)
        return {"escapes": escapes, "landed": landed, "refused": refused}

    out = in_child(attack, timeout=60)
    assert out["escapes"] == 0, out
    assert out["landed"] >= 300 and out["refused"] >= 300, out  # both sides were met: the race was run


def test_symlinked_proc_sys_dev_are_refused(tmp_path):
    for name in ("proc", "sys", "dev"):
        root = tmp_path / name
        root.mkdir()
        for d in sandbox.API_DIRS:
            if d != name:
                (root / d).mkdir()
        (root / name).symlink_to(f"/{name}")
        with pytest.raises(sandbox.SandboxError, match=f"{name} is a symlink"):
            sandbox.refuse_symlinked_api_dirs(str(root))


def test_unmasked_proc_files_fail_closed_then_pass_once_masked(tmp_path):
    proc = tmp_path / "proc"
    proc.mkdir()
    masked = ("/proc/kcore", "/proc/kallsyms", "/proc/keys", "/proc/timer_list", "/proc/sysrq-trigger",
              "/proc/acpi")
    readonly = ("/proc/sys", "/proc/sysrq-trigger")

    def attack():
        _private_mount_ns()
        syscalls.mount("proc", str(proc), "proc", syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)
        errors = []
        for check in (lambda: sandbox.verify_masks(str(tmp_path), masked),
                      lambda: sandbox.verify_read_only(str(tmp_path), readonly)):
            try:
                check()
                errors.append(None)
            except sandbox.SandboxError as e:
                errors.append(e.message)
        null = sandbox.open_mask_source("/dev/null")
        for p in masked:
            full = str(tmp_path) + p
            if os.path.isdir(full):
                syscalls.mount("tmpfs", full, "tmpfs", syscalls.MS_RDONLY, "mode=0555,size=0")
            elif os.path.exists(full):
                syscalls.mount(sandbox.fd_path(null), full, None, syscalls.MS_BIND)
        for p in readonly:
            full = str(tmp_path) + p
            if not os.path.exists(full):
                continue  # e.g. no /proc/sysrq-trigger without CONFIG_MAGIC_SYSRQ
            syscalls.mount(full, full, None, syscalls.MS_BIND | syscalls.MS_REC)
            syscalls.mount(None, full, None, syscalls.MS_BIND | syscalls.MS_REMOUNT | syscalls.MS_RDONLY)
        sandbox.verify_masks(str(tmp_path), masked)
        sandbox.verify_read_only(str(tmp_path), readonly)
        return errors

    before = in_child(attack)
    assert before[0] and "kallsyms" in before[0] and "/proc/keys" in before[0]
    assert before[1] and "/proc/sys" in before[1]


def test_mask_source_must_be_the_null_device_or_an_empty_read_only_file(tmp_path):
    full = tmp_path / "full"
    full.write_text("secret")
    link = tmp_path / "link"
    link.symlink_to("/dev/null")
    empty_rw = tmp_path / "empty"
    empty_rw.write_text("")
    empty_ro = tmp_path / "empty-ro"
    empty_ro.write_text("")
    empty_ro.chmod(0o444)
    for bad in (full, link, empty_rw, "/dev/zero"):
        with pytest.raises(sandbox.SandboxError):
            sandbox.open_mask_source(str(bad))
    for good in ("/dev/null", str(empty_ro)):
        os.close(sandbox.open_mask_source(good))


def test_only_fds_0_to_2_survive_exec():
    def attack():
        keep = os.open("/dev/null", os.O_RDONLY)
        os.set_inheritable(keep, True)
        os.dup2(keep, 42, inheritable=True)
        leaked_before = sandbox.fds_surviving_exec()
        sandbox.cloexec_all_but_console()
        sandbox.verify_fds_before_exec()
        rc = subprocess.run(["sh", "-c", "test -e /proc/self/fd/42"], close_fds=False).returncode
        return {"before": leaked_before, "rc": rc}

    out = in_child(attack)
    assert 42 in out["before"]
    assert out["rc"] == 1  # fd 42 did not survive exec


def test_leaked_fd_is_refused():
    def attack():
        fd = os.open("/dev/null", os.O_RDONLY)
        os.set_inheritable(fd, True)
        sandbox.verify_fds_before_exec()

    with pytest.raises(ChildError, match="would leak"):
        in_child(attack)


def test_cwd_left_outside_a_chroot_is_caught(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "elsewhere").mkdir()

    def attack():
        os.chdir(tmp_path / "elsewhere")
        os.chroot(root)  # the classic escape: cwd stays outside the new root
        try:
            sandbox.verify_cwd_inside_root()
            caught = False
        except sandbox.SandboxError:
            caught = True
        os.chdir("/")
        sandbox.verify_cwd_inside_root()
        return caught

    assert in_child(attack) is True


def test_fresh_session_keyring_is_not_the_callers():
    KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING = 0, -3

    def session_id():
        return LIBC.syscall(ctypes.c_long(syscalls.SYS_keyctl), ctypes.c_long(KEYCTL_GET_KEYRING_ID),
                            ctypes.c_long(KEY_SPEC_SESSION_KEYRING), ctypes.c_long(1))

    def attack():
        before = session_id()
        sandbox.join_session_keyring()
        return [before, session_id()]

    before, after = in_child(attack)
    assert before > 0 and after > 0 and before != after
