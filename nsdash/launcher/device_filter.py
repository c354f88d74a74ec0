"""The container's device filter on cgroup2: an eBPF program made from the v1 whitelist rules.

cgroup2 has no devices controller: the kernel asks the BPF_PROG_TYPE_CGROUP_DEVICE
programs of the task's cgroup2 cgroup on every open and mknod of a device node
(and, on hybrid hosts, the v1 devices whitelist as well: both must allow).
The rules are the v1 whitelist's own lines ("c 1:3 rwm", "c 136:* rw", "a"),
so one list states the policy for both mechanisms.

rules -> program is pure (tests run it through an interpreter); load() and
attach() are the effects.  The program is attached with BPF_PROG_ATTACH, not
through a BPF link: the cgroup then holds its own reference, so the filter
stays for the container's whole life even after the launcher closes its fd
or dies, and goes away only with the cgroup itself.
"""

from __future__ import annotations

import contextlib
import os

from nsdash.system import bpf
from nsdash.system.frozen import Frozen

_TYPES = {"c": bpf.BPF_DEVCG_DEV_CHAR, "b": bpf.BPF_DEVCG_DEV_BLOCK}
_ACCESS = {"r": bpf.BPF_DEVCG_ACC_READ, "w": bpf.BPF_DEVCG_ACC_WRITE, "m": bpf.BPF_DEVCG_ACC_MKNOD}
ALL_ACCESS = bpf.BPF_DEVCG_ACC_READ | bpf.BPF_DEVCG_ACC_WRITE | bpf.BPF_DEVCG_ACC_MKNOD
PROGRAM_NAME = "nsdash_devices"

# Registers the program keeps its inputs in (r1 is the context, r0 the verdict).
_R_TYPE, _R_ACCESS, _R_MAJOR, _R_MINOR, _R_TMP = 2, 3, 4, 5, 1


class DeviceRule(Frozen):
    """One allow rule: (kind, major, minor, access); kind 0 = any type, major/minor None = any."""

    kind: int
    major: int | None
    minor: int | None
    access: int

    @classmethod
    def parse(cls, text: str) -> DeviceRule:
        """A v1 devices.allow line: 'a', or 'TYPE MAJOR:MINOR ACCESS' with * for any number."""
        parts = text.split()
        if parts == ["a"]:
            return cls(0, None, None, ALL_ACCESS)
        if len(parts) != 3 or parts[0] not in ("a", "b", "c") or parts[1].count(":") != 1:
            raise ValueError(f"bad device rule {text!r}: want 'c|b|a MAJOR:MINOR rwm'")
        major_s, minor_s = parts[1].split(":")
        access = 0
        for ch in parts[2]:
            if ch not in _ACCESS:
                raise ValueError(f"bad device rule {text!r}: access is a combination of r, w and m")
            access |= _ACCESS[ch]
        return cls(_TYPES.get(parts[0], 0), _number(major_s, text), _number(minor_s, text), access)

    def allows(self, kind: int, major: int, minor: int, access: int) -> bool:
        """The rule's meaning, stated directly (the reference the program is tested against)."""
        return ((self.kind == 0 or self.kind == kind)
                and (self.major is None or self.major == major)
                and (self.minor is None or self.minor == minor)
                and access & ~self.access == 0)


def _number(text: str, rule: str) -> int | None:
    if text == "*":
        return None
    if not text.isdigit() or int(text) >= 1 << 31:
        raise ValueError(f"bad device rule {rule!r}: {text!r} is neither a number nor *")
    return int(text)


def parse_rules(lines: tuple[str, ...] | list[str]) -> tuple[DeviceRule, ...]:
    return tuple(DeviceRule.parse(line) for line in lines)


