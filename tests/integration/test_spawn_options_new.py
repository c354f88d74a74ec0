"""The options nsdash gained from systemd-nspawn 252's --help, checked by what they do
inside a real BusyBox machine (not only how they parse).  As root."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import NSDASH, REPO, run_nsdash


def spawn(tree: Path, *args: str, settings: str = "no") -> tuple[int, str, str]:
    r = run_nsdash("spawn", "-q", "-P", f"--settings={settings}", "-D", str(tree), *args)
    return r.returncode, r.stdout, r.stderr


def sh(tree: Path, script: str, *options: str, settings: str = "no") -> str:
    code, out, err = spawn(tree, *options, "/bin/sh", "-c", script, settings=settings)
    assert code == 0, err
    return out


def test_rlimit_sets_soft_and_hard_limits(busybox_tree):
    assert sh(busybox_tree, "ulimit -n", "--rlimit=NOFILE=77").split() == ["77"]
    out = sh(busybox_tree, "ulimit -Sn; ulimit -Hn", "--rlimit=RLIMIT_NOFILE=50:60")
    assert out.split() == ["50", "60"]
    assert sh(busybox_tree, "ulimit -c", "--rlimit=CORE=infinity").split() == ["unlimited"]


def test_rlimit_from_a_trusted_nspawn_file_and_not_from_an_untrusted_one(busybox_tree):
    settings = busybox_tree.parent / f"{busybox_tree.name}.nspawn"
    settings.write_text("[Exec]\nLimitNOFILE=66\n")
    try:
        r = run_nsdash("spawn", "-q", "-P", "-D", str(busybox_tree), "/bin/sh", "-c", "ulimit -n")
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() != ["66"] and "LimitNOFILE=" in r.stderr  # untrusted: warned, not applied
        out = sh(busybox_tree, "ulimit -n", settings="trusted")
        assert out.split() == ["66"]
    finally:
        settings.unlink()


def _has_cap_sys_resource() -> bool:
    with open("/proc/self/status") as f:
        eff = next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
    return bool(eff & (1 << 24))


def test_oom_score_adjust(busybox_tree):
    assert sh(busybox_tree, "cat /proc/self/oom_score_adj", "--oom-score-adjust=345").split() == ["345"]
    if _has_cap_sys_resource():
        assert sh(busybox_tree, "cat /proc/self/oom_score_adj", "--oom-score-adjust=-200").split() == ["-200"]
    else:  # as for nspawn: lowering the score needs CAP_SYS_RESOURCE (this test host lacks it)
        code, _, err = spawn(busybox_tree, "--oom-score-adjust=-200", "/bin/true")
        assert code != 0 and err.count("\n") == 1 and "CAP_SYS_RESOURCE" in err


def test_cpu_affinity(busybox_tree):
    out = sh(busybox_tree, "grep Cpus_allowed_list /proc/self/status", "--cpu-affinity=0")
    assert out.split() == ["Cpus_allowed_list:", "0"]
    if (os.cpu_count() or 1) > 1:
        out = sh(busybox_tree, "grep Cpus_allowed_list /proc/self/status", "--cpu-affinity=1")
        assert out.split()[-1] == "1"


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="--personality switches x86 and x86-64 only")
def test_personality_x86_makes_uname_report_i686(busybox_tree):
    assert sh(busybox_tree, "uname -m", "--personality=x86").split() == ["i686"]
    assert sh(busybox_tree, "uname -m", "--personality=x86-64").split() == ["x86_64"]


def test_set_and_load_credential(busybox_tree, tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"from a file\n")
    script = ('echo "dir=$CREDENTIALS_DIRECTORY"; cat $CREDENTIALS_DIRECTORY/one; echo; '
              "cat $CREDENTIALS_DIRECTORY/two; stat -c '%a' $CREDENTIALS_DIRECTORY/one; "
              "echo x > $CREDENTIALS_DIRECTORY/one 2>/dev/null && echo writable || echo read-only; "
              "touch $CREDENTIALS_DIRECTORY/new 2>/dev/null && echo dir-writable || echo dir-read-only")
    out = sh(busybox_tree, script, "--set-credential=one:a\\tb", f"--load-credential=two:{secret}")
    assert out.splitlines() == ["dir=/run/host/credentials", "a\tb", "from a file", "400", "read-only",
                                "dir-read-only"]


def test_duplicate_or_unreadable_credentials_are_one_line(busybox_tree, tmp_path):
    code, _, err = spawn(busybox_tree, "--set-credential=a:1", "--set-credential=a:2", "/bin/true")
    assert code != 0 and err.count("\n") == 1 and "duplicate credential 'a'" in err
    code, _, err = spawn(busybox_tree, f"--load-credential=a:{tmp_path}/missing", "/bin/true")
    assert code != 0 and err.count("\n") == 1 and "cannot read" in err


def test_tmpfs_options_split_into_flags_and_data(busybox_tree):
    out = sh(busybox_tree, "grep ' /x ' /proc/self/mountinfo; touch /x/f 2>/dev/null && echo rw || echo ro",
             "--tmpfs=/x:ro,nosuid,size=1M,mode=0700")
    line, result = out.splitlines()
    fields = line.split()
    assert "ro" in fields[5].split(",") and "nosuid" in fields[5].split(",")
    assert "size=1024k" in line and "mode=700" in line
    assert result == "ro"


def test_empty_bind_source_is_a_temporary_directory_removed_at_exit(busybox_tree):
    out = sh(busybox_tree, "echo hi > /scratch/f && cat /scratch/f && ls -a /scratch | wc -l",
             "--bind=:/scratch")
    assert out.split() == ["hi", "3"]  # . .. f: it started empty
    state = Path(os.environ.get("NSDASH_STATE_DIR", "/run/nsdash"))
    leftovers = [p for p in state.rglob("bind-temp")] if state.exists() else []
    assert leftovers == []


def test_an_empty_bind_source_is_the_containers_roots_under_private_users(busybox_tree):
    """As systemd-nspawn: with -U the temporary directory belongs to the container's root (it
    was host root's, 0755, so the guest could not write to its own scratch directory)."""
    out = sh(busybox_tree, "echo hi > /scratch/f && cat /scratch/f && stat -c %u /scratch", "-U", "--bind=:/scratch")
    assert out.split() == ["hi", "0"]


