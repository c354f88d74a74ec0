"""systemd-nspawn options end to end: the real command line, the real BusyBox tree, as root."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path

import pytest
from conftest import run_nsdash

HOST_JOURNAL = Path("/var/log/journal")


def spawn(tree: Path, *args: str) -> tuple[int, str, str]:
    r = run_nsdash("spawn", "-q", "-P", "-D", str(tree), *args)
    return r.returncode, r.stdout, r.stderr


@pytest.fixture
def machine_id(busybox_tree) -> str:
    mid = uuid.uuid4().hex
    (busybox_tree / "etc/machine-id").write_text(mid + "\n")
    return mid


@pytest.fixture
def host_journal():
    """/var/log/journal on the host (persistent journaling), made for the test if missing."""
    made = not HOST_JOURNAL.exists()
    HOST_JOURNAL.mkdir(parents=True, exist_ok=True)
    yield HOST_JOURNAL
    if made:
        with contextlib.suppress(OSError):
            HOST_JOURNAL.rmdir()


def test_uuid_reaches_the_payload(busybox_tree):
    u = "0123456789abcdef0123456789abcdef"
    code, out, err = spawn(busybox_tree, f"--uuid={u}", "/bin/sh", "-c", "echo $container_uuid")
    assert code == 0, err
    assert out.strip() == str(uuid.UUID(u))


def test_link_journal_guest_symlinks_the_host_to_the_tree(busybox_tree, machine_id, host_journal):
    link = host_journal / machine_id
    try:
        code, out, err = spawn(busybox_tree, "--link-journal=guest", "/bin/sh", "-c",
                               f"test -d /var/log/journal/{machine_id} && echo there")
        assert code == 0, err
        assert out.strip() == "there"
        assert link.is_symlink() and Path(os.readlink(link)) == busybox_tree / f"var/log/journal/{machine_id}"
    finally:
        with contextlib.suppress(FileNotFoundError):
            link.unlink()


def test_link_journal_host_binds_the_hosts_directory(busybox_tree, machine_id, host_journal):
    host_dir = host_journal / machine_id
    try:
        code, out, err = spawn(busybox_tree, "--link-journal=host", "/bin/sh", "-c",
                               f"echo entry > /var/log/journal/{machine_id}/probe")
        assert code == 0, err
        assert (host_dir / "probe").read_text() == "entry\n"
        assert not (busybox_tree / f"var/log/journal/{machine_id}/probe").exists()
    finally:
        shutil.rmtree(host_dir, ignore_errors=True)


def test_try_guest_is_quiet_when_ephemeral(busybox_tree, machine_id, host_journal):
    code, out, err = spawn(busybox_tree, "-x", "-j", "/bin/true")
    assert code == 0, err
    assert not (host_journal / machine_id).exists()


def test_link_journal_guest_without_machine_id_is_one_line(busybox_tree, host_journal):
    (busybox_tree / "etc/machine-id").unlink(missing_ok=True)
    code, out, err = spawn(busybox_tree, "--link-journal=guest", "/bin/true")
    assert code != 0
    assert err.count("\n") == 1 and "needs a machine ID" in err


def test_resolv_conf_modes(busybox_tree):
    (busybox_tree / "etc/resolv.conf").write_text("nameserver 198.51.100.1\n")
    code, out, _ = spawn(busybox_tree, "--resolv-conf=off", "/bin/cat", "/etc/resolv.conf")
    assert out == "nameserver 198.51.100.1\n"
    code, out, _ = spawn(busybox_tree, "--resolv-conf=bind-host", "/bin/sh", "-c",
                         "cat /etc/resolv.conf; echo x >> /etc/resolv.conf 2>/dev/null || echo RO")
    assert out == Path("/etc/resolv.conf").read_text() + "RO\n"
    assert (busybox_tree / "etc/resolv.conf").read_text() == "nameserver 198.51.100.1\n"
    code, out, _ = spawn(busybox_tree, "--resolv-conf=replace-host", "/bin/cat", "/etc/resolv.conf")
    assert out == Path("/etc/resolv.conf").read_text()
    assert (busybox_tree / "etc/resolv.conf").read_text() == Path("/etc/resolv.conf").read_text()
    code, out, _ = spawn(busybox_tree, "--resolv-conf=delete", "/bin/sh", "-c", "ls /etc/resolv.conf || true")
    assert not (busybox_tree / "etc/resolv.conf").exists()


def test_timezone_modes(busybox_tree):
    host = Path("/etc/localtime").read_bytes()
    code, out, err = spawn(busybox_tree, "--timezone=copy", "/bin/sh", "-c", "cat /etc/localtime | wc -c")
    assert code == 0, err
    assert int(out) == len(host)
    code, out, err = spawn(busybox_tree, "--timezone=bind", "/bin/sh", "-c",
                           "grep ' /etc/localtime ' /proc/self/mountinfo | cut -d' ' -f6")
    assert out.startswith("ro"), out
    (busybox_tree / "etc/localtime").unlink()
    code, out, err = spawn(busybox_tree, "--timezone=off", "/bin/sh", "-c", "ls /etc/localtime 2>&1 || true")
    assert not (busybox_tree / "etc/localtime").exists()


def test_setenv_user_chdir_and_hostname_through_the_cli(busybox_tree, machine_name):
    code, out, err = spawn(busybox_tree, "-E", "GREETING=hi there", "--chdir=/etc", "--hostname=other-name",
                           "/bin/sh", "-c", "echo \"$GREETING\"; pwd; hostname")
    assert code == 0, err
    assert out.split("\n")[:3] == ["hi there", "/etc", "other-name"]


def test_kill_signal_option_and_capabilities_through_the_cli(busybox_tree):
    code, out, err = spawn(busybox_tree, "--drop-capability=CAP_NET_RAW", "--capability=CAP_SYS_TIME",
                           "/bin/sh", "-c", "grep CapBnd /proc/self/status")
    assert code == 0, err
    bnd = int(out.split()[1], 16)
    assert not bnd & (1 << 13) and bnd & (1 << 25)


def test_dry_run_names_every_part_of_the_plan(busybox_tree, tmp_path):
    (tmp_path / "src").mkdir()
    r = run_nsdash("spawn", "--dry-run", "-D", str(busybox_tree), "--bind", f"{tmp_path}/src:/mnt",
                   "--tmpfs=/scratch", "--private-network", "-b")
    assert r.returncode == 0, r.stderr
    for needle in ("namespaces:   mnt uts ipc cgroup pid net", "network:      private",
                   f"rbind {tmp_path}/src -> /mnt", "mount tmpfs /scratch", "kill signal:  SIGRTMIN+3"):
        assert needle in r.stdout, needle
