"""parse_spawn_args: every option of systemd-nspawn that nsdash takes, its short
forms, syntax, defaults and the one-line errors for bad input."""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from nsdash.errors import SpecError, UsageError
from nsdash.launcher import options
from nsdash.launcher.options import parse_spawn_args
from nsdash.launcher.spec import Bind, ContainerSpec, TmpfsMount
from nsdash.launcher.validate import CAPABILITIES


@contextlib.contextmanager
def raises_line(exc: type[Exception], pattern: str) -> Iterator[None]:
    """Like pytest.raises(match=), against the whole line the user sees (message; hint)."""
    with pytest.raises(exc) as e:
        yield
    line = e.value.oneline()  # type: ignore[attr-defined]
    assert "\n" not in line
    assert re.search(pattern, line), line


@pytest.fixture
def tree(tmp_path) -> Path:
    d = tmp_path / "mytree"
    (d / "usr").mkdir(parents=True)
    (d / "etc").mkdir()
    return d


def parse(tree: Path, *args: str) -> ContainerSpec:
    # no trusted settings directories: host files must not leak into unit tests
    return parse_spawn_args(["-D", str(tree), *args], trusted_dirs=())


# --- the basics ---------------------------------------------------------------

def test_defaults(tree):
    spec = parse(tree)
    assert spec == ContainerSpec(directory=tree, machine="mytree")
    assert spec.effective_hostname == "mytree"
    assert (spec.boot, spec.as_pid2, spec.command, spec.quiet) == (False, False, (), False)
    assert (spec.link_journal, spec.resolv_conf, spec.timezone, spec.register) == ("no", "auto", "auto", "auto")
    assert spec.console == "interactive" and spec.kill_signal is None
    assert not spec.detach and not spec.dry_run and not spec.reboot_exit


@pytest.mark.parametrize("form", [["-D", "{t}"], ["--directory", "{t}"], ["--directory={t}"], ["-D{t}"]])
def test_directory_forms(tree, form):
    spec = parse_spawn_args([f.format(t=tree) for f in form], trusted_dirs=())
    assert spec.directory == tree


def test_relative_directory_becomes_absolute(tree, monkeypatch):
    monkeypatch.chdir(tree.parent)
    assert parse_spawn_args(["-D", "mytree"], trusted_dirs=()).directory == tree


def test_no_directory_means_the_current_one(tree, monkeypatch):
    monkeypatch.chdir(tree)
    spec = parse_spawn_args(["-q"], trusted_dirs=())
    assert spec.directory == tree and spec.machine == "mytree"


def test_no_directory_with_machine_searches_the_image_path(tree, monkeypatch):
    monkeypatch.setenv("NSDASH_IMAGE_PATH", f"{tree.parent / 'nothing'}:{tree.parent}")
    spec = parse_spawn_args(["-M", "mytree"], trusted_dirs=())
    assert spec.directory == tree
    with raises_line(UsageError, "no image named 'other'.*-D DIR"):
        parse_spawn_args(["-M", "other"], trusted_dirs=())


def test_missing_directory_is_named(tmp_path):
    with raises_line(SpecError, f"directory {tmp_path}/nope does not exist; .*-D"):
        parse_spawn_args(["-D", str(tmp_path / "nope")])


def test_host_root_only_as_ephemeral():
    with raises_line(SpecError, "host's root directory is not supported; add --ephemeral"):
        parse_spawn_args(["-D", "/", "-M", "h"], trusted_dirs=())
    assert parse_spawn_args(["-D", "/", "-x", "-M", "h"], trusted_dirs=()).ephemeral
    host = parse_spawn_args(["-D", "/", "-x"], trusted_dirs=()).machine
    assert host.startswith(os.uname().nodename.split(".")[0])