def test_machine_id_in_an_nspawn_file_is_the_uuid(busybox_tree):
    settings = busybox_tree.parent / f"{busybox_tree.name}.nspawn"
    settings.write_text("[Exec]\nMachineID=0123456789abcdef0123456789abcdef\n")
    try:
        assert sh(busybox_tree, "echo $container_uuid", settings="trusted").strip() == \
            "01234567-89ab-cdef-0123-456789abcdef"
        # next to the image and not trusted: nspawn ignores MachineID= with a warning, and so does nsdash
        r = run_nsdash("spawn", "-q", "-P", "-D", str(busybox_tree), "/bin/sh", "-c", "echo $container_uuid")
        assert r.returncode == 0 and r.stdout.strip() != "01234567-89ab-cdef-0123-456789abcdef"
        assert "MachineID=" in r.stderr and "not trusted" in r.stderr
    finally:
        settings.unlink()


@pytest.mark.parametrize("option", ["--capability=help", "--resolv-conf=help", "--timezone=help",
                                    "--console=help", "--rlimit=help"])
def test_help_values_print_lists(option):
    r = run_nsdash("spawn", option)
    assert r.returncode == 0 and len(r.stdout.splitlines()) >= 4, r.stderr
    assert r.stderr == ""


@pytest.mark.parametrize("argv,word", [
    (["--image=/x.raw"], "--directory= and --image= may not be combined"),
    (["--root-hash=ab"], "--root-hash is not supported by nsdash: nsdash sets up no dm-verity"),
    (["-Z", "x"], "--selinux-context is not supported by nsdash"),
    (["--port=80"], "--port needs --network-veth (-n)"),
    (["--bind-user=root"], "--bind-user is not supported by nsdash"),
])
def test_unsupported_options_are_refused_with_the_reason(busybox_tree, argv, word):
    code, _, err = spawn(busybox_tree, *argv, "/bin/true")
    assert code != 0 and err.count("\n") == 1 and word in err, err


@pytest.mark.parametrize("option", ["--tmpfs=/", "--bind=/tmp:/", "--bind-ro=/tmp://", "--inaccessible=/",
                                    "--overlay=/tmp:/"])
def test_a_mount_onto_the_root_itself_is_one_line_and_leaves_the_tree_as_it_was(busybox_tree, option):
    """nspawn replaces the root there; nsdash refuses it before set-up (which failed with
    "/dev/pts/ptmx No such file or directory"), naming the option and what to do instead."""
    before = sorted(os.listdir(busybox_tree))
    code, _, err = spawn(busybox_tree, option, "/bin/true")
    assert code != 0 and err.count("\n") == 1, err
    assert f"{option.split('=')[0].replace('-ro', '')} onto the machine's root '/' is not supported" in err, err
    assert "-D/--directory" in err and "ptmx" not in err, err
    assert sorted(os.listdir(busybox_tree)) == before
    assert str(busybox_tree) not in Path("/proc/self/mountinfo").read_text()


