"""Pure validators, the veth naming rule, and the property that no input to
`nsdash spawn` escapes as anything but a one-line UsageError."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nsdash.errors import UsageError
from nsdash.launcher import validate as v
from nsdash.launcher.options import parse_spawn_args
from nsdash.launcher.settings import parse as parse_settings
from nsdash.system import netlink


@pytest.mark.parametrize("name,ok", [
    ("a", True), ("web-1", True), ("a.b.c", True), ("x" * 64, True), ("1", True),
    ("", False), ("x" * 65, False), ("a_b", False), ("-a", False), ("a-", False), ("a.-b", False),
    ("a..b", False), (".a", False), ("a.", False), ("a b", False), ("ä", False), (".host", False),
])
def test_hostname_rule(name, ok):
    assert v.is_valid_hostname(name) is ok


@pytest.mark.parametrize("raw,clean", [
    ("my_tree.x", "mytree.x"), ("debian-12", "debian-12"), ("-lead", "lead"), ("a..b", "a.b"),
    ("trail-", "trail"), ("a.-b", "a.b"), ("ünï", "n"), ("x" * 80, "x" * 64), ("___", ""),
])
def test_hostname_cleanup_like_systemd(raw, clean):
    assert v.hostname_cleanup(raw) == clean


@pytest.mark.parametrize("text,expected", [("yes", True), ("Y", True), ("on", True), ("TRUE", True), ("1", True),
                                           ("t", True), ("no", False), ("n", False), ("off", False),
                                           ("false", False), ("0", False), ("f", False)])
def test_booleans_in_systemd_spellings(text, expected):
    assert v.parse_boolean(text, "--x") is expected


def test_signal_round_trip_for_every_named_signal():
    for sig in signal.Signals:
        if sig.name.startswith("SIGRT"):
            continue
        assert v.parse_signal(sig.name) == sig
        assert v.parse_signal(sig.name[3:]) == sig
        assert v.parse_signal(str(int(sig))) == sig


def test_split_escaped():
    assert v.split_escaped(r"a\:b:c\\d:") == ["a:b", "c\\d", ""]
    with pytest.raises(UsageError, match="lone backslash"):
        v.split_escaped("a\\")


# --- veth names -----------------------------------------------------------------

def test_siphash24_reference_vectors():
    key = bytes(range(16))
    # from the SipHash paper's test vectors (little-endian outputs)
    assert netlink.siphash24(b"", key) == 0x726FDB47DD0E0E31
    assert netlink.siphash24(bytes(range(15)), key) == 0xA129CA6149BE45E5


def test_veth_names_follow_nspawn():
    assert netlink.veth_host_name("web") == "ve-web"
    assert netlink.veth_host_name("abcdefghijkl") == "ve-abcdefghijkl"  # 15 bytes: fits
    # systemd-nspawn 252 named this one ve-averyverUARo on this host (checked by hand)
    assert netlink.veth_host_name("averyveryverylongname") == "ve-averyverUARo"
    assert netlink.veth_altname("averyveryverylongname") == "ve-averyveryverylongname"
    assert netlink.veth_altname("web") is None


def test_parse_net_dev():
    text = ("Inter-|   Receive                                                |  Transmit\n"
            " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop\n"
            "    lo:     100       2    0    0    0     0          0         0      100       2    0    0"
            "    0     0       0          0\n"
            " host0: 5000 40 0 0 0 0 0 0 7000 50 0 0 0 0 0 0\n")
    assert netlink.parse_net_dev(text) == {"lo": netlink.LinkCounters(100, 2, 100, 2),
                                           "host0": netlink.LinkCounters(5000, 40, 7000, 50)}


# --- nothing escapes as another exception ------------------------------------------

VALUE_OPTIONS = ["--directory", "--machine", "--hostname", "--uuid", "--chdir", "--setenv", "--user", "--bind",
                 "--bind-ro", "--tmpfs", "--inaccessible", "--link-journal", "--resolv-conf", "--timezone",
                 "--register", "--kill-signal", "--console", "--capability", "--drop-capability", "--settings",
                 "--reboot", "--no-new-privileges", "--private-users", "--private-users-ownership"]

_TREE: list[Path] = []


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("prop") / "tree"
    (d / "usr").mkdir(parents=True)
    return d


garbage = st.one_of(st.just(""), st.text(max_size=40),
                    st.text(alphabet=":\\+/,=.-_ aA0\t", max_size=20),
                    st.sampled_from(["/", "+", ":", "\\", "::", "all", "-x", "--", "\udcff", "١", "²"]))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(VALUE_OPTIONS), value=garbage)
def test_garbage_values_are_usage_errors_or_valid(tree, option, value):
    argv = ["-D", str(tree), f"{option}={value}"] if option != "--directory" else [f"--directory={value}"]
    try:
        spec = parse_spawn_args(argv, trusted_dirs=())
    except UsageError as e:
        assert e.message and "\n" not in e.oneline()
    else:
        assert spec.machine and spec.directory.is_absolute()


@pytest.mark.parametrize("option", [o for o in VALUE_OPTIONS if o not in ("--machine", "--user")])
def test_empty_values_are_usage_errors(tree, option):
    argv = ["-D", str(tree), f"{option}="] if option != "--directory" else ["--directory="]
    with pytest.raises(UsageError):
        parse_spawn_args(argv, trusted_dirs=())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=st.lists(st.one_of(st.sampled_from(["-b", "-a", "-D", "-M", "-E", "-u", "-x", "-n", "-j", "-P", "-q",
                                                "-U", "--", "-bD", "--bind", "--tmpfs", "-h"]),
                               garbage), max_size=6))
def test_random_command_lines(tree, argv):
    try:
        parse_spawn_args(["-D", str(tree), *argv], trusted_dirs=())
    except UsageError as e:
        assert "\n" not in e.oneline()
    except SystemExit as e:  # -h (alone, bundled or as --help's prefix) prints the help and exits 0,
        # and so does --version or a prefix of it (getopt_long takes unambiguous prefixes too)
        assert e.code == 0 and any((a.startswith("-") and "h" in a)
                                   or (len(a) > 2 and "--version".startswith(a.partition("=")[0])) for a in argv)


@settings(max_examples=300, deadline=None)
@given(section=st.sampled_from(["Exec", "Files", "Network", "Other"]),
       key=st.sampled_from(["Boot", "ProcessTwo", "Parameters", "Environment", "User", "WorkingDirectory",
                            "Hostname", "KillSignal", "Capability", "DropCapability", "PrivateUsers",
                            "NoNewPrivileges", "ReadOnly", "Volatile", "Bind", "BindReadOnly",
                            "TemporaryFileSystem", "Inaccessible", "PrivateUsersOwnership", "Private",
                            "VirtualEthernet"]),
       value=garbage.filter(lambda s: "\n" not in s and "\r" not in s))
def test_garbage_settings_are_usage_errors_or_valid(section, key, value):
    try:
        parse_settings(f"[{section}]\n{key}={value}\n", "g.nspawn")
    except UsageError as e:
        assert e.message.startswith("g.nspawn:2: ")


@pytest.mark.parametrize("spelling", ["/", "//", "/./", "/usr/..", "///.//", "{tmp}/rootlink", "{tmp}/rootlink/"])
def test_the_host_root_is_refused_however_spelled(spelling, tmp_path):
    from nsdash.errors import SpecError
    from nsdash.launcher.options import parse_spawn_args
    from nsdash.launcher.validate import is_host_root

    (tmp_path / "rootlink").symlink_to("/")
    path = spelling.format(tmp=tmp_path)
    assert is_host_root(path)
    with pytest.raises(SpecError, match="host's root directory is not supported"):
        parse_spawn_args(["-D", path, "-M", "h"], trusted_dirs=())
    assert parse_spawn_args(["-D", path, "-x", "-M", "h"], trusted_dirs=()).ephemeral
    assert not is_host_root(tmp_path) and not is_host_root("/usr")


def test_every_route_to_a_plan_refuses_the_host_root(tmp_path):
    # start and the dashboard's form build specs without the command line: the plan checks too
    from nsdash.errors import SpecError
    from nsdash.launcher.plan import build_plan
    from nsdash.launcher.spec import ContainerSpec

    (tmp_path / "rootlink").symlink_to("/")
    for path in (Path("//"), tmp_path / "rootlink"):
        with pytest.raises(SpecError, match="host's root directory is not supported"):
            build_plan(ContainerSpec(directory=path, machine="h"), state_dir=str(tmp_path / "state"))


@pytest.mark.parametrize("value,ok", [
    ("0", True), ("1000", True), ("65534", True), ("65536", True), ("4294967294", True), ("www-data", True),
    ("65535", False), ("4294967295", False), ("99999999999", False), ("-1", False), ("a:b", False),
])
def test_user_uids_are_systemds_valid_ones(value, ok):
    """-u UID past 32 bits reached PID 1's setgid(2) ("gid is less than minimum", no fix named)."""
    if ok:
        assert v.parse_user(value) == value
    else:
        with pytest.raises(UsageError):
            v.parse_user(value)
