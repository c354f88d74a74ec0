"""Attack the system-call filter: load it in a forked child and call what it refuses;
then run real containers with --system-call-filter.

Every call is made with all-(-1) arguments, which the kernel rejects as
invalid (EINVAL/EFAULT/EBADF) when nothing filters it, so the control run
without the filter is harmless and proves EPERM comes from the filter.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import socket

import pyseccomp
import pytest
from _forked import in_child
from conftest import run_nsdash, wait_for

from nsdash.launcher import sandbox, seccomp, syscall_groups
from nsdash.launcher.plan import DEFAULT_CAPABILITIES

LIBC = ctypes.CDLL(None, use_errno=True)


def _nr(name: str) -> int:
    return pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)


def _resolvable(names):
    return {name: _nr(name) for name in names if _nr(name) >= 0}


DENIED = _resolvable(seccomp.denied_syscalls())


def _filter(caps=DEFAULT_CAPABILITIES, allow=(), deny=()) -> bytes:
    return sandbox.pack_filters(seccomp.compile_filters(caps, allow, deny))


def _call_all(numbers: dict[str, int]) -> dict[str, int]:
    res = {}
    for name, nr in numbers.items():
        ctypes.set_errno(0)
        ret = LIBC.syscall(ctypes.c_long(nr), *[ctypes.c_long(-1)] * 6)
        res[name] = ctypes.get_errno() if ret < 0 else 0
    return res


def _filtered(program: bytes, numbers: dict[str, int]) -> dict[str, int]:
    def attack():
        sandbox.install_seccomp(program)
        return _call_all(numbers)

    return in_child(attack)


def _audit_socket_errno() -> int:
    try:
        socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, seccomp.NETLINK_AUDIT).close()
        return 0
    except OSError as e:
        return e.errno or -1


def test_denied_calls_are_not_eperm_without_the_filter():
    results = in_child(lambda: _call_all(DENIED))
    assert results and all(e != errno.EPERM for e in results.values()), results


def test_filter_makes_each_known_but_unlisted_call_fail_with_eperm():
    program = _filter()

    def attack():
        sandbox.install_seccomp(program)
        return {"mode": sandbox.seccomp_mode(), "calls": _call_all(DENIED),
                "status": open("/proc/self/status").read()}

    out = in_child(attack)
    assert out["mode"] == 2
    assert "Seccomp:\t2" in out["status"] and "Seccomp_filters:\t2" in out["status"]
    wrong = {n: os.strerror(e) if e else "succeeded" for n, e in out["calls"].items() if e != errno.EPERM}
    assert wrong == {}
    # nspawn's deliberate exclusions and the capability-tied groups of caps not in the default set
    for must in ("keyctl", "add_key", "request_key", "bpf", "perf_event_open", "open_by_handle_at",
                 "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
                 "swapon", "swapoff", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
                 "acct", "quotactl", "lookup_dcookie", "fanotify_init", "iopl", "ioperm", "mlock",
                 "syslog", "pkey_alloc", "modify_ldt", "uselib", "_sysctl"):
        assert must in out["calls"], must


def _newer_than_libseccomp() -> dict[str, int]:
    """Real calls of this kernel (not ENOSYS unfiltered) that libseccomp cannot name."""
    highest = max(nr for nr in (_nr(n) for n in syscall_groups.KNOWN) if nr >= 0)
    probe = {f"nr{nr}": nr for nr in range(highest + 1, highest + 40)}
    unfiltered = in_child(lambda: _call_all(probe))
    return {name: nr for name, nr in probe.items() if unfiltered[name] != errno.ENOSYS}


def test_a_call_newer_than_the_table_fails_with_enosys_so_libc_falls_back():
    newer = _newer_than_libseccomp()
    if not newer:
        pytest.skip("this kernel has no call newer than libseccomp's table")
    out = _filtered(_filter(), newer)
    assert out == dict.fromkeys(newer, errno.ENOSYS)


def test_ordinary_calls_keep_working_under_the_filter():
    program = _filter()

    def work():
        sandbox.install_seccomp(program)
        r, w = os.pipe()
        os.write(w, b"ok")
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        _, st = os.waitpid(pid, 0)
        return {"read": os.read(r, 2).decode(), "exit": os.waitstatus_to_exitcode(st),
                "time": ctypes.CDLL(None).time(None) > 0, "uname": os.uname().sysname,
                "cwd": os.listdir("/") != []}

    assert in_child(work) == {"read": "ok", "exit": 7, "time": True, "uname": "Linux", "cwd": True}


def test_audit_netlink_socket_is_refused_and_other_netlink_is_not():
    program = _filter()

    def attack():
        before = _audit_socket_errno()
        sandbox.install_seccomp(program)
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)  # NETLINK_ROUTE still works
        s.close()
        return {"before": before, "after": _audit_socket_errno()}

    out = in_child(attack)
    assert out["before"] != errno.EAFNOSUPPORT
    assert out["after"] == errno.EAFNOSUPPORT


def _raw_socket_errno(family: int, protocol: int) -> int:
    """socket(2) straight through syscall(2), so high bits reach the filter as they are."""
    ctypes.set_errno(0)
    fd = LIBC.syscall(ctypes.c_long(_nr("socket")), ctypes.c_long(family), ctypes.c_long(socket.SOCK_RAW),
                      ctypes.c_long(protocol))
    if fd < 0:
        return ctypes.get_errno()
    os.close(fd)
    return 0


def test_audit_netlink_socket_is_refused_even_with_high_bits_set():
    """The kernel takes socket()'s family and protocol as int: bits above 32 must not slip past."""
    program = _filter()
    high = 1 << 32

    def attack():
        before = _raw_socket_errno(socket.AF_NETLINK | high, seccomp.NETLINK_AUDIT | high)
        sandbox.install_seccomp(program)
        return {"before": before,
                "family": _raw_socket_errno(socket.AF_NETLINK | high, seccomp.NETLINK_AUDIT),
                "protocol": _raw_socket_errno(socket.AF_NETLINK, seccomp.NETLINK_AUDIT | high),
                "both": _raw_socket_errno(socket.AF_NETLINK | high, seccomp.NETLINK_AUDIT | high)}

    out = in_child(attack)
    assert out["before"] == 0  # control: the kernel drops the high bits and makes the socket
    assert out["family"] == out["protocol"] == out["both"] == errno.EAFNOSUPPORT, out