def build_program(rules: tuple[DeviceRule, ...]) -> list[bpf.Insn]:
    """An eBPF cgroup device program that returns 1 (allow) when one of RULES matches, else 0.

    Layout: load the type, access, major and minor from the context once; then one
    block per rule whose tests each jump past the block on a mismatch, and whose
    end allows; after the last block, deny.
    """
    prog = [
        bpf.ldx_w(_R_TYPE, 1, bpf.DEV_CTX_ACCESS_TYPE),
        bpf.mov64_reg(_R_ACCESS, _R_TYPE),
        bpf.alu64_imm(bpf.BPF_RSH, _R_ACCESS, 16),
        bpf.alu64_imm(bpf.BPF_AND, _R_TYPE, 0xFFFF),
        bpf.ldx_w(_R_MAJOR, 1, bpf.DEV_CTX_MAJOR),
        bpf.ldx_w(_R_MINOR, 1, bpf.DEV_CTX_MINOR),
    ]
    for rule in rules:
        prog += _rule_block(rule)
    prog += [bpf.alu64_imm(bpf.BPF_MOV, 0, 0), bpf.exit_insn()]
    return prog


def _rule_block(rule: DeviceRule) -> list[bpf.Insn]:
    # Tests as (register, value) pairs; None in the register slot marks the access test,
    # which needs two instructions before its jump (tmp = access & ~allowed).
    block: list[bpf.Insn | tuple[int, int]] = []
    if rule.kind:
        block.append((_R_TYPE, rule.kind))
    if rule.access != ALL_ACCESS:
        block.append(bpf.mov64_reg(_R_TMP, _R_ACCESS))
        block.append(bpf.alu64_imm(bpf.BPF_AND, _R_TMP, ALL_ACCESS & ~rule.access))
        block.append((_R_TMP, 0))
    if rule.major is not None:
        block.append((_R_MAJOR, rule.major))
    if rule.minor is not None:
        block.append((_R_MINOR, rule.minor))
    block += [bpf.alu64_imm(bpf.BPF_MOV, 0, 1), bpf.exit_insn()]
    out: list[bpf.Insn] = []
    for i, item in enumerate(block):
        if isinstance(item, bpf.Insn):
            out.append(item)
        else:  # on a mismatch, skip the rest of this block
            reg, value = item
            out.append(bpf.jmp_imm(bpf.BPF_JNE, reg, value, len(block) - i - 1))
    return out


# ---- effects -------------------------------------------------------------------

def load(rules: tuple[DeviceRule, ...]) -> int:
    """Load the program for RULES; its fd.  OSError if the kernel cannot (no CONFIG_CGROUP_BPF,
    bpf(2) refused by a seccomp filter around us, ...); VerifierError carries the log."""
    return bpf.prog_load(bpf.BPF_PROG_TYPE_CGROUP_DEVICE, build_program(rules), name=PROGRAM_NAME)


def attach(cgroup_dir: str | os.PathLike[str], prog_fd: int) -> None:
    """Attach PROG_FD as the device filter of CGROUP_DIR, replacing one a previous run left there.

    BPF_F_ALLOW_MULTI: programs that a payload's own manager might attach further down
    run in addition to ours (every one must allow), never instead of it.
    """
    fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for stale in bpf.prog_query(fd, bpf.BPF_CGROUP_DEVICE):
            _detach_id(fd, stale)
        bpf.prog_attach(fd, prog_fd, bpf.BPF_CGROUP_DEVICE, bpf.BPF_F_ALLOW_MULTI)
    finally:
        os.close(fd)


def attached(cgroup_dir: str | os.PathLike[str]) -> list[int]:
    """The IDs of the device programs attached to CGROUP_DIR itself."""
    fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return bpf.prog_query(fd, bpf.BPF_CGROUP_DEVICE)
    finally:
        os.close(fd)


def _detach_id(cgroup_fd: int, prog_id: int) -> None:
    try:
        prog_fd = bpf.prog_get_fd_by_id(prog_id)
    except FileNotFoundError:
        return  # released meanwhile
    try:
        with contextlib.suppress(FileNotFoundError):
            bpf.prog_detach(cgroup_fd, prog_fd, bpf.BPF_CGROUP_DEVICE)
    finally:
        os.close(prog_fd)
