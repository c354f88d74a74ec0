"""The system-call policy as pure table logic: groups, capability-tied groups,
--system-call-filter / SystemCallFilter= parsing and how the lists combine."""

from __future__ import annotations

from pathlib import Path

import pytest

from nsdash.errors import UsageError
from nsdash.launcher import settings
from nsdash.launcher import syscall_groups as g
from nsdash.launcher.options import merge_layers, parse_args, parse_spawn_args
from nsdash.launcher.plan import DEFAULT_CAPABILITIES
from nsdash.launcher.validate import CAPABILITIES

ALL_CAPS = frozenset(CAPABILITIES)


def test_every_name_in_the_tables_is_a_known_call_or_group():
    for group, members in g.GROUPS.items():
        for item in members:
            assert item in g.GROUPS if item.startswith("@") else item in g.KNOWN, (group, item)
    for item in (*g.CONTAINER_GROUPS, *g.CONTAINER_CALLS, *g.REFUSED,
                 *(i for items in g.BY_CAPABILITY.values() for i in items)):
        assert g.check_name(item) is None, item
    assert set(g.BY_CAPABILITY) <= ALL_CAPS


def test_nested_groups_expand_to_their_members():
    service = g.expand("@system-service")
    assert g.expand("@default") | g.expand("@keyring") <= service
    assert {"swapon", "reboot", "kexec_load", "settimeofday", "chown"} <= g.expand("@privileged")
    assert g.expand("@known") == g.KNOWN
    with pytest.raises(KeyError):
        g.expand("no_such_call")


def test_default_policy_is_nspawns():
    allowed = g.allowed_calls(DEFAULT_CAPABILITIES)
    # what a booting systemd, a shell and ordinary daemons need
    for call in ("execve", "clone3", "mount", "pivot_root", "setns", "unshare", "sethostname",
                 "ioctl", "socket", "bind", "io_uring_setup", "epoll_wait", "timerfd_create",
                 "chown", "setresuid", "capset", "prctl", "seccomp", "reboot", "ptrace", "vhangup",
                 "name_to_handle_at", "memfd_create", "process_vm_readv", "sched_setaffinity"):
        assert call in allowed, call
    # outside every allowed group unless a capability outside the default set is kept
    for call in ("settimeofday", "clock_settime", "init_module", "iopl", "mlock", "acct", "syslog"):
        assert call not in allowed, call


def test_refused_groups_stay_refused_whatever_capability_is_kept():
    allowed = g.allowed_calls(ALL_CAPS)
    for item in g.REFUSED:
        assert not g.expand(item) & allowed, item
    assert {"keyctl", "bpf", "perf_event_open", "open_by_handle_at", "swapon", "kexec_load",
            "quotactl", "fanotify_init", "lookup_dcookie"}.isdisjoint(allowed)


@pytest.mark.parametrize("cap,calls", [
    ("CAP_SYS_TIME", {"settimeofday", "clock_settime", "adjtimex"}),
    ("CAP_SYS_MODULE", {"init_module", "finit_module", "delete_module"}),
    ("CAP_SYS_RAWIO", {"iopl", "ioperm"}),
    ("CAP_IPC_LOCK", {"mlock", "mlockall"}),
    ("CAP_SYS_PACCT", {"acct"}),
    ("CAP_SYSLOG", {"syslog"}),
])
def test_a_kept_capability_opens_exactly_its_group(cap, calls):
    without = g.allowed_calls(DEFAULT_CAPABILITIES)
    with_cap = g.allowed_calls(DEFAULT_CAPABILITIES | {cap})
    assert calls <= with_cap - without
    assert with_cap - without == frozenset().union(*(g.expand(i) for i in g.BY_CAPABILITY[cap]))


@pytest.mark.parametrize("cap,call", [("CAP_SYS_BOOT", "reboot"), ("CAP_SYS_PTRACE", "ptrace"),
                                      ("CAP_SYS_TTY_CONFIG", "vhangup")])
def test_a_dropped_default_capability_closes_its_call(cap, call):
    assert call in g.allowed_calls(DEFAULT_CAPABILITIES)
    assert call not in g.allowed_calls(DEFAULT_CAPABILITIES - {cap})


def test_allow_adds_and_deny_removes_and_deny_wins():
    allowed = g.allowed_calls(DEFAULT_CAPABILITIES, allow=("keyctl", "@swap"), deny=("@mount", "uname"))
    assert {"keyctl", "swapon", "swapoff"} <= allowed
    assert not {"mount", "umount2", "pivot_root", "uname"} & allowed
    assert "keyctl" not in g.allowed_calls(DEFAULT_CAPABILITIES, allow=("keyctl",), deny=("@keyring",))
    # a deny-list also removes a capability-tied call
    assert "reboot" not in g.allowed_calls(DEFAULT_CAPABILITIES, deny=("reboot",))