@pytest.mark.parametrize("cap,call", [("CAP_SYS_TIME", "clock_settime"), ("CAP_SYS_MODULE", "init_module"),
                                      ("CAP_IPC_LOCK", "mlock"), ("CAP_SYS_PACCT", "acct")])
def test_a_kept_capability_opens_its_group(cap, call):
    out = _filtered(_filter(DEFAULT_CAPABILITIES | {cap}), {call: _nr(call), "keyctl": _nr("keyctl")})
    assert out[call] != errno.EPERM  # EINVAL/EFAULT from the kernel: the filter let it through
    assert out["keyctl"] == errno.EPERM  # the keyring stays shut whatever capability is kept


def test_a_dropped_capability_closes_its_calls():
    calls = {"ptrace": _nr("ptrace"), "process_vm_readv": _nr("process_vm_readv")}
    kept = _filtered(_filter(), calls)
    dropped = _filtered(_filter(DEFAULT_CAPABILITIES - {"CAP_SYS_PTRACE"}), calls)
    assert kept["ptrace"] != errno.EPERM
    # process_vm_readv is in @ipc, which nspawn allows whatever the capabilities
    assert dropped == {"ptrace": errno.EPERM, "process_vm_readv": kept["process_vm_readv"]}


def test_reboot_stays_allowed_with_the_default_set():
    # reboot(2) in a PID namespace is how a container reboots or powers off (CAP_SYS_BOOT is kept).
    assert "reboot" not in seccomp.denied_syscalls()
    assert "reboot" in seccomp.denied_syscalls(DEFAULT_CAPABILITIES - {"CAP_SYS_BOOT"})