def test_suppress_sync_makes_the_sync_calls_succeed_without_doing_anything(busybox_tree):
    # fdatasync on /dev/null fails with EINVAL; suppressed, the call returns 0 before the kernel sees it
    script = "sync -d /dev/null 2>/dev/null; echo $?"
    assert sh(busybox_tree, script).split() == ["1"]
    assert sh(busybox_tree, script, "--suppress-sync=yes").split() == ["0"]
    assert sh(busybox_tree, script, "--suppress-sync=no").split() == ["1"]


def test_private_users_pick_alone_starts_a_tree_whose_root_is_0700(busybox_tree):
    """nspawn 252 defaults ownership to auto with pick (an ID-mapped root), so a root-owned
    0700 tree starts and is left as it was."""
    busybox_tree.chmod(0o700)
    before = busybox_tree.stat()
    out = sh(busybox_tree, "id -u; cut -c1-10 /proc/self/uid_map | tr -d ' '", "--private-users=pick")
    uid, inner_first = out.split()
    assert uid == "0" and inner_first == "0"
    after = busybox_tree.stat()
    assert (after.st_uid, after.st_mode) == (before.st_uid, before.st_mode)


def test_pivot_root_makes_a_subdirectory_the_root_and_keeps_the_old_one_where_asked(busybox_tree):
    sysroot = busybox_tree / "sysroot"
    sysroot.mkdir()
    shutil.copytree(busybox_tree / "bin", sysroot / "bin", symlinks=True)
    (sysroot / "marker").write_text("inner\n")
    out = sh(busybox_tree, "cat /marker; test -d /oldroot/sysroot && echo old-root-there", "--pivot-root=/sysroot:/oldroot")
    assert out.split() == ["inner", "old-root-there"]
    assert not (sysroot / "oldroot").exists()  # the mount point nsdash made is gone after exit
    out = sh(busybox_tree, "cat /marker; test -e /sysroot && echo leaked || echo alone", "--pivot-root=/sysroot")
    assert out.split() == ["inner", "alone"]


def test_overlay_writes_to_the_upper_layer_and_leaves_nothing_behind(busybox_tree, tmp_path):
    low, up = tmp_path / "low", tmp_path / "up"
    low.mkdir()
    up.mkdir()
    (low / "a").write_text("low\n")
    (up / "b").write_text("up\n")
    script = ("cat /ov/a /ov/b; echo new > /ov/c; echo t > /etc2/tmpfile && echo etc2-writable; "
              "touch /ro/x 2>/dev/null || echo ro-read-only")
    out = sh(busybox_tree, script, f"--overlay={low}:{up}:/ov", "--overlay=+/etc::/etc2",
             f"--overlay-ro={low}:{up}:/ro")
    assert out.split() == ["low", "up", "etc2-writable", "ro-read-only"]
    assert (up / "c").read_text() == "new\n" and not (low / "c").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".#")) == []  # the work dir went
    assert not (busybox_tree / "etc/tmpfile").exists()  # the temporary upper was thrown away
    assert not any((busybox_tree / d).exists() for d in ("ov", "etc2", "ro"))


def test_network_namespace_path_joins_that_namespace(busybox_tree):
    holder = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    try:
        path = f"/proc/{holder.pid}/ns/net"
        for _ in range(100):  # until unshare has made it
            if os.readlink(path) != os.readlink("/proc/self/ns/net"):
                break
            time.sleep(0.01)
        out = sh(busybox_tree, "readlink /proc/self/ns/net; tail -n +3 /proc/net/dev | cut -d: -f1",
                 f"--network-namespace-path={path}")
        assert out.split() == [os.readlink(path), "lo"]
        # With --private-network, as nspawn 252 takes it: the same namespace, none made.
        out = sh(busybox_tree, "readlink /proc/self/ns/net", f"--network-namespace-path={path}", "--private-network")
        assert out.split() == [os.readlink(path)]
        code, _, err = spawn(busybox_tree, f"--network-namespace-path=/proc/{holder.pid}/ns/pid", "/bin/true")
        assert code != 0 and "is not a network namespace" in err and err.count("\n") == 1
        code, _, err = spawn(busybox_tree, "--network-namespace-path=/run/netns/no-such-ns", "/bin/true")
        assert code != 0 and "No such file or directory" in err and err.count("\n") == 1, err
        code, _, err = spawn(busybox_tree, f"--network-namespace-path={path}", "-n", "/bin/true")
        assert code != 0 and "cannot be combined with --network-veth" in err and err.count("\n") == 1, err
    finally:
        holder.kill()
        holder.wait()