# ---------------------------------------------------------------- the option

@pytest.fixture
def tree(tmp_path) -> Path:
    d = tmp_path / "box"
    (d / "etc").mkdir(parents=True)
    return d


def test_option_uses_add_up_into_allow_and_deny_lists(tree):
    spec = parse_spawn_args(["-D", str(tree), "--system-call-filter=keyctl  @swap",
                             "--system-call-filter=~@mount uname", "--system-call-filter=acct"],
                            trusted_dirs=())
    assert spec.syscall_allow == ("keyctl", "@swap", "acct")
    assert spec.syscall_deny == ("@mount", "uname")


@pytest.mark.parametrize("value,message", [
    ("", "no system call named"), ("~", "no system call named"), ("   ", "no system call named"),
    ("open2", "'open2' is not a known system call"), ("@mounts", "'@mounts' is not a system-call group"),
    ("~read ~write", "'~write' is not a known"),
])
def test_bad_values_are_one_line_errors(value, message):
    with pytest.raises(UsageError) as e:
        parse_args(["--system-call-filter", value])
    line = e.value.oneline()
    assert "\n" not in line and message in line and "--system-call-filter" in line


def test_settings_file_lines_add_up_and_an_empty_one_resets():
    text = "[Exec]\nSystemCallFilter=keyctl\nSystemCallFilter=~@mount\nSystemCallFilter=@swap\n"
    values = settings.parse(text).values
    assert values["syscall_allow"] == ("keyctl", "@swap") and values["syscall_deny"] == ("@mount",)
    values = settings.parse(text + "SystemCallFilter=\nSystemCallFilter=~uname\n").values
    assert values["syscall_allow"] == () and values["syscall_deny"] == ("uname",)
    with pytest.raises(UsageError, match=r"<settings>:2: invalid SystemCallFilter=: 'nope'"):
        settings.parse("[Exec]\nSystemCallFilter=nope\n")


def test_an_untrusted_file_may_deny_but_not_allow():
    parsed = settings.parse("[Exec]\nSystemCallFilter=keyctl\nSystemCallFilter=~uname\n")
    kept = settings.restrict(parsed, trusted=False).values
    assert "syscall_allow" not in kept and kept["syscall_deny"] == ("uname",)
    assert settings.restrict(parsed, trusted=True).values["syscall_allow"] == ("keyctl",)


def test_the_command_line_masks_the_files_lists_as_one_setting():
    file_values = {"syscall_allow": ("keyctl",), "syscall_deny": ("uname",)}
    merged = merge_layers(file_values, {"syscall_deny": ("@mount",)})
    assert "syscall_allow" not in merged and merged["syscall_deny"] == ("@mount",)


# ---------------------------------------------------------------- the plan

def _plan(tmp_path: Path, **kw):
    from nsdash.launcher.plan import build_plan
    from nsdash.launcher.spec import ContainerSpec

    t = tmp_path / "tree"
    for d in ("usr/bin", "etc", "root"):
        (t / d).mkdir(parents=True, exist_ok=True)
    (t / "usr/bin/true").write_text("#!/bin/sh\n")
    (t / "usr/bin/true").chmod(0o755)
    (t / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    host = tmp_path / "host"
    (host / "etc").mkdir(parents=True, exist_ok=True)
    spec = ContainerSpec(directory=t, machine="box", command=("/usr/bin/true",), **kw)
    return build_plan(spec, state_dir=str(host / "state"), host_root=str(host), host_term="xterm")


def test_the_plan_carries_both_filters_compiled_for_its_bounding_set(tmp_path):
    from nsdash.launcher import sandbox

    default = _plan(tmp_path)
    assert len(sandbox.unpack_filters(default.hardening.seccomp)) == 2  # the guard, then the allow-list
    assert "syscalls:     nspawn's allow-list\n" in default.describe()
    no_boot = _plan(tmp_path, drop_capabilities=frozenset({"CAP_SYS_BOOT"}))
    assert no_boot.hardening.seccomp != default.hardening.seccomp  # reboot left the allow-list
    filtered = _plan(tmp_path, syscall_allow=("keyctl",), syscall_deny=("@mount",))
    assert filtered.hardening.seccomp != default.hardening.seccomp
    assert "syscalls:     nspawn's allow-list +keyctl -@mount\n" in filtered.describe()
