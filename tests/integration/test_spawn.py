"""`nsdash spawn` and the Container API against the real BusyBox tree, as root."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from _spawnhelp import run_spec
from conftest import REPO, catches, run_nsdash, wait_for

from nsdash.errors import MachineExists, NsdashError, SpecError
from nsdash.launcher import names
from nsdash.launcher.container import Container, veth_name
from nsdash.launcher.plan import CAPABILITIES, DEFAULT_CAPABILITIES
from nsdash.launcher.spec import Bind, ContainerSpec, TmpfsMount
from nsdash.system import cgroupfs, paths


def spec_for(tree: Path, name: str, *command: str, **kw) -> ContainerSpec:
    return ContainerSpec(directory=tree, machine=name, command=command, **kw)


def sh(tree: Path, name: str, script: str, **kw) -> tuple[int, str]:
    outcome, text = run_spec(spec_for(tree, name, "/bin/sh", "-c", script, **kw))
    assert outcome.kind == "exited", (outcome, text)
    return outcome.status, text


# ---------------------------------------------------------------- the CLI, pipe console

def test_cli_pid1_exit_code_and_clean_stdout(busybox_tree):
    r = run_nsdash("spawn", "-q", "-P", "-D", str(busybox_tree), "/bin/sh", "-c", "echo $$; exit 7")
    assert r.returncode == 7, r.stderr
    assert r.stdout == "1\n"
    assert r.stderr == ""


def test_cli_hostname_env_and_no_host_pids(busybox_tree, machine_name):
    script = "hostname; echo container=$container; ls -d /proc/[0-9]*"
    r = run_nsdash("spawn", "-q", "-P", "-D", str(busybox_tree), "/bin/sh", "-c", script)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    assert lines[0] == machine_name
    assert lines[1] == "container=systemd-nspawn"
    pids = [int(p.rsplit("/", 1)[1]) for p in lines[2:]]
    assert 1 in pids and max(pids) < 10  # only the container's own processes are visible


def test_cli_reports_success_and_failure_lines(busybox_tree, machine_name):
    r = run_nsdash("spawn", "-P", "-D", str(busybox_tree), "/bin/true")
    assert r.returncode == 0
    assert f"Container {machine_name} exited successfully." in r.stderr
    r = run_nsdash("spawn", "-P", "-D", str(busybox_tree), "/bin/false")
    assert r.returncode == 1
    assert f"Container {machine_name} failed with error code 1." in r.stderr


def test_cli_dry_run_prints_the_plan_and_starts_nothing(busybox_tree, machine_name):
    r = run_nsdash("spawn", "--dry-run", "-D", str(busybox_tree), "/bin/true")
    assert r.returncode == 0, r.stderr
    assert f"machine:      {machine_name}" in r.stdout and "mount proc /proc" in r.stdout


def test_cli_spawn_imports_only_what_it_runs(busybox_tree):
    """A plain spawn, as users run it (bin/nsdash, Python with -S), imports none of
    test_startup_imports.SPAWN_NEVER, at start or while it runs.  The second run is the one
    checked: the first compiles the seccomp filter (libseccomp's binding) for the cache."""
    sys.path.insert(0, str(REPO / "tests" / "unit"))
    try:
        from test_startup_imports import spawn_never
    finally:
        sys.path.pop(0)
    argv = [sys.executable, "-S", "-X", "importtime", str(REPO / "bin" / "nsdash"), "spawn", "-q",
            "-D", str(busybox_tree), "/bin/true"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for _ in range(2):
        r = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
        assert r.returncode == 0, r.stderr[-2000:]
    names = {line.split("|")[2].strip() for line in r.stderr.splitlines()
             if line.startswith("import time:") and "imported package" not in line}
    assert "nsdash.launcher.container" in names, r.stderr[-2000:]
    assert spawn_never(names) == set()


# ---------------------------------------------------------------- bad input: one line, nothing left

@pytest.mark.parametrize("case", ["missing", "file", "nousr", "nocommand"])
def test_cli_bad_tree_or_command(busybox_tree, tmp_path, case):
    directory = busybox_tree
    command = ["/bin/true"]
    if case == "missing":
        directory = tmp_path / "no-such-tree"
    elif case == "file":
        directory = tmp_path / "plainfile"
        directory.write_text("x")
    elif case == "nousr":
        directory = tmp_path / "emptytree"
        directory.mkdir()
    else:
        command = ["/usr/bin/no-such-program"]
    before = sorted(p.name for p in busybox_tree.iterdir())
    r = run_nsdash("spawn", "-P", "-D", str(directory), *command)
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nsdash: ") and "Traceback" not in r.stderr
    expected = {"missing": "does not exist", "file": "is not a directory", "nousr": "has no /usr",
                "nocommand": "not found"}[case]
    assert expected in err[0]
    assert sorted(p.name for p in busybox_tree.iterdir()) == before


def test_name_already_running_is_refused(busybox_tree, machine_name):
    with Container(spec_for(busybox_tree, machine_name, "/bin/sleep", "30")) as running:
        running.start()
        r = run_nsdash("spawn", "-P", "-D", str(busybox_tree), "/bin/true")
        assert r.returncode != 0
        assert r.stderr.strip() == (f"nsdash: machine '{machine_name}' is already running; pick another name "
                                    f"with -M, or stop it with 'nsdash poweroff {machine_name}'")
        with pytest.raises(MachineExists), Container(spec_for(busybox_tree, machine_name, "/bin/true")) as c:
            c.start()
        assert running.poll() is None  # the refused second start did not touch the first


def test_bind_source_missing_and_target_escaping(busybox_tree, machine_name, tmp_path):
    with pytest.raises(SpecError, match="bind source"), \
            Container(spec_for(busybox_tree, machine_name, "/bin/true",
                               binds=(Bind(tmp_path / "missing", "/mnt"),))) as c:
        c.start()
    (busybox_tree / "sneaky").symlink_to("../../../../../../../../tmp")
    src = tmp_path / "src"
    src.mkdir()
    with pytest.raises(SpecError, match="escapes the container root"), \
            Container(spec_for(busybox_tree, machine_name, "/bin/true",
                               binds=(Bind(src, "/sneaky/x"),))) as c:
        c.start()


def test_failure_inside_the_child_is_one_clean_error(busybox_tree, machine_name):
    # --chdir to a directory the tree lacks fails after fork; the parent reports it and cleans up
    with pytest.raises(NsdashError, match="cannot change to directory /nonexistent"), \
            Container(spec_for(busybox_tree, machine_name, "/bin/true", chdir="/nonexistent")) as c:
        c.start()


# ---------------------------------------------------------------- the sandbox as nspawn sets it up

def test_proc_sys_read_only_and_masks(busybox_tree, machine_name):
    status, text = sh(busybox_tree, machine_name,
                      "echo x > /proc/sys/kernel/hostname && echo WROTE; "
                      "grep -E ' /proc/sys | /sys ' /proc/self/mountinfo; "
                      "echo kallsyms=$(cat /proc/kallsyms 2>/dev/null | wc -c)")
    assert "WROTE" not in text and "Read-only file system" in text
    assert re.search(r" /proc/sys ro,", text) and re.search(r" /sys ro,", text)
    assert "kallsyms=0" in text  # masked: reads nothing (the host's is not empty)


def test_dev_is_minimal_and_console_is_the_pty(busybox_tree, machine_name):
    status, text = sh(busybox_tree, machine_name, "ls /dev; readlink /dev/ptmx; tty; "
                      "echo hi > /dev/null && echo null-ok")
    names = set(text.split())
    assert {"null", "zero", "full", "random", "urandom", "tty", "console", "ptmx", "pts", "shm"} <= names
    assert "sda" not in names and "kmsg" not in names and "mem" not in names
    assert "pts/ptmx" in text and "null-ok" in text


def test_no_device_creation(busybox_tree, machine_name):
    # the v1 devices controller (hybrid hosts) refuses to open a disk node made with mknod
    status, text = sh(busybox_tree, machine_name, "mknod /tmp/sda b 8 0 && head -c1 /tmp/sda >/dev/null "
                      "&& echo READ-DISK; echo done")
    assert "READ-DISK" not in text and "done" in text


def test_capability_bounding_set(busybox_tree, machine_name):
    status, text = sh(busybox_tree, machine_name, "grep -E '^Cap(Bnd|Eff)' /proc/self/status")
    bnd = int(re.search(r"CapBnd:\s+([0-9a-f]+)", text).group(1), 16)
    have = {name for name, bit in CAPABILITIES.items() if bnd & (1 << bit)}
    assert have <= DEFAULT_CAPABILITIES
    assert "CAP_SYS_MODULE" not in have and "CAP_SYS_TIME" not in have and "CAP_SYS_ADMIN" in have
    status, text = sh(busybox_tree, machine_name, "grep CapBnd /proc/self/status",
                      drop_capabilities=frozenset({"CAP_SYS_ADMIN"}), capabilities=frozenset({"CAP_SYS_TIME"}))
    bnd = int(re.search(r"CapBnd:\s+([0-9a-f]+)", text).group(1), 16)
    assert not bnd & (1 << CAPABILITIES["CAP_SYS_ADMIN"]) and bnd & (1 << CAPABILITIES["CAP_SYS_TIME"])


def test_container_interface_files_and_resolv_conf(busybox_tree, machine_name):
    status, text = sh(busybox_tree, machine_name,
                      "cat /run/systemd/container; echo ---; cat /run/host/os-release; echo ---; "
                      "cat /etc/resolv.conf; echo ---; echo $container_uuid $NOTIFY_SOCKET; ls -l /run/host/notify")
    parts = text.split("---\n")
    assert parts[0].strip() == "systemd-nspawn"
    assert parts[1] == Path("/etc/os-release").read_text()
    assert parts[2] == Path("/etc/resolv.conf").read_text()
    assert re.match(r"[0-9a-f-]{36} /run/host/notify\n", parts[3])
    assert parts[3].split("\n")[1].startswith("s")  # a socket


def test_cgroup_namespace_mount_and_accounting(busybox_tree, machine_name):
    with Container(spec_for(busybox_tree, machine_name, "/bin/sh", "-c",
                            "cat /proc/self/cgroup > /tmp/x; sleep 30")) as c:
        leader = c.start()
        assert c.cgroup == names.scope_path(machine_name)  # systemd-machined's unit name, escaped
        own = cgroupfs.own_cgroup(leader)
        assert all(path == c.cgroup for path in own.values() if path.startswith("/machine.slice")), own
        assert own[""] == c.cgroup
        for ctrl in ("memory", "pids", "cpu"):
            if ctrl in cgroupfs.detect().v1:
                assert any(ctrl in key.split(",") and path == c.cgroup for key, path in own.items()), own
        c.signal(signal.SIGKILL, "all")
        assert c.wait().kind == "killed"
    status, text = sh(busybox_tree, machine_name, "cat /proc/self/cgroup; grep cgroup2 /proc/self/mountinfo; "
                      "mkdir /sys/fs/cgroup/sub && echo MKDIR-OK && rmdir /sys/fs/cgroup/sub")
    assert "0::/\n" in text and " /sys/fs/cgroup rw," in text and "MKDIR-OK" in text


def test_no_view_of_host_mounts(busybox_tree, machine_name, tmp_path):
    status, text = sh(busybox_tree, machine_name, "cut -d' ' -f5 /proc/self/mountinfo")
    points = text.split()
    assert points[0] == "/" and len(points) < 45
    assert not any(p.startswith(("/var", "/home", "/tmp/pytest", "/proc/1/")) for p in points), points


# ---------------------------------------------------------------- options against the real tree

def test_user_chdir_and_setenv(busybox_tree, machine_name):
    with open(busybox_tree / "etc/passwd", "a") as f:
        f.write("alice:x:1000:1000::/home/alice:/bin/sh\n")
    (busybox_tree / "home/alice").mkdir(parents=True)
    status, text = sh(busybox_tree, machine_name, "id -u; pwd; echo $HOME $FOO; grep CapEff /proc/self/status",
                      user="alice", setenv=(("FOO", "bar"),))
    lines = text.split("\n")
    assert lines[0] == "1000" and lines[1] == "/home/alice" and lines[2] == "/home/alice bar"
    assert lines[3].split()[1] == "0000000000000000"
    status, text = sh(busybox_tree, machine_name, "pwd", chdir="/etc")
    assert text.strip() == "/etc"


def test_binds_tmpfs_inaccessible_and_no_junk_left(busybox_tree, machine_name, tmp_path):
    src = tmp_path / "shared"
    src.mkdir()
    (src / "hello").write_text("from the host\n")
    ro = tmp_path / "ro"
    ro.mkdir()
    status, text = sh(busybox_tree, machine_name,
                      "cat /mnt/deep/shared/hello; echo new > /mnt/deep/shared/made; "
                      "touch /opt/ro/x 2>/dev/null || echo RO-DENIED; grep ' /scratch ' /proc/self/mountinfo; "
                      "echo init.d=$(ls /etc/init.d | wc -l)",
                      binds=(Bind(src, "/mnt/deep/shared"), Bind(ro, "/opt/ro", read_only=True)),
                      tmpfs=(TmpfsMount("/scratch", "mode=0700"),), inaccessible=("/etc/init.d",))
    assert "from the host" in text and "RO-DENIED" in text and "tmpfs" in text
    assert "init.d=0" in text  # masked by an empty directory; the tree's has rcS
    assert (src / "made").read_text() == "new\n"
    # the mount points nsdash made in the tree are gone again
    assert not (busybox_tree / "mnt/deep").exists() and not (busybox_tree / "opt/ro").exists()
    assert not (busybox_tree / "scratch").exists()


def test_read_only_root(busybox_tree, machine_name):
    status, text = sh(busybox_tree, machine_name, "touch /root/x 2>/dev/null || echo RO; touch /tmp/y && echo TMP",
                      read_only=True)
    assert "RO" in text and "TMP" in text and not (busybox_tree / "root/x").exists()


def test_read_only_root_makes_no_mount_point_in_the_tree(busybox_tree, machine_name):
    # The host's resolv.conf and localtime are bound in (auto on a read-only tree); a tree without
    # them went on without them under systemd-nspawn, but nsdash made both mount points in it.
    for name in ("resolv.conf", "localtime"):
        (busybox_tree / "etc" / name).unlink(missing_ok=True)
    before = sorted(os.listdir(busybox_tree / "etc"))
    status, text = sh(busybox_tree, machine_name, "ls /etc; echo DONE", read_only=True)
    assert "DONE" in text and "resolv.conf" not in text
    assert sorted(os.listdir(busybox_tree / "etc")) == before


def _tree_listing(tree: Path) -> list[tuple[str, int, int]]:
    """Every path in TREE with its mode and mtime: what a run must leave as it was."""
    out = []
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in [*dirnames, *filenames]:
            st = os.lstat(os.path.join(dirpath, name))
            out.append((os.path.relpath(os.path.join(dirpath, name), tree), st.st_mode, st.st_mtime_ns))
    return sorted(out)


@pytest.mark.parametrize("flags", [["--read-only"], ["--read-only", "-x"], ["--volatile=state"]])
def test_cli_read_only_refuses_a_bind_onto_a_missing_target_and_leaves_the_tree(busybox_tree, machine_name,
                                                                                 tmp_path, flags):
    """systemd-nspawn -q --read-only [-x] -D TREE --bind=SRC:/nonexistent exits 1 ("Failed to create
    mount point ...: Read-only file system"); nsdash refuses too, in one line, with nothing made:
    no mount point in the tree (it made one and removed it after), no state, no machine."""
    src = tmp_path / "src"
    src.mkdir()
    mid = os.urandom(16).hex()
    (busybox_tree / "etc/machine-id").write_text(mid + "\n")  # (for --link-journal below)
    before = _tree_listing(busybox_tree)
    r = run_nsdash("spawn", "-q", *flags, "-D", str(busybox_tree), f"--bind={src}:/nonexistent", "/bin/true")
    assert r.returncode == 1, r.stderr
    why = flags[0]
    assert r.stderr == (f"nsdash: --bind target /nonexistent does not exist in the tree, and {why} keeps the tree "
                        f"unchanged: nsdash makes no mount point in it; create /nonexistent in the tree first, "
                        f"or leave out {why}\n")
    assert _tree_listing(busybox_tree) == before
    assert not os.path.exists(paths.machine_path(machine_name))
    assert machine_name not in Path("/proc/self/mountinfo").read_text()
    # the same bind onto a target the tree has, or under its /tmp (a tmpfs), runs and changes nothing;
    # nor do the host's files asked to be copied in, nor a journal tried to be linked (nspawn's
    # writes fail, and it goes on without)
    r = run_nsdash("spawn", "-q", *flags, "-D", str(busybox_tree), f"--bind={src}:/root",
                   f"--bind={src}:/tmp/a/b", "--resolv-conf=copy-host", "--timezone=copy", "--link-journal=try-guest",
                   "/bin/sh", "-c", "touch /root/x /tmp/a/b/y")
    linked = Path("/var/log/journal", mid)
    if linked.is_symlink():
        linked.unlink()  # (the host's journal directory is not this test's to leave changed)
        pytest.fail(f"try-guest linked {linked} to a read-only tree")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(src)) == ["x", "y"]
    assert _tree_listing(busybox_tree) == before


def test_a_bind_under_a_tmpfs_lands_in_it_whatever_the_options_order(busybox_tree, machine_name, tmp_path):
    """systemd-nspawn --read-only --bind=SRC:/root/inner --tmpfs=/root shows SRC at /root/inner (it
    mounts by destination, parents first); nsdash mounted the bind first and the tmpfs hid it."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("from the host\n")
    before = _tree_listing(busybox_tree)
    r = run_nsdash("spawn", "-q", "--read-only", "-D", str(busybox_tree), f"--bind={src}:/root/inner",
                   "--tmpfs=/root", "/bin/cat", "/root/inner/f")
    assert (r.returncode, r.stdout) == (0, "from the host\n"), r.stderr
    assert _tree_listing(busybox_tree) == before


def test_ephemeral_discards_changes(busybox_tree, machine_name):
    status, text = sh(busybox_tree, machine_name, "echo gone > /root/ephemeral; cat /root/ephemeral",
                      ephemeral=True)
    assert "gone" in text and not (busybox_tree / "root/ephemeral").exists()


def test_private_network_has_only_loopback_up(busybox_tree, machine_name):
    status, text = sh(busybox_tree, machine_name, "ls /sys/class/net; ip -o link show lo", private_network=True)
    assert text.split("\n")[0].split() == ["lo"]
    assert "UP" in text.split("\n")[1]


def test_network_veth(busybox_tree, machine_name):
    host_side = veth_name(machine_name)
    seen: list[bool] = []

    def check(c, out):
        if b"READY" in out and not seen:
            seen.append(os.path.exists(f"/sys/class/net/{host_side}"))

    outcome, text = run_spec(spec_for(busybox_tree, machine_name, "/bin/sh", "-c",
                                      "ls /sys/class/net; echo READY; sleep 0.3", network_veth=True),
                             on_output=check)
    assert "host0" in text.split() and "lo" in text.split()
    assert seen == [True]
    assert not os.path.exists(f"/sys/class/net/{host_side}")


def test_as_pid2_runs_the_command_as_pid_2(busybox_tree, machine_name):
    status, text = sh(busybox_tree, machine_name, "echo $$; exit 5", as_pid2=True)
    assert status == 5 and text.strip() == "2"


def test_kill_signal_and_terminate(busybox_tree, machine_name):
    spec = spec_for(busybox_tree, machine_name, "/bin/sh", "-c", "trap 'exit 42' TERM; while :; do sleep 0.05; done",
                    kill_signal=signal.SIGTERM)
    with Container(spec) as c:
        c.start()
        wait_for(lambda: catches(c.leader, signal.SIGTERM), what="the shell's TERM trap")
        c.terminate()
        outcome = c.wait()
    assert (outcome.kind, outcome.status) == ("exited", 42)


def test_a_run_removes_its_own_run_directory_and_leaves_the_shared_one(busybox_tree, machine_name):
    """The per-machine run directory goes with the machine; run/ above it, shared by every
    machine, stays (as machines/ does): removing it when it fell empty raced another machine's
    start, and was one more directory removal in each teardown (issue 16: the poweroff's exit)."""
    from nsdash.system import paths

    shared = paths.state_root() / "run"
    with Container(spec_for(busybox_tree, machine_name, "/bin/true")) as c:
        c.start()
        assert (shared / machine_name).is_dir()
        c.wait()
    assert not (shared / machine_name).exists()
    assert shared.is_dir()


def test_a_supervised_run_keeps_its_run_files_in_its_state_entry_private(busybox_tree, machine_name, reaper):
    """Under the supervisor a boot's run files (the notify socket, boot ID, seccomp filters,
    temporary layers) live in the machine's state entry: one directory made and removed per
    machine, not two (issue 16: each is an inode made and freed on a /run that may be on disk).
    That entry is searchable, so what the guest can write to stays the host root's alone."""
    import stat

    from nsdash.launcher.options import parse_spawn_args
    from nsdash.machines.supervisor import Supervisor

    spec = parse_spawn_args(["-q", "-x", "--bind=:/mnt/t", "-D", str(busybox_tree), "-M", machine_name,
                             "/bin/sh", "-c", "echo guest > /mnt/t/f"])
    entry = Path(paths.machine_path(machine_name))
    seen: dict[str, int] = {}

    def on_ready(_leader: int) -> None:
        for name in ("notify", "seccomp", "ephemeral", "bind-temp"):
            seen[name] = stat.S_IMODE(os.lstat(entry / name).st_mode)
        # the boot ID (0444: every guest user reads it) is gone once PID 1 has it bound, as nspawn's
        seen["boot_id"] = (entry / "boot_id").exists()
        seen["run/NAME"] = (paths.state_root() / "run" / machine_name).exists()

    assert Supervisor(spec, on_ready=on_ready, pty=False).run() == 0
    assert seen == {"notify": 0o600, "seccomp": 0o400, "ephemeral": 0o700, "bind-temp": 0o700, "boot_id": False,
                    "run/NAME": False}
    assert not entry.exists()
