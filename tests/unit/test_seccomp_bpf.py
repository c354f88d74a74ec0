"""The compiled filters, run through a small classic-BPF interpreter for each ABI.

The root tests load the filters and make real calls, but only through the
native (x86-64) entry point; here the same programs are fed the seccomp_data
an i386 or x32 call produces, so the secondary ABIs are checked too.
"""

from __future__ import annotations

import errno
import os
import struct

import pytest

from nsdash.launcher import sandbox, seccomp
from nsdash.launcher.plan import DEFAULT_CAPABILITIES

pytestmark = pytest.mark.skipif(os.uname().machine != "x86_64", reason="the ABI numbers below are x86's")

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003
X32_BIT = 0x40000000
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000

# (x86-64, i386, x32) numbers from the kernel's syscall tables
NUMBERS = {
    "read": (0, 3, 0),
    "getpid": (39, 20, 39),
    "reboot": (169, 88, 169),
    "keyctl": (250, 288, 250),
    "clock_settime": (227, 264, 227),
    "init_module": (175, 128, 175),
    "ioctl": (16, 54, 514),  # x32 has its own ioctl entry
}


def _run(program: bytes, nr: int, arch: int, args: tuple[int, ...] = (0,) * 6) -> int:
    """Evaluate a classic-BPF seccomp program on one struct seccomp_data."""
    data = struct.pack("<iIQ6Q", nr, arch, 0, *(a & 0xFFFFFFFFFFFFFFFF for a in args))
    insns = [struct.unpack_from("<HBBI", program, i) for i in range(0, len(program), 8)]
    a = x = 0
    pc = 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        cls = code & 0x07
        if code == 0x20:  # ld  [k]
            a = struct.unpack_from("<I", data, k)[0]
        elif code == 0x00:  # ld  #k
            a = k
        elif code == 0x01:  # ldx #k
            x = k
        elif code == 0x54:  # and #k
            a &= k
        elif code == 0x44:  # or  #k
            a |= k
        elif code == 0x05:  # ja
            pc += k
        elif cls == 0x05:  # conditional jumps against k or x
            operand = x if code & 0x08 else k
            op = code & 0xF0
            taken = {0x10: a == operand, 0x20: a > operand, 0x30: a >= operand,
                     0x40: bool(a & operand)}[op]
            pc += jt if taken else jf
        elif code == 0x06:  # ret #k
            return k
        elif code == 0x16:  # ret a
            return a
        else:
            raise AssertionError(f"BPF instruction {code:#x} not handled by this interpreter")


def _verdict(programs, name: str, abi: int, args=(0,) * 6) -> int:
    """The strictest answer of all filters, as the kernel combines them."""
    nr = NUMBERS[name][abi]
    arch = (AUDIT_ARCH_X86_64, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64)[abi]
    if abi == 2:
        nr |= X32_BIT
    answers = [_run(p, nr, arch, args) for p in programs]
    # lower action value = stricter (KILL < TRAP < ERRNO < ... < ALLOW); first filter installed last
    return min(reversed(answers), key=lambda r: r & 0xFFFF0000)


@pytest.fixture(scope="module")
def default():
    return sandbox.unpack_filters(sandbox.pack_filters(seccomp.compile_filters(DEFAULT_CAPABILITIES)))


@pytest.mark.parametrize("abi", [0, 1, 2], ids=["x86-64", "i386", "x32"])
def test_each_abi_gets_the_same_policy(default, abi):
    assert _verdict(default, "read", abi) == RET_ALLOW
    assert _verdict(default, "getpid", abi) == RET_ALLOW
    assert _verdict(default, "reboot", abi) == RET_ALLOW
    for refused in ("keyctl", "clock_settime", "init_module"):
        assert _verdict(default, refused, abi) == RET_ERRNO | errno.EPERM, refused


@pytest.mark.parametrize("abi", [0, 1, 2], ids=["x86-64", "i386", "x32"])
def test_tiocsti_is_refused_on_each_abi(default, abi):
    tiocsti = (0, seccomp.TIOCSTI, 0, 0, 0, 0)
    high = (0, seccomp.TIOCSTI | (1 << 32), 0, 0, 0, 0)
    tcgets = (0, 0x5401, 0, 0, 0, 0)
    assert _verdict(default, "ioctl", abi, tiocsti) == RET_ERRNO | errno.EPERM
    assert _verdict(default, "ioctl", abi, tcgets) == RET_ALLOW
    if abi == 0:
        assert _verdict(default, "ioctl", abi, high) == RET_ERRNO | errno.EPERM


@pytest.mark.parametrize("abi", [0, 1], ids=["x86-64", "i386"])
def test_an_unknown_number_gets_enosys(default, abi):
    arch = (AUDIT_ARCH_X86_64, AUDIT_ARCH_I386)[abi]
    answers = [_run(p, 999, arch) for p in default]
    assert min(answers) == RET_ERRNO | errno.ENOSYS


def test_capability_and_option_change_the_compiled_program():
    programs = seccomp.compile_filters(DEFAULT_CAPABILITIES | {"CAP_SYS_TIME"}, ("keyctl",), ("getpid",))
    for abi in (0, 1, 2):
        assert _verdict(programs, "clock_settime", abi) == RET_ALLOW
        assert _verdict(programs, "keyctl", abi) == RET_ALLOW
        assert _verdict(programs, "getpid", abi) == RET_ERRNO | errno.EPERM


def test_pack_and_unpack_round_trip_and_reject_damage():
    programs = [b"\x06\x00\x00\x00\x00\x00\xff\x7f", b"\x06" + b"\x00" * 15]
    blob = sandbox.pack_filters(programs)
    assert sandbox.unpack_filters(blob) == programs
    for bad in (b"", blob[:-1], blob + b"\x00", b"\x07\x00\x00\x00" + b"\x00" * 7, b"\x00" * 4):
        with pytest.raises(sandbox.SandboxError, match="malformed"):
            sandbox.unpack_filters(bad)