def test_file_as_directory_is_named(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    with raises_line(SpecError, f"{f} is not a directory"):
        parse_spawn_args(["-D", str(f)])


@pytest.mark.parametrize("flag,field", [("-b", "boot"), ("--boot", "boot"), ("-a", "as_pid2"),
                                        ("--as-pid2", "as_pid2"), ("-q", "quiet"), ("--quiet", "quiet"),
                                        ("--read-only", "read_only"), ("-x", "ephemeral"),
                                        ("--ephemeral", "ephemeral"), ("--private-network", "private_network"),
                                        ("-n", "network_veth"), ("--network-veth", "network_veth"),
                                        ("--detach", "detach"), ("--dry-run", "dry_run"),
                                        ("--no-new-privileges", "no_new_privileges")])
def test_flags(tree, flag, field):
    assert getattr(parse(tree, "-M", "m", flag), field) is True
    assert getattr(parse(tree), field) is False


# --- the command ----------------------------------------------------------------

def test_command_after_options(tree):
    assert parse(tree, "/bin/ls", "-l", "/").command == ("/bin/ls", "-l", "/")


def test_options_after_the_command_belong_to_it(tree):
    spec = parse(tree, "ls", "-D", "/x", "-b")
    assert spec.command == ("ls", "-D", "/x", "-b") and not spec.boot


def test_double_dash_ends_options(tree):
    assert parse(tree, "--", "-q").command == ("-q",)
    assert not parse(tree, "--", "-q").quiet
    assert parse(tree, "--", "--", "x").command == ("--", "x")


def test_combined_short_flags(tree):
    spec = parse_spawn_args(["-bqD", str(tree), "systemd.unit=rescue.target"], trusted_dirs=())
    assert spec.boot and spec.quiet and spec.directory == tree
    assert spec.command == ("systemd.unit=rescue.target",)
    spec = parse_spawn_args(["-xnjPD", str(tree)], trusted_dirs=())
    assert spec.ephemeral and spec.network_veth and spec.link_journal == "try-guest" and spec.console == "pipe"


def test_boot_and_as_pid2_conflict(tree):
    with raises_line(UsageError, "--boot and --as-pid2 may not be combined"):
        parse(tree, "-b", "-a")


def test_long_options_may_be_abbreviated_like_getopt(tree):
    assert parse(tree, "--ephem").ephemeral
    with raises_line(UsageError, "ambiguous"):
        parse(tree, "--private")
    assert parse(tree, "--private-n").private_network


# --- names ----------------------------------------------------------------------

@pytest.mark.parametrize("form", [["-M", "web-1"], ["--machine", "web-1"], ["--machine=web-1"], ["-Mweb-1"]])
def test_machine_forms(tree, form):
    assert parse(tree, *form).machine == "web-1"


def test_machine_name_cleanup_like_nspawn(tmp_path):
    d = tmp_path / "my_tree.x"
    d.mkdir()
    # systemd-nspawn 252 names this machine "mytree.x" (checked by hand)
    assert parse_spawn_args(["-D", str(d)], trusted_dirs=()).machine == "mytree.x"


def test_underivable_machine_name_names_the_fix(tmp_path):
    d = tmp_path / "___"
    d.mkdir()
    with raises_line(UsageError, "cannot derive a machine name from directory .*; pass a name with -M"):
        parse_spawn_args(["-D", str(d)], trusted_dirs=())
    assert parse_spawn_args(["-D", str(d), "-M", "ok"], trusted_dirs=()).machine == "ok"


@pytest.mark.parametrize("name", ["a_b", "-a", "a-", "a..b", ".a", "a.", "x" * 65, "a b", "ä"])
def test_invalid_machine_names(tree, name):
    with raises_line(UsageError, "invalid --machine name"):
        parse(tree, f"--machine={name}")


def test_empty_machine_means_derive(tree):
    assert parse(tree, "--machine=").machine == "mytree"


def test_ephemeral_without_machine_gets_a_random_suffix(tree):
    a, b = parse(tree, "-x").machine, parse(tree, "-x").machine
    assert a.startswith("mytree-") and len(a) == len("mytree-") + 16 and a != b
    assert parse(tree, "-x", "-M", "fixed").machine == "fixed"


def test_hostname(tree):
    spec = parse(tree, "--hostname=box.example")
    assert spec.hostname == "box.example" and spec.effective_hostname == "box.example"
    with raises_line(UsageError, "invalid --hostname"):
        parse(tree, "--hostname=a_b")


@pytest.mark.parametrize("value,expected", [
    ("0123456789abcdef0123456789ABCDEF", "0123456789abcdef0123456789abcdef"),
    ("01234567-89ab-cdef-0123-456789abcdef", "0123456789abcdef0123456789abcdef"),
])
def test_uuid(tree, value, expected):
    assert parse(tree, f"--uuid={value}").uuid == expected


@pytest.mark.parametrize("value", ["", "0", "0123456789abcdef0123456789abcdeg", "0" * 32,
                                   "01234567-89ab-cdef-0123+456789abcdef", "0123456789abcdef0123456789abcdef0"])
def test_bad_uuid(tree, value):
    with raises_line(UsageError, "--uuid"):
        parse(tree, f"--uuid={value}")


# --- execution ----------------------------------------------------------------------

def test_chdir(tree):
    assert parse(tree, "--chdir=/srv//app/").chdir == "/srv/app"
    with raises_line(UsageError, "invalid --chdir 'rel': not an absolute path"):
        parse(tree, "--chdir=rel")


def test_setenv(tree, monkeypatch):
    monkeypatch.setenv("FROM_CALLER", "v1")
    monkeypatch.delenv("NOT_SET", raising=False)
    spec = parse(tree, "-E", "A=1", "--setenv=B=x=y", "-E", "EMPTY=", "-E", "FROM_CALLER", "-E", "NOT_SET")
    # a NAME the caller lacks is set empty, as systemd-nspawn 252 does
    assert spec.setenv == (("A", "1"), ("B", "x=y"), ("EMPTY", ""), ("FROM_CALLER", "v1"), ("NOT_SET", ""))


@pytest.mark.parametrize("value", ["", "=x", "1A=x", "A-B=1", "A B=1"])
def test_bad_setenv(tree, value):
    with raises_line(UsageError, "invalid --setenv"):
        parse(tree, f"--setenv={value}")


def test_user(tree):
    assert parse(tree, "-u", "daemon").user == "daemon"
    assert parse(tree, "--user=1000").user == "1000"
    assert parse(tree, "--user=").user is None  # nspawn: empty means the default, root
    with raises_line(UsageError, "invalid --user"):
        parse(tree, "--user=a:b")


@pytest.mark.parametrize("value,expected", [
    ("SIGTERM", signal.SIGTERM), ("TERM", signal.SIGTERM), ("15", 15), ("KILL", signal.SIGKILL),
    ("SIGRTMIN+3", signal.SIGRTMIN + 3), ("RTMIN+3", signal.SIGRTMIN + 3), ("RTMIN", signal.SIGRTMIN),
    ("SIGRTMAX-1", signal.SIGRTMAX - 1), ("64", 64),
])
def test_kill_signal(tree, value, expected):
    assert parse(tree, f"--kill-signal={value}").kill_signal == int(expected)


@pytest.mark.parametrize("value", ["", "0", "65", "sigterm", "SIGFOO", "RTMIN+99", "RTMAX+1", "RTMIN+", "-1",
                                   "TERM ", "RTMIN*3", "١٥"])
def test_bad_kill_signal(tree, value):
    with raises_line(UsageError, "invalid --kill-signal"):
        parse(tree, f"--kill-signal={value}")


@pytest.mark.parametrize("value,exit_", [("restart", False), ("exit", True)])
def test_reboot(tree, value, exit_):
    assert parse(tree, f"--reboot={value}").reboot_exit is exit_


def test_bad_reboot(tree):
    with raises_line(UsageError, "invalid --reboot value 'halt'; use one of: restart, exit"):
        parse(tree, "--reboot=halt")


@pytest.mark.parametrize("value,expected", [("yes", True), ("no", False), ("on", True), ("0", False)])
def test_no_new_privileges_takes_a_boolean(tree, value, expected):
    assert parse(tree, f"--no-new-privileges={value}").no_new_privileges is expected


# --- filesystems ------------------------------------------------------------------------

def test_bind_forms(tree, tmp_path):
    src = tmp_path / "data"
    src.mkdir()
    (tree / "srv").mkdir()
    spec = parse(tree, f"--bind={src}", f"--bind={src}:/mnt", f"--bind-ro={src}:/ro:norbind",
                 f"--bind={src}:/r:rbind", "--bind=+/srv:/inner")
    assert spec.binds == (  # in command-line order
        Bind(src, str(src)), Bind(src, "/mnt"), Bind(src, "/ro", read_only=True, recursive=False),
        Bind(src, "/r", recursive=True), Bind(tree / "srv", "/inner"),
    )


def test_bind_plus_source_defaults_target_to_its_inner_path(tree):
    (tree / "srv").mkdir()
    assert parse(tree, "--bind-ro=+/srv").binds == (Bind(tree / "srv", "/srv", read_only=True),)


def test_bind_plus_source_stays_inside_the_image(tree, tmp_path):
    (tree / "srv").mkdir()
    (tree / "evil").symlink_to("/etc")  # an image's absolute symlink means its own /etc
    (tree / "etc" / "x").mkdir()
    assert parse(tree, "--bind=+/../../srv:/a").binds == (Bind(tree / "srv", "/a"),)
    assert parse(tree, "--bind=+/evil/x:/b").binds == (Bind(tree / "etc" / "x", "/b"),)


def test_bind_escaped_colons(tree, tmp_path):
    src = tmp_path / "a:b"
    src.mkdir()
    spec = parse(tree, f"--bind={tmp_path}/a\\:b:/in\\:side")
    assert spec.binds == (Bind(src, "/in:side"),)


@pytest.mark.parametrize("value,message", [
    ("x::y", "invalid --bind 'x::y': empty target; use --bind=SRC[:DST[:OPTIONS]]"),
    ("", "invalid --bind '': empty source"),
    (":", "empty target"),
    ("/etc:rel", "target 'rel' is not an absolute path"),
    ("etc", "source 'etc' is not an absolute path"),
    ("/etc:/x:bogus", "invalid --bind option 'bogus'"),
    ("/etc:/x:owneridmap", "'owneridmap' is not supported by nsdash"),
    ("/etc:/x:rbind:more", "too many ':'"),
    ("/etc\\", "lone backslash"),
])
def test_bad_binds(tree, value, message):
    with pytest.raises(UsageError) as e:
        parse(tree, f"--bind={value}")
    assert message in e.value.oneline()


def test_bind_source_must_exist(tree, tmp_path):
    with raises_line(SpecError, f"--bind-ro source {tmp_path}/gone does not exist"):
        parse(tree, f"--bind-ro={tmp_path}/gone:/x")


def test_tmpfs(tree):
    spec = parse(tree, "--tmpfs=/scratch", "--tmpfs=/t:mode=1777,size=10M", "--tmpfs=/e:")
    assert spec.tmpfs == (TmpfsMount("/scratch", "mode=0755"), TmpfsMount("/t", "mode=1777,size=10M"),
                          TmpfsMount("/e", "mode=0755"))


def test_tmpfs_escaped_path(tree):
    assert parse(tree, "--tmpfs=/a\\:b:size=1M").tmpfs == (TmpfsMount("/a:b", "size=1M"),)


@pytest.mark.parametrize("value,message", [("", "empty path"), ("rel", "not an absolute path"),
                                           (":size=1M", "empty path")])
def test_bad_tmpfs(tree, value, message):
    with raises_line(UsageError, message):
        parse(tree, f"--tmpfs={value}")


def test_inaccessible(tree):
    assert parse(tree, "--inaccessible=/etc/shadow", "--inaccessible=/srv/").inaccessible == ("/etc/shadow", "/srv")
    with raises_line(UsageError, "--inaccessible"):
        parse(tree, "--inaccessible=etc")


@pytest.mark.parametrize("mode", options.RESOLV_CONF)
def test_resolv_conf_modes(tree, mode):
    assert parse(tree, f"--resolv-conf={mode}").resolv_conf == mode


@pytest.mark.parametrize("mode", options.TIMEZONE)
def test_timezone_modes(tree, mode):
    assert parse(tree, f"--timezone={mode}").timezone == mode


@pytest.mark.parametrize("mode", options.LINK_JOURNAL)
def test_link_journal_modes(tree, mode):
    assert parse(tree, f"--link-journal={mode}").link_journal == mode


def test_j_is_try_guest(tree):
    assert parse(tree, "-j").link_journal == "try-guest"


@pytest.mark.parametrize("opt", ["--resolv-conf", "--timezone", "--link-journal", "--console"])
def test_bad_modes_list_the_choices(tree, opt):
    with raises_line(UsageError, f"invalid {opt} value 'nope'; use one of: "):
        parse(tree, f"{opt}=nope")


# --- registration, console, capabilities, users -----------------------------------------

@pytest.mark.parametrize("value,expected", [("yes", "yes"), ("no", "no"), ("auto", "auto"), ("true", "yes"),
                                            ("0", "no"), ("OFF", "no")])
def test_register(tree, value, expected):
    assert parse(tree, f"--register={value}").register == expected


@pytest.mark.parametrize("mode", options.CONSOLE)
def test_console_modes(tree, mode):
    assert parse(tree, f"--console={mode}").console == mode


@pytest.mark.parametrize("flag", ["-P", "--pipe"])
def test_pipe(tree, flag):
    assert parse(tree, flag).console == "pipe"


def test_capabilities(tree):
    spec = parse(tree, "--capability=CAP_NET_ADMIN,cap_sys_time", "--capability=12",
                 "--drop-capability=CAP_MKNOD,", "--drop-capability=CAP_AUDIT_WRITE")
    assert spec.capabilities == {"CAP_NET_ADMIN", "CAP_SYS_TIME"}
    assert spec.drop_capabilities == {"CAP_MKNOD", "CAP_AUDIT_WRITE"}
    assert parse(tree, "--capability=all").capabilities == set(CAPABILITIES)
    assert parse(tree, "--drop-capability=all").drop_capabilities == set(CAPABILITIES)


@pytest.mark.parametrize("value,message", [("", "empty capability name"), (",", "empty capability name"),
                                           ("chown", "unknown capability 'chown'"),
                                           ("CAP_NOPE", "unknown capability"), ("99", "unknown capability")])
def test_bad_capabilities(tree, value, message):
    with raises_line(UsageError, message):
        parse(tree, f"--capability={value}")


def test_private_users(tree):
    assert parse(tree, "--private-users=pick").private_users == "pick"
    assert parse(tree, "--private-users=524288:65536").private_users == "524288:65536"
    assert parse(tree, "--private-users").private_users == "yes"
    spec = parse(tree, "-U")
    assert (spec.private_users, spec.private_users_ownership) == ("pick", "auto")
    spec = parse(tree, "-U", "--private-users-ownership=chown")
    assert spec.private_users_ownership == "chown"
    with raises_line(UsageError, "private-users"):
        parse(tree, "--private-users=maybe")


# --- argparse's own errors, help ------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    (["--bogus"], "unrecognized option '--bogus'"),
    (["-Y"], "invalid option -- 'Y'"),
    (["-D"], "option requires an argument -- 'D'"),
    (["--bind"], "option '--bind' requires an argument"),
    (["--boot=yes"], "option '--boot' doesn't allow an argument"),
    (["--pr"], "option '--pr' is ambiguous; possibilities: --private-network, --private-users, --private-users-chown, --private-users-ownership"),
])
def test_getopt_errors_are_one_line_usage_errors(args, message):
    with pytest.raises(UsageError) as e:
        parse_spawn_args(args)
    line = e.value.oneline()
    assert message in line and "\n" not in line and "nsdash spawn --help" in line