def test_an_allow_list_entry_opens_a_refused_call_and_a_deny_entry_closes_an_allowed_one():
    calls = {"keyctl": _nr("keyctl"), "swapon": _nr("swapon"), "uname": _nr("uname"),
             "mount": _nr("mount"), "getpid": _nr("getpid")}
    out = _filtered(_filter(allow=("keyctl", "@swap"), deny=("uname", "@mount")), calls)
    assert out["keyctl"] != errno.EPERM and out["swapon"] != errno.EPERM
    assert out["uname"] == errno.EPERM and out["mount"] == errno.EPERM
    assert out["getpid"] == 0
    # a deny wins over an allow naming the same call, as in nspawn
    assert _filtered(_filter(allow=("keyctl",), deny=("@keyring",)), calls)["keyctl"] == errno.EPERM


def test_a_filter_refused_by_an_outer_filter_names_the_cause():
    """nsdash run under a filter that refuses prctl (inside another sandbox): the error says so,
    not a --system-call-filter value that cannot cause it."""
    program = _filter()

    def attack():
        outer = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
        outer.add_rule(pyseccomp.ERRNO(errno.EPERM), "prctl")
        outer.load()
        try:
            sandbox.install_seccomp(program)
        except sandbox.SandboxError as e:
            return {"message": e.message, "hint": e.hint}
        return None

    out = in_child(attack)
    assert out and "Operation not permitted" in out["message"]
    assert "--system-call-filter" not in out["hint"] and "outer" in out["hint"], out


def test_filter_refuses_to_install_garbage():
    for blob in (b"\x00" * 7, b"\x08\x00\x00\x00" + b"\x00" * 4 + b"\x01", b""):
        def attack(blob=blob):
            sandbox.install_seccomp(blob)

        with pytest.raises(Exception, match="malformed"):
            in_child(attack)


def _tiocsti(fd: int, request: int) -> int:
    ch = ctypes.c_char(b"x")
    ctypes.set_errno(0)
    ret = LIBC.ioctl(ctypes.c_int(fd), ctypes.c_ulong(request), ctypes.byref(ch))
    return ctypes.get_errno() if ret < 0 else 0


def test_tiocsti_injection_is_refused_even_with_high_bits_set():
    program = _filter()

    def attack():
        import pty
        import termios
        import tty

        master, slave = pty.openpty()
        tty.setraw(slave)  # a byte is readable at once, no line discipline wait
        before = _tiocsti(slave, seccomp.TIOCSTI)  # control: root may inject here
        injected = os.read(slave, 1) if before == 0 else b""
        sandbox.install_seccomp(program)
        after = _tiocsti(slave, seccomp.TIOCSTI)
        high_bits = _tiocsti(slave, seccomp.TIOCSTI | (1 << 32))
        termios.tcgetattr(slave)  # other ioctls still pass both filters
        return {"before": before, "injected": injected.decode(), "after": after, "high": high_bits}

    out = in_child(attack)
    assert out["before"] == 0 and out["injected"] == "x"
    assert out["after"] == errno.EPERM
    assert out["high"] == errno.EPERM


# ---------------------------------------------------------------- real containers

PROBE = r'''
import ctypes, json, sys
libc = ctypes.CDLL(None, use_errno=True)
out = {}
for name, nr in json.loads(sys.argv[1]).items():
    ctypes.set_errno(0)
    ret = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(-1)] * 6)
    out[name] = ctypes.get_errno() if ret < 0 else 0
print("RESULT " + json.dumps(out), flush=True)
'''

