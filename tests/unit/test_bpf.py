"""fangen.datapath.bpf: the assembler (pure) and the bpf(2) wrapper.

The load/test-run tests need root (bpf(2) with CAP_BPF/CAP_SYS_ADMIN); they are
skipped, with that reason, when not run as root.  CI runs them as root.
"""

from __future__ import annotations

import os
import struct
import sys

import pytest

from fangen.datapath import bpf
from fangen.datapath.bpf import (
    DW,
    JEQ,
    R0,
    R1,
    R2,
    R6,
    AsmError,
    BPFError,
    Label,
    W,
    assemble,
    exit_,
    ja,
    jmp_imm,
    jmp_reg,
    ld_imm64,
    ldx_mem,
    mov64_imm,
    mov64_reg,
    resolve,
    st_mem,
    stx_mem,
)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="bpf(2) needs root")
little = pytest.mark.skipif(sys.byteorder != "little", reason="encodings written for little-endian")


@little
def test_encodings():
    assert mov64_imm(R0, 1).encode() == bytes.fromhex("b700000001000000")
    assert mov64_reg(R6, R1).encode() == bytes.fromhex("bf16000000000000")
    assert exit_().encode() == bytes.fromhex("9500000000000000")
    assert ldx_mem(W, R1, R6, 8).encode() == bytes.fromhex("6161080000000000")
    assert stx_mem(W, R6, R1, 8).encode() == bytes.fromhex("6316080000000000")
    assert st_mem(DW, bpf.FP, -8, 0).encode() == bytes.fromhex("7a0af8ff00000000")
    assert bpf.call(bpf.FN_SKB_LOAD_BYTES).encode() == bytes.fromhex("850000001a000000")
    assert bpf.be(R1, 32).encode() == bytes.fromhex("dc01000020000000")
    # u32 constants above 0x7fffffff are stored as their two's complement
    assert bpf.alu32_imm(bpf.AND, R1, 0xFFFFFF00).encode() == bytes.fromhex("5401000000ffffff")


@little
def test_ld_imm64_takes_two_slots():
    code = assemble(ld_imm64(R2, 0xFA000000))
    assert code == bytes.fromhex("18020000000000fa") + bytes(8)
    code = assemble(ld_imm64(R2, 0x1122334455667788))
    assert struct.unpack("<BBhiBBhi", code)[3] == 0x55667788
    assert struct.unpack("<BBhiBBhi", code)[7] == 0x11223344


def test_labels_resolve_forward_and_backward():
    prog = [
        Label("top"),
        jmp_imm(JEQ, R1, 0, "out"),     # slot 0 -> 4: off 3
        *ld_imm64(R2, 1),                # slots 1, 2
        ja("top"),                       # slot 3 -> 0: off -4
        Label("out"),
        exit_(),
    ]
    insns = resolve(prog)
    assert [i.off for i in insns] == [3, 0, 0, -4, 0]
    assert all(i.target is None for i in insns)


def test_jmp_reg_and_labels_are_checked():
    with pytest.raises(AsmError, match="unknown label"):
        resolve([jmp_reg(JEQ, R1, R2, "nowhere"), exit_()])
    with pytest.raises(AsmError, match="twice"):
        resolve([Label("a"), Label("a"), exit_()])
    with pytest.raises(AsmError, match="32 bits"):
        mov64_imm(R0, 1 << 33).encode()
    with pytest.raises(AsmError):
        bpf.alu32_imm(bpf.AND, R1, 1 << 32)


def test_nested_lists_flatten():
    assert assemble([[mov64_imm(R0, 0)], [[exit_()]]]) == assemble([mov64_imm(R0, 0), exit_()])


# ---------------------------------------------------------------- bpf(2)

FRAME = bytes(6) + bytes(6) + b"\x08\x00" + bytes(20)


@needs_root
def test_load_and_test_run_verdict():
    fd = bpf.prog_load(assemble([mov64_imm(R0, bpf.TC_ACT_SHOT), exit_()]), name="t_shot")
    try:
        res = bpf.prog_test_run(fd, FRAME)
        assert res.retval == bpf.TC_ACT_SHOT
        assert res.data[:len(FRAME)] == FRAME
    finally:
        os.close(fd)


@needs_root
def test_test_run_reports_the_mark():
    prog = [
        ldx_mem(W, R2, R1, bpf.SKB_MARK),
        bpf.alu32_imm(bpf.ADD, R2, 1),
        stx_mem(W, R1, R2, bpf.SKB_MARK),
        mov64_imm(R0, bpf.TC_ACT_OK),
        exit_(),
    ]
    fd = bpf.prog_load(assemble(prog), name="t_mark")
    try:
        res = bpf.prog_test_run(fd, FRAME, mark=41)
        assert (res.retval, res.mark) == (bpf.TC_ACT_OK, 42)
    finally:
        os.close(fd)


@needs_root
def test_rejected_program_carries_the_verifier_log():
    with pytest.raises(BPFError) as info:
        bpf.prog_load(assemble([exit_()]), name="t_bad")     # R0 never set
    assert "R0" in info.value.log
    assert "R0" in str(info.value)
