"""bpf(2) through ctypes: eBPF instruction encoding, program load, cgroup attach and query.

Only what a cgroup device filter needs.  Constants and structure offsets are
those of <linux/bpf.h>; each wrapper raises OSError on failure and holds no
policy.  Encoding an instruction is pure; only the calls below it touch the
kernel.
"""

from __future__ import annotations

import ctypes
import os
import struct

from nsdash.system.frozen import Frozen
from nsdash.system.syscalls import _libc

# bpf(2) commands
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_QUERY = 16

BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6  # attach type
BPF_F_ALLOW_OVERRIDE = 1
BPF_F_ALLOW_MULTI = 2

# struct bpf_cgroup_dev_ctx: access_type = (BPF_DEVCG_ACC_* << 16) | BPF_DEVCG_DEV_*, then major, minor
BPF_DEVCG_ACC_MKNOD = 1
BPF_DEVCG_ACC_READ = 2
BPF_DEVCG_ACC_WRITE = 4
BPF_DEVCG_DEV_BLOCK = 1
BPF_DEVCG_DEV_CHAR = 2
DEV_CTX_ACCESS_TYPE = 0
DEV_CTX_MAJOR = 4
DEV_CTX_MINOR = 8

# instruction classes, sizes, modes, operations, sources
BPF_LDX = 0x01
BPF_ALU = 0x04
BPF_JMP = 0x05
BPF_ALU64 = 0x07
BPF_W = 0x00
BPF_MEM = 0x60
BPF_K = 0x00
BPF_X = 0x08
BPF_AND = 0x50
BPF_RSH = 0x70
BPF_MOV = 0xB0
BPF_JA = 0x00
BPF_JEQ = 0x10
BPF_JNE = 0x50
BPF_EXIT = 0x90

# The bpf syscall predates the unified syscall table: its number differs per architecture.
_SYS_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "i686": 357, "armv7l": 386,
            "ppc64le": 361, "s390x": 351}

INSN_SIZE = 8


class Insn(Frozen):
    """One eBPF instruction: (code, dst, src, off, imm), as struct bpf_insn holds it."""

    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    def encode(self) -> bytes:
        # little-endian hosts: dst_reg is the low nibble of the second byte
        return struct.pack("<BBhi", self.code, (self.src << 4) | self.dst, self.off, self.imm)


# Builders for the few instructions a device filter uses (names as in the kernel's filter.h).
def ldx_w(dst: int, src: int, off: int) -> Insn:
    return Insn(BPF_LDX | BPF_W | BPF_MEM, dst, src, off)


def alu64_imm(op: int, dst: int, imm: int) -> Insn:
    return Insn(BPF_ALU64 | op | BPF_K, dst, 0, 0, imm)


def mov64_reg(dst: int, src: int) -> Insn:
    return Insn(BPF_ALU64 | BPF_MOV | BPF_X, dst, src)


def jmp_imm(op: int, dst: int, imm: int, off: int) -> Insn:
    return Insn(BPF_JMP | op | BPF_K, dst, 0, off, imm)


def exit_insn() -> Insn:
    return Insn(BPF_JMP | BPF_EXIT)


def encode(program: list[Insn] | tuple[Insn, ...]) -> bytes:
    return b"".join(i.encode() for i in program)


# ---- the system calls --------------------------------------------------------