def test_option_values_may_start_with_a_dash_like_getopt(tree):
    with raises_line(UsageError, "invalid --machine name '-bad'"):
        parse(tree, "-M", "-bad")
    assert parse(tree, "-E", "X=-1", "--chdir", "/-x").chdir == "/-x"


def test_short_option_value_attached(tree):
    assert parse(tree, "-Mbox", "-uroot", "-EA=1").setenv == (("A", "1"),)


def test_lone_dash_is_the_command(tree):
    assert parse(tree, "-", "x").command == ("-", "x")


def test_help_is_nspawn_style_and_says_where_nsdash_differs(capsys):
    with pytest.raises(SystemExit) as e:
        parse_spawn_args(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: nsdash spawn [OPTIONS...] [COMMAND [ARGS...]]")
    for opt in ("--directory", "--machine", "--bind-ro", "--link-journal", "--kill-signal", "-P --pipe",
                "--settings", "--reboot", "--dry-run", "--detach", "Where nsdash differs"):
        assert opt in out


def test_help_wins_over_later_errors(capsys):
    with pytest.raises(SystemExit) as e:
        parse_spawn_args(["-qh", "--bogus"])
    assert e.value.code == 0 and "usage: nsdash spawn" in capsys.readouterr().out


def test_every_issue_option_is_accepted(tree, tmp_path):
    """The option list of issue 3, all at once."""
    spec = parse(tree, "-M", "all1", "--hostname=h", "--uuid=" + "1" * 32, "-b", "--chdir=/", "-E", "A=1",
                 "-u", "root", f"--bind={tmp_path}:/a", f"--bind-ro={tmp_path}:/b", "--tmpfs=/t",
                 "--inaccessible=/i", "--read-only", "-x", "--private-network", "-n", "--link-journal=auto",
                 "--resolv-conf=copy-host", "--timezone=bind", "--register=no", "--kill-signal=SIGTERM",
                 "--console=passive", "-q", "--capability=CAP_SYS_TIME", "--drop-capability=CAP_MKNOD",
                 "--settings=no", "--reboot=exit", "--detach", "--dry-run", "--no-new-privileges=yes",
                 "--private-users=no", "arg1")
    assert spec.machine == "all1" and spec.command == ("arg1",) and spec.boot and spec.read_only
    assert spec.ephemeral and spec.private_network and spec.network_veth and spec.reboot_exit


def _bare_ext4(path):
    """A file that dissects as a bare ext4 file system (only its superblock magic)."""
    data = bytearray(64 * 1024)
    data[1080:1082] = b"\x53\xef"
    path.write_bytes(data)
    return path


def test_image_spec_names_the_machine_after_the_file_and_mounts_it_under_the_state_root(tmp_path, monkeypatch):
    monkeypatch.setenv("NSDASH_STATE_DIR", str(tmp_path / "state"))
    image = _bare_ext4(tmp_path / "web.raw")
    spec = parse_spawn_args(["-i", str(image)], trusted_dirs=())
    assert spec.image == image and spec.machine == "web" and not spec.read_only
    assert spec.directory == tmp_path / "state" / "image-root" / "web" / "root"
    image.chmod(0o444)  # what `nsdash read-only` does to a raw image: nspawn then implies --read-only
    assert parse_spawn_args(["-i", str(image)], trusted_dirs=()).read_only
    assert not parse_spawn_args(["-x", "-i", str(image)], trusted_dirs=()).read_only  # -x boots a copy


def test_machine_without_a_tree_finds_its_raw_image(tmp_path, monkeypatch):
    monkeypatch.setenv("NSDASH_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("NSDASH_IMAGE_PATH", f"{tmp_path / 'nothing'}:{tmp_path}")
    image = _bare_ext4(tmp_path / "web.raw")
    assert parse_spawn_args(["-M", "web"], trusted_dirs=()).image == image
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "usr").mkdir()
    assert parse_spawn_args(["-M", "web"], trusted_dirs=()).image is None  # a tree of that name comes first


def test_image_refusals_are_one_line(tmp_path):
    image = _bare_ext4(tmp_path / "web.raw")
    with raises_line(UsageError, "--directory= and --image= may not be combined"):
        parse_spawn_args(["-i", str(image), "-D", str(tmp_path)], trusted_dirs=())
    with raises_line(SpecError, f"--image: {tmp_path}/nope.raw does not exist"):
        parse_spawn_args(["-i", str(tmp_path / "nope.raw")], trusted_dirs=())
    with raises_line(SpecError, f"--image: {tmp_path} is a directory; boot a tree with -D"):
        parse_spawn_args(["-i", str(tmp_path)], trusted_dirs=())


@pytest.mark.parametrize("args", [["--bind=+\0"], ["--bind=+\0:/x"], ["--overlay=+\0:/x"], ["--bind-ro=/a:/b\0"]])
def test_nul_in_a_path_is_one_line(tmp_path, args):
    """Hypothesis found '+\\0' reaching the tree lookup as a ValueError; a .nspawn file or the form can hold a NUL."""
    with raises_line(UsageError, "NUL in a path"):
        parse_spawn_args(["-D", str(tmp_path), *args], trusted_dirs=())


@pytest.mark.parametrize(("option", "named"), [
    ("-n", "--network-veth"), ("--network-zone=lab", "--network-zone"), ("--network-bridge=br0", "--network-bridge"),
    ("--network-interface=eth7", "--network-interface"), ("--network-macvlan=eth7", "--network-macvlan"),
    ("--network-ipvlan=eth7", "--network-ipvlan"), ("--network-veth-extra=ve-x", "--network-veth-extra"),
])
def test_network_namespace_path_refuses_every_option_that_makes_or_moves_links(tree, option, named):
    with raises_line(UsageError, f"--network-namespace-path cannot be combined with {named}"):
        parse(tree, "--network-namespace-path=/run/netns/x", option)


def test_network_namespace_path_goes_with_private_network_as_in_nspawn_252(tree):
    """systemd-nspawn 252 takes both (checked by hand) and joins the namespace: it is private already."""
    spec = parse(tree, "--network-namespace-path=/run/netns/x", "--private-network")
    assert spec.network_namespace_path == "/run/netns/x" and spec.private_network and not spec.network_veth


def test_network_links_imply_a_private_network_and_a_zone_a_veth(tree):
    for option in ("--network-interface=eth7", "--network-macvlan=eth7", "--network-ipvlan=eth7",
                   "--network-veth-extra=ve-x"):
        spec = parse(tree, option)
        assert spec.private_network and not spec.network_veth, option
    spec = parse(tree, "--network-zone=lab")
    assert spec.network_veth and spec.private_network
    with raises_line(UsageError, "--network-bridge and --network-zone may not be combined"):
        parse(tree, "--network-zone=lab", "--network-bridge=br0")
