"""The cgroup device program builder: device rules -> eBPF instructions (pure, no kernel).

The kernel cannot test-run a cgroup device program (BPF_PROG_TEST_RUN does not
support the type), so the program's meaning is checked here by a small eBPF
interpreter for the instructions the builder emits, against each rule's meaning
stated directly; tests/security/test_device_filter.py loads it into the kernel.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nsdash.launcher.cgroup import DEVICE_ALLOW
from nsdash.launcher.device_filter import ALL_ACCESS, DeviceRule, build_program, parse_rules
from nsdash.system import bpf

CHAR, BLOCK = bpf.BPF_DEVCG_DEV_CHAR, bpf.BPF_DEVCG_DEV_BLOCK
R, W, M = bpf.BPF_DEVCG_ACC_READ, bpf.BPF_DEVCG_ACC_WRITE, bpf.BPF_DEVCG_ACC_MKNOD
U64 = (1 << 64) - 1


def run(program: list[bpf.Insn], kind: int, major: int, minor: int, access: int) -> int:
    """Interpret PROGRAM on a struct bpf_cgroup_dev_ctx; fails on any instruction it does not
    know, on a read of an unset register and on a jump out of the program."""
    ctx = struct.pack("<III", (access << 16) | kind, major, minor)
    regs: dict[int, int] = {}
    pc, steps = 0, 0
    while True:
        assert 0 <= pc < len(program), f"fell off the program at {pc}"
        steps += 1
        assert steps <= len(program), "a loop: the verifier would refuse it"
        i = program[pc]
        pc += 1
        if i.code == bpf.BPF_LDX | bpf.BPF_W | bpf.BPF_MEM:
            assert i.src == 1 and 0 <= i.off <= len(ctx) - 4 and i.off % 4 == 0
            regs[i.dst] = struct.unpack_from("<I", ctx, i.off)[0]
        elif i.code == bpf.BPF_ALU64 | bpf.BPF_MOV | bpf.BPF_X:
            regs[i.dst] = regs[i.src]
        elif i.code == bpf.BPF_ALU64 | bpf.BPF_MOV | bpf.BPF_K:
            regs[i.dst] = i.imm & U64
        elif i.code == bpf.BPF_ALU64 | bpf.BPF_AND | bpf.BPF_K:
            regs[i.dst] = regs[i.dst] & (i.imm & U64)  # imm is sign-extended to 64 bits
        elif i.code == bpf.BPF_ALU64 | bpf.BPF_RSH | bpf.BPF_K:
            regs[i.dst] = regs[i.dst] >> i.imm
        elif i.code == bpf.BPF_JMP | bpf.BPF_JNE | bpf.BPF_K:
            assert i.off >= 0, "backward jump"
            if regs[i.dst] != i.imm & U64:
                pc += i.off
        elif i.code == bpf.BPF_JMP | bpf.BPF_JA:
            pc += i.off
        elif i.code == bpf.BPF_JMP | bpf.BPF_EXIT:
            return regs[0]
        else:
            raise AssertionError(f"instruction the interpreter does not know: {i!r}")


def reference(rules, kind, major, minor, access) -> int:
    return int(any(r.allows(kind, major, minor, access) for r in rules))


# ---- parsing -------------------------------------------------------------------

def test_rules_parse_like_v1_devices_allow_lines():
    assert DeviceRule.parse("c 1:3 rwm") == DeviceRule(CHAR, 1, 3, R | W | M)
    assert DeviceRule.parse("c 136:* rw") == DeviceRule(CHAR, 136, None, R | W)
    assert DeviceRule.parse("b *:* m") == DeviceRule(BLOCK, None, None, M)
    assert DeviceRule.parse("a *:* r") == DeviceRule(0, None, None, R)
    assert DeviceRule.parse("a") == DeviceRule(0, None, None, ALL_ACCESS)


@pytest.mark.parametrize("bad", ["", "c", "c 1:3", "x 1:3 rwm", "c 1-3 rwm", "c 1:3 rwx", "c -1:3 r",
                                 "c 1:3:4 r", "c a:3 r", "c 1:99999999999 r", "c 1:3 rwm extra"])
def test_bad_rules_are_refused_with_the_rule_named(bad):
    with pytest.raises(ValueError, match="bad device rule"):
        DeviceRule.parse(bad)


# ---- instruction by instruction -------------------------------------------------

def test_prologue_loads_type_access_major_minor_and_the_end_denies():
    prog = build_program(())
    assert prog == [
        bpf.ldx_w(2, 1, 0),                    # r2 = ctx->access_type
        bpf.mov64_reg(3, 2),                   # r3 = r2
        bpf.alu64_imm(bpf.BPF_RSH, 3, 16),     # r3 >>= 16: the access bits
        bpf.alu64_imm(bpf.BPF_AND, 2, 0xFFFF),  # r2 &= 0xffff: the device type
        bpf.ldx_w(4, 1, 4),                    # r4 = ctx->major
        bpf.ldx_w(5, 1, 8),                    # r5 = ctx->minor
        bpf.alu64_imm(bpf.BPF_MOV, 0, 0),      # r0 = 0: deny
        bpf.exit_insn(),
    ]


def test_exact_rule_with_full_access_tests_type_major_minor_then_allows():
    block = build_program(parse_rules(["c 1:3 rwm"]))[6:-2]
    assert block == [
        bpf.jmp_imm(bpf.BPF_JNE, 2, CHAR, 4),  # wrong type: past the block
        bpf.jmp_imm(bpf.BPF_JNE, 4, 1, 3),
        bpf.jmp_imm(bpf.BPF_JNE, 5, 3, 2),
        bpf.alu64_imm(bpf.BPF_MOV, 0, 1),
        bpf.exit_insn(),
    ]


def test_partial_access_masks_the_requested_bits_and_wildcards_emit_no_test():
    block = build_program(parse_rules(["b 8:* r"]))[6:-2]
    assert block == [
        bpf.jmp_imm(bpf.BPF_JNE, 2, BLOCK, 6),
        bpf.mov64_reg(1, 3),                   # r1 = requested access
        bpf.alu64_imm(bpf.BPF_AND, 1, W | M),  # ... outside the rule's
        bpf.jmp_imm(bpf.BPF_JNE, 1, 0, 3),
        bpf.jmp_imm(bpf.BPF_JNE, 4, 8, 2),
        bpf.alu64_imm(bpf.BPF_MOV, 0, 1),
        bpf.exit_insn(),
    ]
    assert build_program(parse_rules(["a"]))[6:-2] == [bpf.alu64_imm(bpf.BPF_MOV, 0, 1), bpf.exit_insn()]


def test_encoding_matches_struct_bpf_insn():
    assert bpf.ldx_w(2, 1, 4).encode() == bytes([0x61, 0x12, 4, 0, 0, 0, 0, 0])
    assert bpf.jmp_imm(bpf.BPF_JNE, 4, 136, 2).encode() == bytes([0x55, 0x04, 2, 0, 136, 0, 0, 0])
    assert bpf.alu64_imm(bpf.BPF_MOV, 0, 1).encode() == bytes([0xB7, 0, 0, 0, 1, 0, 0, 0])
    assert bpf.exit_insn().encode() == bytes([0x95, 0, 0, 0, 0, 0, 0, 0])
    assert len(bpf.encode(build_program(parse_rules(DEVICE_ALLOW)))) == 8 * len(build_program(
        parse_rules(DEVICE_ALLOW)))


# ---- semantics ------------------------------------------------------------------

def test_the_container_policy_allows_its_nodes_and_nothing_else():
    rules = parse_rules(DEVICE_ALLOW)
    prog = build_program(rules)
    for major, minor in ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (136, 0),
                         (136, 41), (10, 200)):
        for access in (R, W, M, R | W, R | W | M):
            assert run(prog, CHAR, major, minor, access) == 1, (major, minor, access)
    for kind, major, minor in ((CHAR, 1, 1), (CHAR, 1, 2), (CHAR, 1, 4), (CHAR, 1, 11), (BLOCK, 7, 0),
                               (BLOCK, 8, 0), (BLOCK, 1, 3), (CHAR, 10, 232), (CHAR, 4, 1), (CHAR, 137, 0),
                               (CHAR, 5, 3), (CHAR, 0, 0)):
        assert run(prog, kind, major, minor, R) == 0, (kind, major, minor)


ACCESS = st.integers(1, 7)
RULE = st.builds(DeviceRule, st.sampled_from([0, CHAR, BLOCK]), st.none() | st.integers(0, 9),
                 st.none() | st.integers(0, 9), ACCESS)


@settings(max_examples=300, deadline=None)
@given(st.lists(RULE, max_size=6), st.sampled_from([CHAR, BLOCK]), st.integers(0, 10),
       st.integers(0, 10), ACCESS)
def test_program_means_what_the_rules_say(rules, kind, major, minor, access):
    rules = tuple(rules)
    assert run(build_program(rules), kind, major, minor, access) == reference(rules, kind, major, minor, access)


def test_the_interpreter_itself_notices_a_wrong_program():
    # A test that cannot fail proves nothing: flip one jump and the check above must see it.
    rules = parse_rules(["c 1:3 rwm"])
    prog = build_program(rules)
    broken = list(prog)
    broken[7] = bpf.jmp_imm(bpf.BPF_JNE, 4, 2, 3)  # major 2 instead of 1
    assert run(prog, CHAR, 1, 3, R) == 1 and run(broken, CHAR, 1, 3, R) == 0
