"""Attack the system-call filter directly: load it in a forked child, call each denied call.

Every call is made with all-(-1) arguments, which the kernel rejects as
invalid (EINVAL/EFAULT/EBADF) when nothing filters it, so the control run
without the filter is harmless and proves EPERM comes from the filter.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket

import pyseccomp
import pytest
from _forked import in_child

from nsdash.launcher import sandbox, seccomp

LIBC = ctypes.CDLL(None, use_errno=True)


def _resolvable(names):
    out = {}
    for name in names:
        nr = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
        if nr >= 0:
            out[name] = nr
    return out


DENIED = _resolvable(seccomp.denied_syscalls())


def _call_all(numbers: dict[str, int]) -> dict[str, int]:
    res = {}
    for name, nr in numbers.items():
        ctypes.set_errno(0)
        ret = LIBC.syscall(ctypes.c_long(nr), *[ctypes.c_long(-1)] * 6)
        res[name] = ctypes.get_errno() if ret < 0 else 0
    return res


def _audit_socket_errno() -> int:
    try:
        socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, seccomp.NETLINK_AUDIT).close()
        return 0
    except OSError as e:
        return e.errno or -1


def test_denied_calls_are_not_eperm_without_the_filter():
    results = in_child(lambda: _call_all(DENIED))
    assert results and all(e != errno.EPERM for e in results.values()), results


def test_filter_makes_each_denied_call_fail_with_eperm():
    program = seccomp.compile_filter()

    def attack():
        sandbox.install_seccomp(program)
        return {"mode": sandbox.seccomp_mode(), "calls": _call_all(DENIED),
                "status": open("/proc/self/status").read()}

    out = in_child(attack)
    assert out["mode"] == 2
    assert "Seccomp:\t2" in out["status"]
    wrong = {n: os.strerror(e) if e else "succeeded" for n, e in out["calls"].items() if e != errno.EPERM}
    assert wrong == {}
    # the keyring, module, kexec, swap and clock groups are all in there
    for must in ("keyctl", "add_key", "request_key", "bpf", "perf_event_open", "open_by_handle_at",
                 "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
                 "swapon", "swapoff", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex"):
        assert must in out["calls"]


def test_audit_netlink_socket_is_refused_and_other_netlink_is_not():
    program = seccomp.compile_filter()

    def attack():
        before = _audit_socket_errno()
        sandbox.install_seccomp(program)
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)  # NETLINK_ROUTE still works
        s.close()
        return {"before": before, "after": _audit_socket_errno()}

    out = in_child(attack)
    assert out["before"] != errno.EAFNOSUPPORT
    assert out["after"] == errno.EAFNOSUPPORT


def test_ordinary_calls_keep_working_under_the_filter():
    program = seccomp.compile_filter()

    def work():
        sandbox.install_seccomp(program)
        r, w = os.pipe()
        os.write(w, b"ok")
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        _, st = os.waitpid(pid, 0)
        return {"read": os.read(r, 2).decode(), "exit": os.waitstatus_to_exitcode(st),
                "time": ctypes.CDLL(None).time(None) > 0}

    assert in_child(work) == {"read": "ok", "exit": 7, "time": True}


@pytest.mark.parametrize("cap,call", [("CAP_SYS_TIME", "clock_settime"), ("CAP_SYS_MODULE", "init_module")])
def test_an_added_capability_opens_its_group_again(cap, call):
    program = seccomp.compile_filter([cap])
    nr = DENIED[call]

    def attack():
        sandbox.install_seccomp(program)
        return _call_all({call: nr, "keyctl": DENIED["keyctl"]})

    out = in_child(attack)
    assert out[call] != errno.EPERM  # EINVAL/EFAULT from the kernel: the filter let it through
    assert out["keyctl"] == errno.EPERM  # the keyring stays shut whatever is added


def test_reboot_is_never_filtered():
    # reboot(2) in a PID namespace is how a container reboots or powers off.
    for caps in ([], ["CAP_SYS_BOOT"], ["CAP_SYS_ADMIN"]):
        assert "reboot" not in seccomp.denied_syscalls(caps)


def test_filter_refuses_to_install_garbage():
    def attack():
        sandbox.install_seccomp(b"\x00" * 7)

    with pytest.raises(Exception, match="malformed"):
        in_child(attack)


def _tiocsti(fd: int, request: int) -> int:
    ch = ctypes.c_char(b"x")
    ctypes.set_errno(0)
    ret = LIBC.ioctl(ctypes.c_int(fd), ctypes.c_ulong(request), ctypes.byref(ch))
    return ctypes.get_errno() if ret < 0 else 0


def test_tiocsti_injection_is_refused_even_with_high_bits_set():
    program = seccomp.compile_filter()

    def attack():
        import pty
        import tty

        master, slave = pty.openpty()
        tty.setraw(slave)  # a byte is readable at once, no line discipline wait
        before = _tiocsti(slave, seccomp.TIOCSTI)  # control: root may inject here
        injected = os.read(slave, 1) if before == 0 else b""
        sandbox.install_seccomp(program)
        after = _tiocsti(slave, seccomp.TIOCSTI)
        high_bits = _tiocsti(slave, seccomp.TIOCSTI | (1 << 32))
        return {"before": before, "injected": injected.decode(), "after": after, "high": high_bits}

    out = in_child(attack)
    assert out["before"] == 0 and out["injected"] == "x"
    assert out["after"] == errno.EPERM
    assert out["high"] == errno.EPERM