def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char], what: str) -> int:
    nr = _SYS_BPF.get(os.uname().machine)
    if nr is None:
        raise OSError(38, f"{what}: bpf(2) number unknown on {os.uname().machine}")  # ENOSYS
    ret = _libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), attr, ctypes.c_uint(len(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return int(ret)


class VerifierError(OSError):
    """The kernel refused a program; .log holds the verifier's explanation."""

    def __init__(self, errno_: int, message: str, log: str) -> None:
        super().__init__(errno_, message)
        self.log = log


def prog_load(prog_type: int, program: list[Insn] | tuple[Insn, ...], *, name: str = "",
              license_: str = "GPL", log_size: int = 1 << 16) -> int:
    """BPF_PROG_LOAD; returns the program's fd (close-on-exec, as every bpf fd).

    The first attempt passes no log buffer (the verifier is quicker without);
    a refusal is retried with one so the error carries the verifier's reason.
    """
    insns = ctypes.create_string_buffer(encode(program))
    lic = ctypes.create_string_buffer(license_.encode())
    raw_name = name.encode()[:15]

    def attempt(log: ctypes.Array[ctypes.c_char] | None) -> int:
        attr = ctypes.create_string_buffer(72)  # up to expected_attach_type; the kernel zeroes the rest
        struct.pack_into("<IIQQ", attr, 0, prog_type, len(program), ctypes.addressof(insns),
                         ctypes.addressof(lic))
        if log is not None:
            struct.pack_into("<IIQ", attr, 24, 1, len(log), ctypes.addressof(log))
        struct.pack_into("16s", attr, 48, raw_name)
        return _bpf(BPF_PROG_LOAD, attr, "bpf(BPF_PROG_LOAD)")

    try:
        return attempt(None)
    except OSError as first:
        if first.errno not in (13, 22):  # EACCES, EINVAL: what the verifier answers
            raise
        log = ctypes.create_string_buffer(log_size)
        try:
            return attempt(log)
        except OSError as e:
            text = log.value.decode(errors="replace").strip()
            raise VerifierError(e.errno or 0, f"bpf(BPF_PROG_LOAD): {e.strerror}", text) from None


def _attach_attr(target_fd: int, prog_fd: int, attach_type: int, flags: int = 0) -> ctypes.Array[ctypes.c_char]:
    attr = ctypes.create_string_buffer(20)
    struct.pack_into("<IIIII", attr, 0, target_fd, prog_fd, attach_type, flags, 0)
    return attr


def prog_attach(target_fd: int, prog_fd: int, attach_type: int, flags: int = 0) -> None:
    """BPF_PROG_ATTACH: the target (a cgroup directory fd) keeps its own reference to the program."""
    _bpf(BPF_PROG_ATTACH, _attach_attr(target_fd, prog_fd, attach_type, flags), "bpf(BPF_PROG_ATTACH)")


def prog_detach(target_fd: int, prog_fd: int, attach_type: int) -> None:
    _bpf(BPF_PROG_DETACH, _attach_attr(target_fd, prog_fd, attach_type), "bpf(BPF_PROG_DETACH)")


def prog_query(target_fd: int, attach_type: int, query_flags: int = 0, capacity: int = 64) -> list[int]:
    """BPF_PROG_QUERY: the IDs of the programs attached to the target for ATTACH_TYPE."""
    ids = (ctypes.c_uint32 * capacity)()
    attr = ctypes.create_string_buffer(28)
    struct.pack_into("<IIIIQI", attr, 0, target_fd, attach_type, query_flags, 0, ctypes.addressof(ids),
                     capacity)
    _bpf(BPF_PROG_QUERY, attr, "bpf(BPF_PROG_QUERY)")
    count = struct.unpack_from("<I", attr, 24)[0]
    return list(ids[:count])


def prog_get_fd_by_id(prog_id: int) -> int:
    attr = ctypes.create_string_buffer(12)
    struct.pack_into("<I", attr, 0, prog_id)
    return _bpf(BPF_PROG_GET_FD_BY_ID, attr, "bpf(BPF_PROG_GET_FD_BY_ID)")


def prog_info(prog_fd: int) -> tuple[int, int, str]:
    """BPF_OBJ_GET_INFO_BY_FD for a program: (type, id, name)."""
    info = ctypes.create_string_buffer(80)  # struct bpf_prog_info up to name[16]
    attr = ctypes.create_string_buffer(16)
    struct.pack_into("<IIQ", attr, 0, prog_fd, len(info), ctypes.addressof(info))
    _bpf(BPF_OBJ_GET_INFO_BY_FD, attr, "bpf(BPF_OBJ_GET_INFO_BY_FD)")
    prog_type, prog_id = struct.unpack_from("<II", info, 0)
    return prog_type, prog_id, info.raw[64:80].split(b"\0", 1)[0].decode(errors="replace")
