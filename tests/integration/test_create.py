"""`nsdash create`: a Debian tree made by debootstrap that boots to a login prompt,
and the failures that must leave nothing behind."""

from __future__ import annotations

import os

from conftest import console_log, run_nsdash, wait_for


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
    wait_for(lambda: f"{machine_name} login:" in console_log(machine_name), timeout=90, what="the login prompt")
    assert "Debian GNU/Linux 12" in console_log(machine_name)
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


def test_other_distributions_name_what_they_lack_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("NSDASH_IMAGE_PATH", str(tmp_path / "machines"))
    for distribution in ("fedora", "arch", "opensuse"):
        r = run_nsdash("create", f"--distribution={distribution}", "--mirror=http://127.0.0.1:9/x", "x")
        assert r.returncode != 0 and "Traceback" not in r.stderr
        assert r.stderr.startswith(f"nsdash: cannot create a tree of {distribution} here (through mkosi): missing ")
        assert "a reachable mirror (http://127.0.0.1:9/x" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "machines").exists() or os.listdir(tmp_path / "machines") == []


FAKE_MKOSI = """#!/bin/sh
# Stands in for mkosi (no Fedora mirror is reachable here): a tree at --output, mkosi-style steps.
for a; do case "$a" in --output=*) out="${a#--output=}";; esac; done
echo "‣ Installing Fedora Linux"
echo "$@" > "$NSDASH_TEST_MKOSI_ARGV"
[ -e mkosi.default ] && exit 3   # nsdash runs it in an empty directory
cp -a "$NSDASH_TEST_TREE" "$out" || exit 1
echo "root:x:0:0:root:/root:/bin/sh" > "$out/etc/passwd"
echo "root:*:19000:0:99999:7:::" > "$out/etc/shadow"
echo "‣ Image built"
"""


def test_a_mkosi_create_runs_mkosi_then_finishes_and_publishes_the_tree(tmp_path, busybox_cache, machine_name):
    """The plumbing around mkosi (a fake one on PATH, a local mirror): its steps shown, the tree
    built under a hidden name, finished (machine ID, hostname, root's login) and renamed."""
    import functools
    import http.server
    import threading

    bin_dir, home = tmp_path / "bin", tmp_path / "machines"
    bin_dir.mkdir()
    for tool, text in (("mkosi", FAKE_MKOSI), ("dnf", "#!/bin/sh\nexit 0\n")):
        (bin_dir / tool).write_text(text)
        (bin_dir / tool).chmod(0o755)
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "NSDASH_IMAGE_PATH": str(home),
           "NSDASH_TEST_TREE": str(busybox_cache), "NSDASH_TEST_MKOSI_ARGV": str(tmp_path / "argv")}
    try:
        r = run_nsdash("create", "--distribution=fedora", f"--mirror=http://127.0.0.1:{server.server_port}",
                       "--packages=less", machine_name, env=env)
    finally:
        server.shutdown()
        server.server_close()
    assert r.returncode == 0, r.stderr
    assert "‣ Installing Fedora Linux" in r.stderr and "I: Setting up the machine ID" in r.stderr
    argv = (tmp_path / "argv").read_text().split()
    assert "--distribution=fedora" in argv and "--package=systemd,dbus,passwd,procps-ng,iproute,less" in argv
    assert next(a for a in argv if a.startswith("--output=")).startswith(f"--output={home}/.#{machine_name}")
    assert os.listdir(home) == [machine_name]
    tree = home / machine_name
    assert (tree / "etc/hostname").read_text() == f"{machine_name}\n"
    assert len((tree / "etc/machine-id").read_text().strip()) == 32
    assert (tree / "etc/shadow").read_text().startswith("root::")


def test_ubuntu_without_its_keyring_gets_one_line_that_names_it(tmp_path, monkeypatch):
    """Ubuntu's archive is reachable here, but Debian 12 ships no Ubuntu keyring, and nsdash
    never makes a tree from packages nobody checked (no --no-check-gpg)."""
    import pytest

    from nsdash.machines.create import DISTRIBUTIONS

    keyring = DISTRIBUTIONS["ubuntu"][2]
    if os.path.exists(keyring):
        pytest.skip(f"this host has {keyring}: an Ubuntu create would run")
    monkeypatch.setenv("NSDASH_IMAGE_PATH", str(tmp_path / "machines"))
    r = run_nsdash("create", "--distribution=ubuntu", "--mirror=http://127.0.0.1:9/ubuntu", "x")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"its signing keyring {keyring} is not installed" in r.stderr
    assert "install Ubuntu's ubuntu-keyring package (Debian 12's archive has none" in r.stderr
    assert not (tmp_path / "machines").exists() or os.listdir(tmp_path / "machines") == []
