"""`nsdash create`: a Debian tree made by debootstrap that boots to a login prompt,
and the failures that must leave nothing behind."""

from __future__ import annotations

import os

from conftest import run_nsdash, wait_for

from nsdash.machines import state as st


def _console(name: str) -> str:
    try:
        return (st.machine_dir(name) / st.CONSOLE_LOG).read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _mounts_under(path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [x.split()[4] for x in f if x.split()[4].startswith(str(path))]


def test_create_debian_then_boot_it_to_login(tmp_path, monkeypatch, detached, machine_name):
    home = tmp_path / "machines"
    monkeypatch.setenv("NSDASH_IMAGE_PATH", str(home))
    r = run_nsdash("create", "--packages=less", machine_name, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "I: Retrieving" in r.stderr and "I: Base system installed successfully." in r.stderr
    tree = home / machine_name
    assert os.listdir(home) == [machine_name]  # the temporary name is gone
    assert (tree / "etc/machine-id").read_text().strip() != ""
    assert (tree / "etc/hostname").read_text().strip() == machine_name
    assert (tree / "etc/shadow").read_text().startswith("root::")  # a login without password
    assert (tree / "usr/bin/less").exists() and (tree / "usr/bin/dbus-daemon").exists()
    assert not (tree / "etc/dpkg/dpkg.cfg.d/nsdash-unsafe-io").exists()
    assert _mounts_under(tree) == []
    listed = run_nsdash("list-images").stdout
    assert machine_name in listed

    detached("-bD", str(tree))
    wait_for(lambda: f"{machine_name} login:" in _console(machine_name), timeout=90, what="the login prompt")
    assert "Debian GNU/Linux 12" in _console(machine_name)
    assert run_nsdash("poweroff", machine_name).returncode == 0


def test_a_failed_create_leaves_nothing(tmp_path, monkeypatch, machine_name):
    home = tmp_path / "machines"
    monkeypatch.setenv("NSDASH_IMAGE_PATH", str(home))
    r = run_nsdash("create", "--packages=nsdash-no-such-package", machine_name, timeout=600)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1].startswith("nsdash: debootstrap failed: E: Couldn't find")
    assert "Traceback" not in r.stderr
    assert os.listdir(home) == []
    assert _mounts_under(home) == []


def test_bad_targets_and_unreachable_mirrors_get_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("NSDASH_IMAGE_PATH", str(tmp_path / "machines"))
    for args, words in ((["bad_name"], "invalid"), ([str(tmp_path)], "exists already"),
                        (["--release=nosuch", "x"], "does not know"),
                        (["--mirror=http://127.0.0.1:9/debian", "x"], "cannot be reached"),
                        (["--distribution=ubuntu", "--mirror=http://127.0.0.1:9/ubuntu", "x"], "cannot be reached")):
        r = run_nsdash("create", *args)
        assert r.returncode != 0 and words in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "machines").exists() or os.listdir(tmp_path / "machines") == []


def test_root_password_is_set_by_the_trees_own_chpasswd(debian_cache, tmp_path):
    import subprocess

    import pytest

    from nsdash.errors import UsageError
    from nsdash.machines.create import set_root_password

    tree = tmp_path / "tree"
    subprocess.run(["cp", "-a", "--reflink=auto", str(debian_cache), str(tree)], check=True)
    assert (tree / "etc/shadow").read_text().startswith("root::")
    set_root_password(tree, "s3cret pass")
    field = (tree / "etc/shadow").read_text().splitlines()[0].split(":")[1]
    assert field.startswith("$") and "s3cret" not in field  # hashed, not stored
    with pytest.raises(UsageError):
        set_root_password(tree, "a:b")