CAP_NET_RAW, CAP_SYS_TIME = 13, 25


def _caps(out: str) -> dict[str, int]:
    return {line.split(":")[0]: int(line.split()[1], 16) for line in out.splitlines() if line.startswith("Cap")}


def test_ambient_capability_reaches_a_non_root_payload(busybox_tree):
    wanted = (1 << CAP_NET_RAW) | (1 << CAP_SYS_TIME)
    caps = _caps(sh(busybox_tree, "grep Cap /proc/self/status", "-u", "1000",
                    "--ambient-capability=CAP_NET_RAW,cap_sys_time"))
    assert caps["CapAmb"] == caps["CapEff"] == caps["CapPrm"] == wanted
    assert caps["CapBnd"] & wanted == wanted  # retained in the bounding set, as nspawn does
    plain = _caps(sh(busybox_tree, "grep Cap /proc/self/status", "-u", "1000"))
    assert plain["CapAmb"] == plain["CapEff"] == plain["CapPrm"] == 0
    as_root = _caps(sh(busybox_tree, "grep Cap /proc/self/status", "--ambient-capability=CAP_NET_RAW"))
    assert as_root["CapAmb"] == 1 << CAP_NET_RAW and as_root["CapEff"] & (1 << CAP_SYS_TIME) == 0


def test_volatile_state_is_a_read_only_root_with_a_throwaway_var(busybox_tree):
    out = sh(busybox_tree, "echo x > /var/f && echo var-writable; touch /etc/f 2>/dev/null || echo etc-read-only",
             "--volatile=state")
    assert out.split() == ["var-writable", "etc-read-only"]
    assert not (busybox_tree / "var/f").exists()


def test_volatile_yes_is_a_tmpfs_root_holding_only_the_trees_usr(busybox_tree):
    shutil.copy2(busybox_tree / "bin/busybox", busybox_tree / "usr/bin/busybox")
    (busybox_tree / "usr/bin/sh").symlink_to("busybox")
    script = ("/usr/bin/busybox ls /; /usr/bin/busybox readlink /bin; echo x > /f && echo root-writable; "
              "/usr/bin/busybox touch /usr/f 2>/dev/null || echo usr-read-only")
    code, out, err = spawn(busybox_tree, "--volatile", "/usr/bin/sh", "-c", script)
    assert code == 0, err
    lines = out.split()
    # /bin is nspawn's base link into /usr, not the tree's own /bin (whose busybox is not there)
    assert "usr" in lines and lines[-3:] == ["usr/bin", "root-writable", "usr-read-only"]
    assert not (busybox_tree / "f").exists()


def test_network_interface_moves_a_host_link_in(busybox_tree, machine_name):
    host, peer = f"{machine_name[:9]}a", f"{machine_name[:9]}b"  # the leak check knows the session tag
    subprocess.run(["ip", "link", "add", host, "type", "veth", "peer", "name", peer], check=True)
    try:
        out = sh(busybox_tree, "tail -n +3 /proc/net/dev | cut -d: -f1", f"--network-interface={host}")
        assert sorted(out.split()) == sorted(["lo", host])
        # given back to the host when the container ends, as nspawn does
        assert Path(f"/sys/class/net/{host}").exists() and Path(f"/sys/class/net/{peer}").exists()
    finally:
        for name in (host, peer):
            subprocess.run(["ip", "link", "del", name], capture_output=True)
    code, _, err = spawn(busybox_tree, "--network-interface=nosuch0", "/bin/true")
    assert code != 0 and err.count("\n") == 1 and "no network interface nosuch0" in err
    code, _, err = spawn(busybox_tree, "--network-interface=lo", "/bin/true")  # (said "(22, 'Invalid argument')")
    assert code != 0 and err.count("\n") == 1 and "lo: cannot move it into the machine: Invalid argument; " in err


