"""The launch plan: pure decisions from a spec and a fixture tree (no root, no syscalls)."""

from __future__ import annotations

import os
import re
import shutil
import signal
from pathlib import Path

import pytest

from nsdash.errors import SpecError
from nsdash.launcher import mounts as m
from nsdash.launcher.plan import DEFAULT_CAPABILITIES, build_plan, find_executable, lookup_user
from nsdash.launcher.spec import Bind, ContainerSpec, OverlayMount, TmpfsMount
from nsdash.system.syscalls import CLONE_NEWNET, CLONE_NEWPID


def _exe(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    t = tmp_path / "tree"
    for d in ("usr/bin", "etc", "proc", "sys", "dev", "run", "tmp", "root", "home/alice"):
        (t / d).mkdir(parents=True)
    (t / "bin").symlink_to("usr/bin")
    _exe(t / "usr/bin/sh")
    _exe(t / "usr/bin/true")
    _exe(t / "usr/lib/systemd/systemd")
    (t / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n")
    (t / "etc/group").write_text("root:x:0:\nalice:x:1000:\nwheel:x:10:alice\n")
    (t / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    return t


@pytest.fixture
def host(tmp_path: Path) -> Path:
    h = tmp_path / "host"
    (h / "etc").mkdir(parents=True)
    (h / "dev/net").mkdir(parents=True)
    for n in ("null", "zero", "full", "random", "urandom", "tty", "net/tun"):
        (h / "dev" / n).write_text("")
    (h / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    (h / "etc/resolv.conf").write_text("nameserver 192.0.2.53\n")
    (h / "usr/share/zoneinfo/Europe").mkdir(parents=True)
    (h / "usr/share/zoneinfo/Europe/Paris").write_bytes(b"TZif-paris")
    (h / "etc/localtime").symlink_to("../usr/share/zoneinfo/Europe/Paris")
    (h / "var/log/journal").mkdir(parents=True)
    return h


def plan_for(tree: Path, host: Path, **kw):
    spec = ContainerSpec(directory=tree, machine=kw.pop("machine", "box"), **kw)
    return build_plan(spec, state_dir=str(host / "state"), host_root=str(host), host_term="xterm")


def kinds(plan) -> list[str]:
    return [op.describe() for op in plan.mounts]


def test_default_plan_namespaces_command_and_identity(tree, host):
    plan = plan_for(tree, host, command=("true",))
    assert plan.namespaces & CLONE_NEWPID and not plan.namespaces & CLONE_NEWNET
    assert plan.argv == ("true",)
    assert plan.hostname == "box" and plan.root == str(tree)
    assert plan.kill_signal == signal.SIGKILL
    env = dict(plan.env)
    assert env["container"] == "systemd-nspawn" and env["NOTIFY_SOCKET"] == "/run/host/notify"
    assert env["container_host_id"] == "debian" and env["container_host_version_id"] == "12"
    assert len(env["container_uuid"]) == 36
    assert plan.capabilities == DEFAULT_CAPABILITIES


def test_mount_order_puts_run_before_masks_and_root_first(tree, host):
    plan = plan_for(tree, host, command=("true",))
    ops = plan.mounts
    assert isinstance(ops[0], m.RootBind)
    run = next(i for i, op in enumerate(ops) if isinstance(op, m.Filesystem) and op.target == "/run")
    first_mask = next(i for i, op in enumerate(ops) if isinstance(op, m.Mask))
    assert run < first_mask
    text = "\n".join(kinds(plan))
    for expected in ("mount proc /proc", "read-only /proc/sys", "mask /proc/kcore", "mount sysfs /sys (ro",
                     "mount cgroup2 /sys/fs/cgroup", "mount devpts /dev/pts", "symlink /dev/ptmx -> pts/ptmx",
                     "device /dev/null -> /dev/null", "device /dev/net/tun -> /dev/net/tun",
                     "write /run/host/os-release", "write /run/systemd/container"):
        assert expected in text, expected
    assert "/dev/console" not in text  # no console: systemd-nspawn's pipe mode has none


def test_console_is_a_symlink_into_the_containers_devpts(tree, host):
    """As systemd-nspawn: /dev/console -> pts/0, the first PTY PID 1 opens in its own devpts
    (a bind mount of a host PTY there is unmounted by a guest's shutdown scripts)."""
    spec = ContainerSpec(directory=tree, machine="box", command=("true",))
    plan = build_plan(spec, console=True, host_root=str(host))
    text = "\n".join(kinds(plan))
    assert plan.console
    assert text.index("mount devpts /dev/pts") < text.index("symlink /dev/console -> pts/0")
    assert "-> /dev/console" not in text  # nothing is mounted there


def test_boot_finds_init_and_uses_sigrtmin3(tree, host):
    plan = plan_for(tree, host, boot=True, command=("--unit=rescue.target",))
    assert plan.argv == ("/usr/lib/systemd/systemd", "--unit=rescue.target")
    assert plan.kill_signal == signal.SIGRTMIN + 3
    assert plan.chdir == "/"


def test_no_command_starts_the_users_login_shell(tree, host):
    assert plan_for(tree, host).argv == ("/bin/sh", "-l")


def test_private_network_adds_netns_and_net_admin(tree, host):
    plan = plan_for(tree, host, command=("true",), private_network=True)
    assert plan.namespaces & CLONE_NEWNET and plan.network == "private"
    assert "CAP_NET_ADMIN" in plan.capabilities
    assert "rbind (container)/proc/sys/net -> /proc/sys/net" in kinds(plan)
    assert not any("resolv.conf" in d for d in kinds(plan))  # auto leaves it alone with private networking
    assert plan_for(tree, host, command=("true",), network_veth=True).network == "veth"


def test_capabilities_added_dropped_and_limited(tree, host):
    plan = plan_for(tree, host, command=("true",), capabilities=frozenset({"CAP_NET_ADMIN"}),
                    drop_capabilities=frozenset({"CAP_SYS_ADMIN"}))
    assert "CAP_NET_ADMIN" in plan.capabilities and "CAP_SYS_ADMIN" not in plan.capabilities
    assert "CAP_SYS_MODULE" not in plan.capabilities
    spec = ContainerSpec(directory=tree, machine="box", command=("true",))
    limited = build_plan(spec, host_root=str(host), available_caps=frozenset({"CAP_CHOWN", "CAP_SYS_MODULE"}))
    assert limited.capabilities == {"CAP_CHOWN"}


def test_user_lookup(tree, host):
    alice = lookup_user(str(tree), "alice")
    assert (alice.uid, alice.gid, alice.home) == (1000, 1000, "/home/alice")
    assert 10 in alice.groups
    plan = plan_for(tree, host, command=("true",), user="alice")
    env = dict(plan.env)
    assert env["HOME"] == "/home/alice" and env["USER"] == "alice" and plan.chdir == "/home/alice"
    with pytest.raises(SpecError, match="user 'bob' does not exist"):
        plan_for(tree, host, command=("true",), user="bob")


def test_setenv_overrides_and_chdir(tree, host):
    plan = plan_for(tree, host, command=("true",), setenv=(("FOO", "bar"), ("TERM", "vt100")), chdir="/tmp")
    env = dict(plan.env)
    assert env["FOO"] == "bar" and env["TERM"] == "vt100" and plan.chdir == "/tmp"


def test_ephemeral_uses_an_overlay_under_the_state_dir(tree, host):
    plan = plan_for(tree, host, command=("true",), ephemeral=True)
    assert isinstance(plan.mounts[0], m.RootOverlay)
    assert plan.root.startswith(str(host / "state")) and plan.ephemeral_dir
    assert plan.created_paths == ()


def test_binds_tmpfs_inaccessible_and_created_mount_points(tree, host, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    plan = plan_for(tree, host, command=("true",),
                    binds=(Bind(src, "/mnt/a/b"), Bind(src, "/root", read_only=True, recursive=False)),
                    tmpfs=(TmpfsMount("/scratch", "mode=0700"),), inaccessible=("/etc",))
    text = kinds(plan)
    assert f"rbind {src} -> /mnt/a/b" in text and f"bind {src} -> /root (ro)" in text
    assert "mount tmpfs /scratch (nosuid,nodev,mode=0700)" in text and "mask /etc" in text
    assert plan.created_paths == (str(tree / "mnt"), str(tree / "mnt/a"), str(tree / "mnt/a/b"),
                                  str(tree / "scratch"))
    # the user's mounts come after the API file systems, so they win
    assert text.index(f"rbind {src} -> /mnt/a/b") > text.index("mount tmpfs /tmp (nosuid,nodev,mode=1777,size=10%,nr_inodes=400k)")


@pytest.mark.parametrize("option,mount", [
    ("--bind", {"binds": (Bind(Path("/tmp"), "/"),)}),
    ("--bind", {"binds": (Bind(Path("/tmp"), "//", read_only=True),)}),
    ("--tmpfs", {"tmpfs": (TmpfsMount("/", "mode=0755"),)}),
    ("--inaccessible", {"inaccessible": ("/",)}),
    ("--overlay", {"overlays": (OverlayMount(lower=(Path("/tmp"),), upper=None, target="/", read_only=True),)}),
])
def test_a_mount_onto_the_root_itself_is_refused_before_anything_is_made(tree, host, option, mount):
    """nspawn replaces the root there; nsdash does not, and set-up failed later with an unclear
    error (/dev/pts/ptmx missing under the new root): one line naming the option, and no mount
    point made in the tree."""
    before = sorted(p.name for p in tree.iterdir())
    with pytest.raises(SpecError, match=f"^{option} onto the machine's root '/' is not supported") as e:
        plan_for(tree, host, command=("true",), **mount)
    assert "-D/--directory" in (e.value.hint or "")
    assert sorted(p.name for p in tree.iterdir()) == before


def test_read_only_remounts_root_last(tree, host):
    (tree / "etc/resolv.conf").write_text("")
    plan = plan_for(tree, host, command=("true",), read_only=True)
    assert isinstance(plan.mounts[-1], m.RemountRoot)
    assert "bind" in [d.split()[0] for d in kinds(plan) if "/etc/resolv.conf" in d][0]  # auto on ro: bind


@pytest.mark.parametrize("how", [{"read_only": True}, {"volatile": "state"}])
@pytest.mark.parametrize("link,kept", [("../run/localtime", True), ("../usr/share/zoneinfo/Nowhere", False)])
def test_a_read_only_tree_without_the_files_gets_no_bind_onto_them(tree, host, how, link, kept):
    """Their mount points would be made in the tree on the host (systemd-nspawn goes on without).
    A dangling symlink is followed as the container sees it: into /run it lands in the tmpfs there,
    elsewhere the mount point would be made behind it, in the tree."""
    (tree / "etc/localtime").symlink_to(link)
    plan = plan_for(tree, host, command=("true",), **how)
    found = [d for d in kinds(plan) if "/etc/resolv.conf" in d or "/etc/localtime" in d]
    assert found == ([f"bind {os.path.realpath(host / 'etc/localtime')} -> /etc/localtime (ro)"] if kept else []), found


@pytest.mark.parametrize("how,option", [({"read_only": True}, "--read-only"),
                                        ({"read_only": True, "ephemeral": True}, "--read-only"),
                                        ({"volatile": "state"}, "--volatile=state")])
@pytest.mark.parametrize("mount,name", [("bind", "--bind"), ("tmpfs", "--tmpfs"), ("overlay", "--overlay")])
def test_a_read_only_tree_refuses_a_mount_whose_target_it_lacks(tree, host, tmp_path, how, option, mount, name):
    """systemd-nspawn fails to make the mount point ("Read-only file system") and exits 1, under -x
    too; nsdash refuses the plan before anything is made, naming the target and the fix."""
    src = tmp_path / "src"
    src.mkdir()
    target = "/mnt/new"
    kw = {"bind": {"binds": (Bind(src, target),)}, "tmpfs": {"tmpfs": (TmpfsMount(target, ""),)},
          "overlay": {"overlays": (OverlayMount((src,), None, target, temporary=True),)}}[mount]
    with pytest.raises(SpecError) as e:
        plan_for(tree, host, command=("true",), **kw, **how)
    assert str(e.value) == (f"{name} target {target} does not exist in the tree, and {option} keeps the tree "
                            "unchanged: nsdash makes no mount point in it")
    assert e.value.hint == f"create {target} in the tree first, or leave out {option}"
    assert not (tree / "mnt").exists()


def test_the_users_mounts_go_by_destination_parents_first_whatever_the_options_order(tree, host, tmp_path):
    """nspawn sorts its custom mounts by destination (custom_mount_compare), a bind before a
    tmpfs before an overlay before an inaccessible node on one path: a --bind under a --tmpfs
    lands in it (nsdash mounted the bind first, and the tmpfs hid it)."""
    src = tmp_path / "src"
    src.mkdir()
    plan = plan_for(tree, host, command=("true",), inaccessible=("/root/inner/x",),
                    binds=(Bind(src, "/root/inner"), Bind(src, "/root/b")), tmpfs=(TmpfsMount("/root", ""),),
                    overlays=(OverlayMount((src,), None, "/root/inner", temporary=True),))
    text = kinds(plan)
    order = [next(i for i, d in enumerate(text) if d.startswith(start)) for start in (
        "mount tmpfs /root ", f"rbind {src} -> /root/b", f"rbind {src} -> /root/inner", "overlay", "mask /root/inner/x")]
    assert order == sorted(order), text
    assert set(plan.created_paths) == {str(tree / "root/inner"), str(tree / "root/b")}  # (in the tmpfs, in fact)


@pytest.mark.parametrize("how", [{"read_only": True}, {"volatile": "state"}])
def test_a_read_only_tree_takes_mounts_on_what_it_has_or_on_a_file_system_mounted_before(tree, host, tmp_path, how):
    """Existing targets, and targets under /tmp, /run or /dev (tmpfs mounted first), a symlink into
    one, or a mount point the user's own earlier mount holds: nspawn makes those, so does nsdash."""
    src = tmp_path / "src"
    src.mkdir()
    (tree / "opt").mkdir()
    (tree / "var/run").parent.mkdir()
    (tree / "var/run").symlink_to("../run")
    plan = plan_for(tree, host, command=("true",), **how,
                    binds=(Bind(src, "/root"), Bind(src, "/tmp/a/b"), Bind(src, "/var/run/c"), Bind(src, "/dev/d"),
                           Bind(src, "/opt/inner")),
                    tmpfs=(TmpfsMount("/opt", ""), TmpfsMount("/run/e", "")))
    text = kinds(plan)
    for target in ("/root", "/tmp/a/b", "/var/run/c", "/dev/d", "/opt/inner"):
        assert f"rbind {src} -> {target}" in text
    assert "mount tmpfs /run/e (nosuid,nodev)" in text, text
    assert not (tree / "tmp/a").exists() and not (tree / "opt/inner").exists()


@pytest.mark.parametrize("how", [{"read_only": True}, {"volatile": "state"}])
@pytest.mark.parametrize("resolv_conf,timezone", [("copy-host", "copy"), ("replace-host", "symlink"),
                                                  ("delete", "delete")])
def test_a_read_only_tree_gets_no_file_written_linked_or_deleted_in_it(tree, host, how, resolv_conf, timezone):
    """systemd-nspawn --read-only --resolv-conf=copy-host --timezone=copy leaves the tree as it
    was (its writes fail, and it goes on); nsdash wrote both files into it before the remount."""
    (tree / "usr/share/zoneinfo/Europe").mkdir(parents=True)
    (tree / "usr/share/zoneinfo/Europe/Paris").write_bytes(b"TZif")  # (symlink mode then links, not copies)
    (tree / "etc/localtime").write_text("")
    written = plan_for(tree, host, command=("true",), resolv_conf=resolv_conf, timezone=timezone)
    assert len([d for d in kinds(written) if "/etc/resolv.conf" in d or "/etc/localtime" in d]) == 2
    plan = plan_for(tree, host, command=("true",), resolv_conf=resolv_conf, timezone=timezone, **how)
    found = [d for d in kinds(plan) if "/etc/resolv.conf" in d or "/etc/localtime" in d]
    assert found == [], found


def test_volatile_state_keeps_the_tree_read_only_for_resolv_conf_and_localtime(tree, host):
    """Only /var is writable (in memory) under --volatile=state: "auto" binds the host's files
    instead of writing them into the tree (which a boot then left changed)."""
    (tree / "etc/resolv.conf").write_text("")
    (tree / "etc/localtime").write_text("")
    plan = plan_for(tree, host, command=("true",), volatile="state")
    assert isinstance(plan.mounts[-1], m.RemountRoot)
    found = [d for d in kinds(plan) if "/etc/resolv.conf" in d or "/etc/localtime" in d]
    assert len(found) == 2 and all(d.startswith("bind") for d in found), found


@pytest.mark.parametrize("mode,expect", [
    ("auto", "write /etc/resolv.conf"), ("copy-host", "write /etc/resolv.conf"),
    ("replace-host", "write /etc/resolv.conf"), ("bind-host", "bind"), ("off", None),
    ("delete", "delete /etc/resolv.conf"),
])
def test_resolv_conf_modes(tree, host, mode, expect):
    found = [d for d in kinds(plan_for(tree, host, command=("true",), resolv_conf=mode)) if "resolv.conf" in d]
    if expect is None:
        assert found == []
    else:
        assert found and found[0].startswith(expect)


def test_resolv_conf_copy_carries_the_hosts_content(tree, host):
    plan = plan_for(tree, host, command=("true",), resolv_conf="copy-host")
    op = next(op for op in plan.mounts if isinstance(op, m.WriteFile) and op.target == "/etc/resolv.conf")
    assert op.content == b"nameserver 192.0.2.53\n" and op.replace is False


def test_timezone_modes(tree, host):
    # auto with a symlinked host localtime: symlink if the tree has the zone, else copy
    d = kinds(plan_for(tree, host, command=("true",)))
    assert "write /etc/localtime (10 bytes)" in d
    (tree / "usr/share/zoneinfo/Europe").mkdir(parents=True)
    (tree / "usr/share/zoneinfo/Europe/Paris").write_bytes(b"x")
    d = kinds(plan_for(tree, host, command=("true",)))
    assert "symlink /etc/localtime -> ../usr/share/zoneinfo/Europe/Paris" in d
    assert any(x.startswith("bind") and "/etc/localtime" in x
               for x in kinds(plan_for(tree, host, command=("true",), timezone="bind")))
    assert not any("localtime" in x for x in kinds(plan_for(tree, host, command=("true",), timezone="off")))


def test_link_journal_modes(tree, host):
    mid = "0123456789abcdef0123456789abcdef"
    assert plan_for(tree, host, command=("true",), link_journal="no").host_journal_dir is None
    p = plan_for(tree, host, command=("true",), link_journal="host")
    assert p.host_journal_dir == str(host / "var/log/journal" / mid)
    assert f"rbind {host}/var/log/journal/{mid} -> /var/log/journal/{mid}" in kinds(p)
    p = plan_for(tree, host, command=("true",), link_journal="guest")
    assert p.host_journal_link == (str(host / "var/log/journal" / mid), str(tree / "var/log/journal" / mid))
    assert f"mkdir /var/log/journal/{mid}" in kinds(p)
    # try-guest on an ephemeral container quietly does nothing; guest fails
    p = plan_for(tree, host, command=("true",), link_journal="try-guest", ephemeral=True)
    assert p.host_journal_link is None
    with pytest.raises(SpecError, match="non-ephemeral"):
        plan_for(tree, host, command=("true",), link_journal="guest", ephemeral=True)
    # auto binds the host directory only when it exists
    assert plan_for(tree, host, command=("true",), link_journal="auto").host_journal_dir is None
    (host / "var/log/journal" / mid).mkdir()
    assert any("/var/log/journal/" in d for d in kinds(plan_for(tree, host, command=("true",), link_journal="auto")))


def test_link_journal_on_a_read_only_tree_that_lacks_the_directory(tree, host):
    """systemd-nspawn --read-only links nothing for try-guest, try-host and auto (nor makes the
    host's directory), and refuses guest and host: "Failed to create /var/log/journal: Read-only
    file system".  nsdash made /var/log/journal/ID in the tree and linked the host to it.  (Under
    --volatile=state /var is a tmpfs: the directory is made there, as on a writable tree.)"""
    mid = "0123456789abcdef0123456789abcdef"
    how, option = {"read_only": True}, "--read-only"
    for mode in ("try-guest", "try-host", "auto"):
        if mode == "auto":
            (host / "var/log/journal" / mid).mkdir()  # (auto binds it when it exists)
        p = plan_for(tree, host, command=("true",), link_journal=mode, **how)
        assert (p.host_journal_dir, p.host_journal_link) == (None, None), mode
        assert not [d for d in kinds(p) if "/var/log/journal" in d], mode
    (host / "var/log/journal" / mid).rmdir()
    for mode in ("guest", "host"):
        with pytest.raises(SpecError) as e:
            plan_for(tree, host, command=("true",), link_journal=mode, **how)
        assert str(e.value) == (f"--link-journal={mode} needs /var/log/journal/MACHINE-ID in the tree, and {option} "
                                "keeps the tree unchanged: nsdash makes no directory in it")
        assert e.value.hint == f"create it in the tree first, or use --link-journal=try-{mode}"
    # a tree that has it: linked as on a writable one, nothing made in it
    (tree / "var/log/journal" / mid).mkdir(parents=True)
    p = plan_for(tree, host, command=("true",), link_journal="guest", **how)
    assert p.host_journal_link == (str(host / "var/log/journal" / mid), str(tree / "var/log/journal" / mid))
    p = plan_for(tree, host, command=("true",), link_journal="try-host", **how)
    assert f"rbind {host}/var/log/journal/{mid} -> /var/log/journal/{mid}" in kinds(p)


@pytest.mark.parametrize("setup,kw,message", [
    (None, {"directory": "/nonexistent/tree"}, "does not exist"),
    ("file", {}, "is not a directory"),
    ("nousr", {}, "has no /usr"),
    (None, {"command": ("nosuchcmd",)}, "command 'nosuchcmd' not found"),
    ("noinit", {"boot": True}, "no init found"),
])
def test_bad_trees_and_commands(tree, host, tmp_path, setup, kw, message):
    directory = kw.pop("directory", tree)
    if setup == "file":
        directory = tmp_path / "afile"
        directory.write_text("")
    elif setup == "nousr":
        directory = tmp_path / "empty"
        directory.mkdir()
    elif setup == "noinit":
        (tree / "usr/lib/systemd/systemd").unlink()
    kw.setdefault("command", ("true",))
    with pytest.raises(SpecError, match=message):
        plan_for(Path(directory), host, **kw)


def test_bind_source_missing_and_target_escaping(tree, host, tmp_path):
    with pytest.raises(SpecError, match="bind source .* does not exist"):
        plan_for(tree, host, command=("true",), binds=(Bind(tmp_path / "nope", "/mnt"),))
    (tree / "escape").symlink_to("../../../../../etc")
    src = tmp_path / "src"
    src.mkdir()
    with pytest.raises(SpecError, match="escapes the container root"):
        plan_for(tree, host, command=("true",), binds=(Bind(src, "/escape/x"),))
    # absolute symlinks resolve inside the root, as in a chroot
    (tree / "abs").symlink_to("/etc")
    plan = plan_for(tree, host, command=("true",), binds=(Bind(src, "/abs/y"),))
    assert plan.created_paths == (str(tree / "etc/y"),)


def test_resolve_in_root_and_find_executable(tree):
    root = str(tree)
    assert m.resolve_in_root(root, "/bin/sh") == os.path.join(root, "usr/bin/sh")
    assert m.resolve_in_root(root, "/../../etc/passwd") == os.path.join(root, "etc/passwd")
    assert m.resolve_in_root(root, "/bin", follow_last=False) == os.path.join(root, "bin")
    with pytest.raises(m.EscapeError):
        m.resolve_in_root(root, "/../x", strict=True)
    assert find_executable(root, "sh") == "/usr/bin/sh"
    assert find_executable(root, "/bin/sh") == "/bin/sh"
    assert find_executable(root, "nope") is None
    (tree / "usr/bin/data").write_text("")
    assert find_executable(root, "data") is None  # not executable


def test_describe_lists_everything(tree, host):
    text = plan_for(tree, host, command=("true", "x")).describe()
    assert "machine:      box" in text and "command:      true x" in text
    assert "namespaces:   mnt uts ipc cgroup pid" in text and "mounts:" in text and "container=systemd-nspawn" in text
    assert "kill signal:  SIGKILL" in text


def test_machine_cgroup_paths_on_each_layout(tmp_path):
    from nsdash.launcher.cgroup import MachineCgroup, device_program, scope_path
    from nsdash.system.cgroupfs import Layout

    root = tmp_path / "cg"
    unified = MachineCgroup("box", Layout("unified", root, root, {}))
    assert scope_path("box") == "/machine.slice/machine-box.scope"
    assert unified.dirs == [root / "machine.slice/machine-box.scope"]
    # cgroup2 only: the BPF device program is the filter; without it the container loses CAP_MKNOD
    assert unified.filters_devices == (device_program() is not None)
    v1 = {c: root / c for c in ("cpu", "cpuacct", "memory", "pids", "blkio", "devices", "freezer")}
    hybrid = MachineCgroup("box", Layout("hybrid", root, root / "unified", v1))
    assert hybrid.main_dir == root / "unified/machine.slice/machine-box.scope"
    # every v1 hierarchy, freezer too: the cgroup namespace is rooted at the machine's cgroup in each
    assert {d.parts[-3] for d in hybrid.dirs} == {"unified", "cpu", "cpuacct", "memory", "pids", "blkio",
                                                  "devices", "freezer"}
    assert hybrid.filters_devices


def test_relative_command_is_found_from_the_working_directory(tree, host):
    _exe(tree / "etc/run.sh")
    assert plan_for(tree, host, command=("./run.sh",), chdir="/etc").argv == ("./run.sh",)
    with pytest.raises(SpecError, match="not found"):
        plan_for(tree, host, command=("./run.sh",))  # from /root it does not exist


def test_container_uuid_follows_nspawn(tree, host):
    env = dict(plan_for(tree, host, command=("true",), uuid="ffffffffffffffffffffffffffffffff").env)
    assert env["container_uuid"] == "01234567-89ab-cdef-0123-456789abcdef"  # the tree's machine ID wins
    (tree / "etc/machine-id").write_text("")
    env = dict(plan_for(tree, host, command=("true",), uuid="ffffffffffffffffffffffffffffffff").env)
    assert env["container_uuid"] == "ffffffff-ffff-ffff-ffff-ffffffffffff"
    spec = ContainerSpec(directory=tree, machine="box", command=("true",))
    plan = build_plan(spec, host_root=str(host), session_uuid="aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
    assert dict(plan.env)["container_uuid"] == "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"
    assert plan.host_journal_dir is None and plan.host_journal_link is None  # no machine ID to link by


def test_each_plan_binds_a_fresh_read_only_boot_id(tree, host):
    first, second = plan_for(tree, host, command=("true",)), plan_for(tree, host, command=("true",))
    for plan in (first, second):
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", plan.boot_id)
        assert f"bind {host}/state/boot_id -> /proc/sys/kernel/random/boot_id (ro)" in kinds(plan)
        # bound after /proc/sys turns read-only, and read-only itself
        assert kinds(plan).index("read-only /proc/sys") < kinds(plan).index(
            f"bind {host}/state/boot_id -> /proc/sys/kernel/random/boot_id (ro)")
    assert first.boot_id != second.boot_id
    # without a state directory (nothing to hold the file) the host's stays, as before
    spec = ContainerSpec(directory=tree, machine="box", command=("true",))
    assert build_plan(spec, host_root=str(host)).boot_id is None


@pytest.mark.parametrize("link", ["/etc", "../../../../../../../../etc"])
def test_guest_journal_link_points_inside_the_tree_whatever_its_symlinks(tree, host, link):
    # The tree's /var/log is a symlink out of it (absolute, or climbing with ../): the host's
    # /var/log/journal/ID link must still point at the tree's own directory, as the container sees it.
    mid = (tree / "etc/machine-id").read_text().strip()
    shutil.rmtree(tree / "var/log", ignore_errors=True)
    (tree / "var").mkdir(exist_ok=True)
    (tree / "var/log").symlink_to(link)
    p = plan_for(tree, host, command=("true",), link_journal="guest")
    assert p.host_journal_link == (str(host / "var/log/journal" / mid), str(tree / "etc/journal" / mid))


def test_tasks_limit_goes_to_cgroup2_where_pids_can_be_enabled_else_v1(tmp_path):
    from nsdash.launcher import cgroup as c
    from nsdash.system.cgroupfs import Layout

    # A pure cgroup2 host with pids enabled down to the scope: the limit goes there.
    root = tmp_path / "v2"
    leaf = root / "machine.slice/machine-box.scope"
    leaf.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    for d in (root, root / "machine.slice"):
        (d / "cgroup.subtree_control").write_text("cpu\n")
    (leaf / "pids.max").write_text("max\n")  # as the kernel shows it once enabled above
    c.MachineCgroup("box", Layout("unified", root, root, {}))._limit_tasks()
    assert (leaf / "pids.max").read_text() == str(c.TASKS_MAX)
    # --property=TasksMax= replaces the default (applied after it, by create())
    (leaf / "pids.max").write_text("max\n")
    c.MachineCgroup("box", Layout("unified", root, root, {}), properties=("TasksMax=99",))._limit_tasks()
    assert (leaf / "pids.max").read_text() == "max\n"
    # A hybrid host (pids bound to v1): the v1 pids hierarchy takes it, cgroup2 is left alone.
    uni, pids = tmp_path / "h/unified", tmp_path / "h/pids"
    (uni / "machine.slice/machine-box.scope").mkdir(parents=True)
    (uni / "cgroup.controllers").write_text("\n")
    (pids / "machine.slice/machine-box.scope").mkdir(parents=True)
    (pids / "machine.slice/machine-box.scope/pids.max").write_text("max\n")
    c.MachineCgroup("box", Layout("hybrid", tmp_path / "h", uni, {"pids": pids}))._limit_tasks()
    assert (pids / "machine.slice/machine-box.scope/pids.max").read_text() == str(c.TASKS_MAX)
    assert not (uni / "machine.slice/machine-box.scope/pids.max").exists()


def test_a_new_v1_cpuset_cgroup_takes_its_parents_cpus_and_nodes(tmp_path):
    from nsdash.launcher.cgroup import _inherit_cpuset

    top = tmp_path / "cpuset"
    leaf = top / "machine.slice/machine-box.scope"
    leaf.mkdir(parents=True)
    (top / "cpuset.cpus").write_text("0-1\n")
    (top / "cpuset.mems").write_text("0\n")
    for d in (top / "machine.slice", leaf):
        (d / "cpuset.cpus").write_text("\n")
        (d / "cpuset.mems").write_text("\n")
    _inherit_cpuset(leaf, top)
    assert (leaf / "cpuset.cpus").read_text() == "0-1\n" and (leaf / "cpuset.mems").read_text() == "0\n"
