""".nspawn settings files: parsing, where they are found, trust, and how they
merge with the command line (systemd.nspawn(5) and nspawn's settings mask)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from nsdash.errors import UsageError
from nsdash.launcher import settings
from nsdash.launcher.options import parse_spawn_args
from nsdash.launcher.spec import Bind, TmpfsMount

FULL = """\
# a comment
; another
[Exec]
Boot=yes
Parameters=systemd.unit=multi-user.target "quoted arg"
Environment=A=1 "B=two words"
Environment=C=3
User=daemon
WorkingDirectory=/srv
Hostname=box
KillSignal=SIGTERM
Capability=CAP_NET_ADMIN,CAP_SYS_TIME
DropCapability=CAP_MKNOD
PrivateUsers=pick
NoNewPrivileges=yes
UnknownKey=ignored

[Files]
ReadOnly=true
Bind={src}:/mnt
BindReadOnly={src}:/ro:norbind
TemporaryFileSystem=/scratch:size=1M
Inaccessible=/etc/shadow
PrivateUsersOwnership=chown

[Network]
Private=yes
VirtualEthernet=yes

[Unknown]
Whatever=1
"""


@pytest.fixture
def images(tmp_path) -> Path:
    """An image directory like /var/lib/machines with one tree, 'box1'."""
    base = tmp_path / "machines"
    (base / "box1" / "usr").mkdir(parents=True)
    return base


@pytest.fixture
def src(tmp_path) -> Path:
    d = tmp_path / "src"
    d.mkdir()
    return d


def test_parse_everything(src):
    s = settings.parse(FULL.format(src=src), "box1.nspawn")
    v = s.values
    assert v["boot"] is True
    assert v["command"] == ["systemd.unit=multi-user.target", "quoted arg"]
    assert v["setenv"] == [("A", "1"), ("B", "two words"), ("C", "3")]
    assert (v["user"], v["chdir"], v["hostname"]) == ("daemon", "/srv", "box")
    assert v["kill_signal"] == signal.SIGTERM
    assert v["capabilities"] == {"CAP_NET_ADMIN", "CAP_SYS_TIME"} and v["drop_capabilities"] == {"CAP_MKNOD"}
    assert (v["private_users"], v["no_new_privileges"], v["read_only"]) == ("pick", True, True)
    assert v["bind_specs"] == [(f"{src}:/mnt", False, "Bind="), (f"{src}:/ro:norbind", True, "BindReadOnly=")]
    assert v["tmpfs"] == [TmpfsMount("/scratch", "size=1M")]
    assert v["inaccessible"] == ["/etc/shadow"]
    assert v["private_users_ownership"] == "chown"
    assert (v["private_network"], v["network_veth"]) == (True, True)


def test_process_two_and_empty_assignments_reset_lists():
    v = settings.parse("[Exec]\nProcessTwo=yes\nParameters=a b\nParameters=\nEnvironment=X=1\nEnvironment=\n").values
    assert v["as_pid2"] is True and v["command"] == [] and v["setenv"] == []


def test_continuation_lines_join_with_a_space():
    v = settings.parse("[Exec]\nParameters=one \\\n  two\\\nthree\n# c \\\nBoot=yes\n").values
    assert v["command"] == ["one", "two", "three"] and v["boot"] is True


@pytest.mark.parametrize("value,expected", [("overlay", True), ("no", None), ("false", None)])
def test_volatile_maps_to_ephemeral(value, expected):
    assert settings.parse(f"[Files]\nVolatile={value}\n").values.get("ephemeral") is expected


@pytest.mark.parametrize("value,mode", [("yes", "yes"), ("state", "state"), ("no", "no")])
def test_volatile_modes(value, mode):
    assert settings.parse(f"[Files]\nVolatile={value}\n").values["volatile"] == mode


def test_bad_volatile_is_an_error():
    with pytest.raises(UsageError, match="invalid Volatile= value"):
        settings.parse("[Files]\nVolatile=sometimes\n")


@pytest.mark.parametrize("text,where", [
    ("[Exec]\nBoot=perhaps\n", "f.nspawn:2: invalid Boot= value"),
    ("[Exec]\nKillSignal=NOPE\n", "f.nspawn:2: invalid KillSignal="),
    ("[Exec]\nEnvironment=NOEQUALS\n", "f.nspawn:2: invalid Environment= assignment"),
    ("[Exec]\nParameters=\"unterminated\n", "f.nspawn:2: invalid Parameters="),
    ("[Exec]\nHostname=a_b\n", "f.nspawn:2: invalid Hostname="),
    ("[Exec]\nWorkingDirectory=rel\n", "f.nspawn:2: invalid WorkingDirectory="),
    ("[Exec]\nCapability=nope\n", "f.nspawn:2: unknown capability"),
    ("[Files]\nBind=\n", "f.nspawn:2: empty Bind="),
    ("[Files]\nTemporaryFileSystem=rel\n", "f.nspawn:2: invalid TemporaryFileSystem="),
    ("[Network]\nPrivate=2\n", "f.nspawn:2: invalid Private="),
    ("[Exec]\njust text\n", "f.nspawn:2: expected KEY=VALUE"),
])
def test_bad_files_name_file_and_line(text, where):
    with pytest.raises(UsageError) as e:
        settings.parse(text, "f.nspawn")
    assert e.value.oneline().startswith(where)


# --- discovery and trust -----------------------------------------------------

def test_found_in_trusted_dirs_first(tmp_path, images):
    etc, run = tmp_path / "etc", tmp_path / "run"
    etc.mkdir()
    run.mkdir()
    (images / "box1.nspawn").write_text("")
    assert settings.find("box1", images / "box1", (str(etc), str(run))) == (str(images / "box1.nspawn"), False)
    (run / "box1.nspawn").write_text("")
    assert settings.find("box1", images / "box1", (str(etc), str(run))) == (str(run / "box1.nspawn"), True)
    (etc / "box1.nspawn").write_text("")
    assert settings.find("box1", images / "box1", (str(etc), str(run))) == (str(etc / "box1.nspawn"), True)
    assert settings.find("other", images / "box1", (str(etc), str(run))) is None


def _spawn(images: Path, *args: str, trusted: tuple[str, ...] = ()):
    return parse_spawn_args(["-D", str(images / "box1"), *args], trusted_dirs=trusted)


def test_untrusted_file_next_to_the_image_cannot_grant_privileges(images, src):
    (images / "box1.nspawn").write_text(FULL.format(src=src))
    spec = _spawn(images)
    # granted privileges are ignored ...
    assert spec.capabilities == frozenset() and spec.binds == () and spec.tmpfs == () and spec.inaccessible == ()
    assert not spec.private_network and not spec.network_veth
    # ... the rest applies
    assert spec.boot and spec.command == ("systemd.unit=multi-user.target", "quoted arg")
    assert spec.drop_capabilities == {"CAP_MKNOD"} and spec.read_only and spec.user == "daemon"
    assert spec.effective_hostname == "box" and spec.kill_signal == signal.SIGTERM
    assert spec.setenv == (("A", "1"), ("B", "two words"), ("C", "3"))


def test_settings_trusted_makes_the_local_file_count_fully(images, src):
    (images / "box1.nspawn").write_text(FULL.format(src=src))
    spec = _spawn(images, "--settings=trusted")
    assert spec.capabilities == {"CAP_NET_ADMIN", "CAP_SYS_TIME"}
    assert spec.binds == (Bind(src, "/mnt"), Bind(src, "/ro", read_only=True, recursive=False))
    assert spec.tmpfs == (TmpfsMount("/scratch", "size=1M"),) and spec.inaccessible == ("/etc/shadow",)
    assert spec.private_network and spec.network_veth


def test_file_in_a_trusted_dir_counts_fully(tmp_path, images, src):
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "box1.nspawn").write_text(FULL.format(src=src))
    spec = _spawn(images, trusted=(str(etc),))
    assert spec.capabilities == {"CAP_NET_ADMIN", "CAP_SYS_TIME"} and spec.network_veth and len(spec.binds) == 2


def test_settings_no_ignores_the_file(images, src):
    (images / "box1.nspawn").write_text(FULL.format(src=src))
    spec = _spawn(images, "--settings=no")
    assert not spec.boot and spec.command == () and not spec.read_only


def test_file_found_by_the_machine_name(images):
    (images / "other.nspawn").write_text("[Exec]\nBoot=yes\n")
    assert _spawn(images, "-M", "other").boot
    assert not _spawn(images).boot


def test_command_line_wins_group_by_group(tmp_path, images, src):
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "box1.nspawn").write_text(FULL.format(src=src))
    spec = _spawn(images, "--capability=CAP_SYS_ADMIN", f"--bind={src}:/cli", "-E", "Z=9",
                  "--kill-signal=SIGINT", "--hostname=cli", "/bin/sh", trusted=(str(etc),))
    # a command on the command line masks Boot= and Parameters= together (SETTING_START_MODE)
    assert spec.command == ("/bin/sh",) and not spec.boot
    # --capability masks Capability= and DropCapability=
    assert spec.capabilities == {"CAP_SYS_ADMIN"} and spec.drop_capabilities == frozenset()
    # --bind masks every custom mount of the file
    assert spec.binds == (Bind(src, "/cli"),) and spec.tmpfs == () and spec.inaccessible == ()
    assert spec.setenv == (("Z", "9"),) and spec.kill_signal == signal.SIGINT and spec.hostname == "cli"
    assert spec.network_veth and spec.read_only  # untouched groups still come from the file


def test_settings_override_lets_the_file_win(tmp_path, images, src):
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "box1.nspawn").write_text("[Exec]\nHostname=fromfile\nBoot=yes\n")
    spec = _spawn(images, "--settings=override", "--hostname=cli", "-a", "--read-only", "/bin/sh",
                  trusted=(str(etc),))
    assert spec.hostname == "fromfile" and spec.boot and not spec.as_pid2 and spec.command == ()
    assert spec.read_only


def test_bad_settings_file_is_one_line(images):
    (images / "box1.nspawn").write_text("[Exec]\nBoot=maybe\n")
    with pytest.raises(UsageError) as e:
        _spawn(images)
    assert e.value.oneline() == (f"{images}/box1.nspawn:2: invalid Boot= value 'maybe'; "
                                 "use yes or no (or true/false, on/off, 1/0)")


def test_unreadable_settings_file(images):
    (images / "box1.nspawn").mkdir()  # a directory is not a settings file: ignored, as nspawn's fopen fails
    assert not _spawn(images).boot
    (images / "box1.nspawn").rmdir()
    (images / "box1.nspawn").write_bytes(b"[Exec]\nBoot=\xff\n")
    with pytest.raises(UsageError, match="cannot read settings file"):
        _spawn(images)


NETWORK_KEYS = """\
[Network]
Zone=lab
Port=8080
Port=udp:5353:53
Interface=eth7
MACVLAN=eth8
IPVLAN=eth9
VirtualEthernetExtra=ve-x:inner0
VirtualEthernetExtra=ve-y
"""


def test_every_network_key_of_a_trusted_file_reaches_the_spec(tmp_path, images):
    """[Network]'s keys set what their options set, with the options' implications (a zone
    is a veth, links of its own a private network) and normal forms (tcp:8080:8080)."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "box1.nspawn").write_text(NETWORK_KEYS)
    spec = _spawn(images, trusted=(str(etc),))
    assert spec.network_zone == "lab" and spec.network_veth and spec.private_network
    assert spec.port == ("tcp:8080:8080", "udp:5353:53")
    assert (spec.network_interface, spec.network_macvlan, spec.network_ipvlan) == (("eth7",), ("eth8",), ("eth9",))
    assert spec.network_veth_extra == ("ve-x:inner0", "ve-y:ve-y")
    # Bridge= is the zone's alternative (the two may not be combined, in a file as on the command line).
    (etc / "box1.nspawn").write_text("[Network]\nBridge=br0\nPort=80\n")
    spec = _spawn(images, trusted=(str(etc),))
    assert spec.network_bridge == "br0" and spec.network_veth and spec.port == ("tcp:80:80",)