def test_network_bridge_attaches_the_veth_to_a_host_bridge(busybox_tree, machine_name):
    bridge = f"{machine_name[:10]}br"
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    try:
        proc = subprocess.Popen([*NSDASH, "spawn", "-q", "-P", "--settings=no", "-D", str(busybox_tree),
                                 f"--network-bridge={bridge}", "/bin/sh", "-c",
                                 "tail -n +3 /proc/net/dev | cut -d: -f1; sleep 3"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        host_side = Path(f"/sys/class/net/vb-{machine_name}")
        master = None
        for _ in range(300):
            if (host_side / "master").exists():
                master = os.path.basename(os.readlink(host_side / "master"))
                break
            time.sleep(0.01)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert master == bridge
        assert sorted(out.split()) == ["host0", "lo"]
        assert not host_side.exists()  # the pair went with the container
    finally:
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)
    code, _, err = spawn(busybox_tree, "--network-bridge=nosuchbr0", "/bin/true")
    assert code != 0 and err.count("\n") == 1 and "no bridge named" in err


def test_network_veth_extra_adds_a_pair_removed_at_exit(busybox_tree, machine_name):
    host = f"{machine_name[:11]}x"
    out = sh(busybox_tree, "tail -n +3 /proc/net/dev | cut -d: -f1", f"--network-veth-extra={host}:inner0",
             f"--network-veth-extra={host}y")
    assert sorted(out.split()) == sorted(["lo", "inner0", f"{host}y"])
    assert not Path(f"/sys/class/net/{host}").exists() and not Path(f"/sys/class/net/{host}y").exists()


def _ethernet_link() -> str | None:
    for p in sorted(Path("/sys/class/net").iterdir()):
        if (p / "device").exists() or p.name.startswith(("eth", "en")):
            return p.name
    return None


def test_network_macvlan_and_ipvlan(busybox_tree):
    parent = _ethernet_link()
    assert parent is not None, "the test host has an Ethernet link"
    out = sh(busybox_tree, "tail -n +3 /proc/net/dev | cut -d: -f1", f"--network-macvlan={parent}")
    assert sorted(out.split()) == sorted(["lo", f"mv-{parent}"])
    # ipvlan needs the kernel's module: it works, or fails in one line that names it
    code, out, err = spawn(busybox_tree, f"--network-ipvlan={parent}", "/bin/sh", "-c",
                           "tail -n +3 /proc/net/dev | cut -d: -f1")
    assert (code == 0 and sorted(out.split()) == sorted(["lo", f"iv-{parent}"])) or \
        (code != 0 and err.count("\n") == 1 and "cannot create the ipvlan link" in err), err


def test_network_zone_makes_the_bridge_on_demand_and_removes_it_with_the_last_machine(busybox_tree, machine_name):
    zone = machine_name[:12]
    bridge = Path(f"/sys/class/net/vz-{zone}")
    assert not bridge.exists()
    proc = subprocess.Popen([*NSDASH, "spawn", "-q", "-P", "--settings=no", "-D", str(busybox_tree),
                             f"--network-zone={zone}", "/bin/sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1; sleep 3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        ports: list[str] = []
        for _ in range(300):
            if (bridge / "brif").is_dir() and (ports := os.listdir(bridge / "brif")):
                break
            time.sleep(0.01)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert ports == [f"vb-{machine_name}"] and sorted(out.split()) == ["host0", "lo"]
        assert not bridge.exists()  # its last machine left
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run(["ip", "link", "del", f"vz-{zone}"], capture_output=True)


def test_template_copies_a_missing_tree_once(busybox_tree, tmp_path):
    target = tmp_path / "fromtemplate"
    out = sh(target, "cat /etc/marker 2>/dev/null || echo none; echo made > /etc/marker", f"--template={busybox_tree}")
    assert out.split() == ["none"] and (target / "bin/busybox").exists()
    assert (target / "etc/marker").read_text() == "made\n" and not (busybox_tree / "etc/marker").exists()
    # the tree exists now: the template is not used again (nspawn's rule)
    assert sh(target, "cat /etc/marker", f"--template={busybox_tree}").split() == ["made"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".#")]
    code, _, err = spawn(tmp_path / "other", "--dry-run", f"--template={busybox_tree}", "/bin/true")
    assert code != 0 and err.count("\n") == 1 and "does not exist yet" in err and not (tmp_path / "other").exists()


def test_idmap_bind_options(busybox_tree, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x\n")
    for opt in ("idmap", "rootidmap", "noidmap"):  # without a user namespace: the identity
        assert sh(busybox_tree, "stat -c %u /x/f", f"--bind={src}:/x:{opt}").split() == ["0"]
    code, _, err = spawn(busybox_tree, "-U", f"--bind={src}:/x:idmap", "/bin/true")
    assert code != 0 and err.count("\n") == 1 and "not supported by nsdash" in err