# From the policy table: outside every allowed group, whatever the default set keeps.
OUTSIDE = ("acct", "quotactl", "lookup_dcookie", "fanotify_init", "keyctl", "swapon", "mlock",
           "open_by_handle_at", "kexec_load", "settimeofday", "pkey_alloc")


def _probe_in_container(debian_cache, name, *options):
    calls = _resolvable([*OUTSIDE, "uname", "getpid", "mount"])
    r = run_nsdash("spawn", "-q", "-x", "-D", str(debian_cache), "-M", name, *options,
                   "python3", "-c", PROBE, json.dumps(calls), timeout=60)
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.replace("\r", "").splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_calls_outside_the_policy_fail_with_eperm_inside_a_container(debian_cache, machine_name):
    assert not set(OUTSIDE) - set(seccomp.denied_syscalls())  # the table says so ...
    out = _probe_in_container(debian_cache, machine_name)
    assert {n: out[n] for n in OUTSIDE if n in out} == dict.fromkeys(
        [n for n in OUTSIDE if n in out], errno.EPERM)  # ... and the kernel agrees
    assert out["getpid"] == 0 and out["uname"] != errno.EPERM


def test_system_call_filter_option_allows_and_denies_inside_a_container(debian_cache, machine_name):
    out = _probe_in_container(debian_cache, machine_name, "--system-call-filter=pkey_alloc @keyring",
                              "--system-call-filter=~@mount", "--system-call-filter=~uname")
    # opened: the kernel's own answer to the bad arguments (acct would be EPERM from the
    # kernel itself, the container lacks CAP_SYS_PACCT, so it proves nothing here)
    assert out["pkey_alloc"] != errno.EPERM and out["keyctl"] != errno.EPERM
    assert out["mount"] == errno.EPERM and out["uname"] == errno.EPERM  # closed
    assert out["quotactl"] == errno.EPERM  # the rest of the policy is untouched


def test_a_denied_group_breaks_what_needs_it_in_busybox(busybox_tree, machine_name):
    base = ("spawn", "-q", "-D", str(busybox_tree), "-M", machine_name)
    ok = run_nsdash(*base, "/bin/sh", "-c", "mount -t tmpfs t /tmp && cat /proc/1/status", timeout=30)
    assert ok.returncode == 0, ok.stderr
    assert "Seccomp_filters:\t2" in ok.stdout
    denied = run_nsdash(*base, "--system-call-filter=~@mount", "/bin/sh", "-c",
                        "mount -t tmpfs t /tmp", timeout=30)
    assert denied.returncode != 0
    assert "permission denied" in denied.stdout  # BusyBox words EPERM from mount(2) so


@pytest.mark.parametrize("value", ["", "~", "nosuchcall", "@nosuchgroup", "~read @bogus", "read\x1b[2J"])
def test_a_bad_filter_value_is_one_line_on_stderr(busybox_tree, machine_name, value):
    r = run_nsdash("spawn", "-q", "-D", str(busybox_tree), "-M", machine_name,
                   f"--system-call-filter={value}", "/bin/true", timeout=30)
    assert r.returncode != 0
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--system-call-filter" in lines[0], r.stderr
    assert "Traceback" not in r.stderr and "\x1b" not in r.stderr


def test_the_filter_lists_reach_a_detached_supervisor(busybox_tree, machine_name, detached):
    # the spec crosses to the background supervisor as JSON; the lists must survive it
    report = busybox_tree / "root" / "report"
    detached("-q", "-D", str(busybox_tree), "--system-call-filter=~@mount", "/bin/sh", "-c",
             "grep Seccomp_filters /proc/self/status > /root/.r; mount -t tmpfs t /tmp 2>>/root/.r;"
             " echo rc=$? >> /root/.r; mv /root/.r /root/report; sleep 60")
    text = wait_for(lambda: report.exists() and report.read_text(), timeout=20, what="the report")
    assert "Seccomp_filters:\t2" in text and "permission denied" in text and "rc=0" not in text, text