def test_network_options_on_the_command_line_mask_the_file_s_network_keys(tmp_path, images):
    """As nspawn's settings mask: a networking option given overrides the file's networking
    keys together; ports are a group of their own (nspawn's SETTING_EXPOSE_PORTS), so -n
    keeps the file's Port= and -p keeps its Zone=."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "box1.nspawn").write_text(NETWORK_KEYS)
    spec = _spawn(images, "-n", "-p", "9090", trusted=(str(etc),))
    assert spec.network_veth and spec.port == ("tcp:9090:9090",)
    assert spec.network_zone is None and spec.network_interface == () and spec.network_veth_extra == ()
    spec = _spawn(images, "-n", trusted=(str(etc),))
    assert spec.network_zone is None and spec.port == ("tcp:8080:8080", "udp:5353:53")
    spec = _spawn(images, "-p", "9090", trusted=(str(etc),))
    assert spec.network_zone == "lab" and spec.network_interface == ("eth7",) and spec.port == ("tcp:9090:9090",)


def test_an_untrusted_file_s_network_section_is_ignored(images):
    (images / "box1.nspawn").write_text(NETWORK_KEYS)
    spec = _spawn(images)
    assert not spec.network_veth and spec.port == () and spec.network_zone is None and spec.network_interface == ()
