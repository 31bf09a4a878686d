"""The bpf(2) system call through ctypes, and a small eBPF assembler.

Only what fangen's tc programs need: ``BPF_PROG_LOAD`` (with the verifier's
log on failure) and ``BPF_PROG_TEST_RUN``.  No maps, no pinning, no object
files: a program is a list of instructions built in Python and loaded from
memory; the returned file descriptor is the only handle on it.

The assembler is deliberately plain.  Every helper below returns one
:class:`Insn` (``ld_imm64`` returns two, as the instruction set demands);
:class:`Label` marks a position, and jumps name their target by label, so a
program reads top to bottom like its C counterpart::

    prog = [
        mov64_reg(R6, R1),
        ldx_mem(W, R0, R6, SKB_MARK),
        jmp_imm(JEQ, R0, 0, "out"),
        mov64_imm(R0, TC_ACT_SHOT),
        exit_(),
        Label("out"),
        mov64_imm(R0, TC_ACT_OK),
        exit_(),
    ]
    code = assemble(prog)

Layouts and numbers are the kernel's uAPI (include/uapi/linux/bpf.h).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# ---------------------------------------------------------------- opcodes

# instruction classes
BPF_LD, BPF_LDX, BPF_ST, BPF_STX, BPF_ALU, BPF_JMP, BPF_JMP32, BPF_ALU64 = range(8)

# sizes (ld/st)
W, H, B, DW = 0x00, 0x08, 0x10, 0x18
_SIZE_BYTES = {W: 4, H: 2, B: 1, DW: 8}

# modes (ld/st)
BPF_IMM, BPF_ABS, BPF_IND, BPF_MEM = 0x00, 0x20, 0x40, 0x60

# sources
BPF_K, BPF_X = 0x00, 0x08

# ALU operations
ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, NEG, MOD, XOR, MOV, ARSH, END = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0)
BPF_TO_LE, BPF_TO_BE = 0x00, 0x08

# jump operations
JA, JEQ, JGT, JGE, JSET, JNE, JSGT, JSGE, CALL, EXIT, JLT, JLE, JSLT, JSLE = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0)

# registers
R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = range(11)
FP = R10

# helper function ids (enum bpf_func_id)
FN_SKB_VLAN_PUSH = 18
FN_SKB_VLAN_POP = 19
FN_SKB_GET_TUNNEL_KEY = 20
FN_SKB_SET_TUNNEL_KEY = 21
FN_SKB_LOAD_BYTES = 26
FN_GET_HASH_RECALC = 34
FN_SKB_PULL_DATA = 39
FN_SKB_CHANGE_HEAD = 43
FN_SKB_ADJUST_ROOM = 50
FN_REDIRECT_NEIGH = 152

# flags of bpf_skb_set_tunnel_key
BPF_F_ZERO_CSUM_TX = 1 << 1     # no outer UDP checksum (the kernel otherwise asks for one)

# program types (enum bpf_prog_type)
PROG_TYPE_SCHED_CLS = 3

# tc verdicts for direct-action programs; TC_ACT_UNSPEC hands the packet to the next
# filter on the hook (cls_bpf_classify continues, then tcf_classify tries the next priority)
TC_ACT_UNSPEC = -1
TC_ACT_OK = 0
TC_ACT_SHOT = 2
TC_ACT_REDIRECT = 7       # what bpf_redirect_neigh returns when the packet is handed on

# struct __sk_buff field offsets
SKB_LEN = 0
SKB_MARK = 8
SKB_PROTOCOL = 16
SKB_VLAN_PRESENT = 20
SKB_DATA = 76
SKB_DATA_END = 80
SKB_SIZE = 192          # sizeof(struct __sk_buff) in the 6.1 uAPI headers

# struct bpf_tunnel_key field offsets; 28 = offsetof(local_ipv4) is the size every
# kernel since 4.x accepts for the IPv4 part of the key (older kernels: sizeof).
TK_TUNNEL_ID = 0
TK_REMOTE_IPV4 = 4
TK_TOS = 20
TK_TTL = 21
TK_EXT = 22
TK_LABEL = 24
TK_SIZE_V4 = 28

# bpf(2) commands
BPF_PROG_LOAD = 5
BPF_PROG_TEST_RUN = 10

BPF_OBJ_NAME_LEN = 16


# ---------------------------------------------------------------- assembler

# Instructions are in host byte order; the register nibbles swap on big-endian hosts.
_LITTLE = sys.byteorder == "little"


@dataclass(frozen=True)
class Insn:
    """One 8-byte eBPF instruction; ``target`` names a label for jumps."""

    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0
    target: str | None = None

    def encode(self, off: int | None = None) -> bytes:
        o = self.off if off is None else off
        if not -0x8000 <= o <= 0x7FFF:
            raise AsmError(f"offset {o} does not fit in 16 bits")
        imm = self.imm
        if not -0x80000000 <= imm <= 0xFFFFFFFF:
            raise AsmError(f"immediate {imm:#x} does not fit in 32 bits")
        if imm > 0x7FFFFFFF:
            imm -= 1 << 32
        regs = (self.src << 4) | self.dst if _LITTLE else (self.dst << 4) | self.src
        return struct.pack("=BBhi", self.code, regs, o, imm)


@dataclass(frozen=True)
class Label:
    """A named position in a program."""

    name: str


Item = Insn | Label


class AsmError(ValueError):
    """A program that cannot be assembled (unknown or duplicate label, overflow)."""


def _u32(value: int) -> int:
    if not -0x80000000 <= value <= 0xFFFFFFFF:
        raise AsmError(f"immediate {value:#x} does not fit in 32 bits")
    return value & 0xFFFFFFFF


def mov64_reg(dst: int, src: int) -> Insn:
    return Insn(BPF_ALU64 | MOV | BPF_X, dst, src)


def mov64_imm(dst: int, imm: int) -> Insn:
    """dst = imm, sign-extended to 64 bits (use ld_imm64 or mov32_imm for u32 constants)."""
    return Insn(BPF_ALU64 | MOV | BPF_K, dst, 0, 0, imm)


def mov32_imm(dst: int, imm: int) -> Insn:
    """dst = (u32)imm; the upper half is zeroed."""
    return Insn(BPF_ALU | MOV | BPF_K, dst, 0, 0, _u32(imm))


def mov32_reg(dst: int, src: int) -> Insn:
    return Insn(BPF_ALU | MOV | BPF_X, dst, src)


def alu64_imm(op: int, dst: int, imm: int) -> Insn:
    return Insn(BPF_ALU64 | op | BPF_K, dst, 0, 0, imm)


def alu64_reg(op: int, dst: int, src: int) -> Insn:
    return Insn(BPF_ALU64 | op | BPF_X, dst, src)


def alu32_imm(op: int, dst: int, imm: int) -> Insn:
    """32-bit ALU with an immediate: the operation sees the low 32 bits, the result is
    zero-extended, so masks like 0xffffff00 mean what they say."""
    return Insn(BPF_ALU | op | BPF_K, dst, 0, 0, _u32(imm))


def alu32_reg(op: int, dst: int, src: int) -> Insn:
    return Insn(BPF_ALU | op | BPF_X, dst, src)


def be(dst: int, bits: int) -> Insn:
    """Convert dst between host and network (big-endian) byte order (16, 32 or 64 bits)."""
    if bits not in (16, 32, 64):
        raise AsmError(f"byte swap of {bits} bits")
    return Insn(BPF_ALU | END | BPF_TO_BE, dst, 0, 0, bits)


def ld_imm64(dst: int, imm: int) -> list[Insn]:
    """dst = 64-bit immediate (two instruction slots)."""
    imm &= 0xFFFFFFFFFFFFFFFF
    lo, hi = imm & 0xFFFFFFFF, imm >> 32
    return [Insn(BPF_LD | DW | BPF_IMM, dst, 0, 0, lo), Insn(0, 0, 0, 0, hi)]


def ldx_mem(size: int, dst: int, src: int, off: int) -> Insn:
    """dst = *(size *)(src + off)"""
    return Insn(BPF_LDX | size | BPF_MEM, dst, src, off)


def stx_mem(size: int, dst: int, src: int, off: int) -> Insn:
    """*(size *)(dst + off) = src"""
    return Insn(BPF_STX | size | BPF_MEM, dst, src, off)


def st_mem(size: int, dst: int, off: int, imm: int) -> Insn:
    """*(size *)(dst + off) = imm"""
    return Insn(BPF_ST | size | BPF_MEM, dst, 0, off, imm)


def jmp_imm(op: int, dst: int, imm: int, target: str) -> Insn:
    """if (dst OP imm) goto target; 64-bit compare against the sign-extended immediate."""
    return Insn(BPF_JMP | op | BPF_K, dst, 0, 0, imm, target)


def jmp_reg(op: int, dst: int, src: int, target: str) -> Insn:
    """if (dst OP src) goto target; 64-bit compare."""
    return Insn(BPF_JMP | op | BPF_X, dst, src, 0, 0, target)


def ja(target: str) -> Insn:
    return Insn(BPF_JMP | JA, target=target)


def call(helper: int) -> Insn:
    return Insn(BPF_JMP | CALL, imm=helper)


def exit_() -> Insn:
    return Insn(BPF_JMP | EXIT)


def flatten(items: Iterable[Item | Sequence[Item]]) -> list[Item]:
    out: list[Item] = []
    for item in items:
        if isinstance(item, (Insn, Label)):
            out.append(item)
        else:
            out.extend(flatten(item))
    return out


def resolve(items: Iterable[Item | Sequence[Item]]) -> list[Insn]:
    """Drop labels and turn every jump's target into a relative offset."""
    flat = flatten(items)
    where: dict[str, int] = {}
    pc = 0
    for item in flat:
        if isinstance(item, Label):
            if item.name in where:
                raise AsmError(f"label {item.name!r} defined twice")
            where[item.name] = pc
        else:
            pc += 1
    out: list[Insn] = []
    for item in flat:
        if isinstance(item, Label):
            continue
        if item.target is not None:
            if item.target not in where:
                raise AsmError(f"jump to unknown label {item.target!r}")
            off = where[item.target] - (len(out) + 1)
            item = Insn(item.code, item.dst, item.src, off, item.imm)
        out.append(item)
    return out


def assemble(items: Iterable[Item | Sequence[Item]]) -> bytes:
    """Bytes ready for BPF_PROG_LOAD."""
    return b"".join(insn.encode() for insn in resolve(items))


# ---------------------------------------------------------------- bpf(2)

_NR_BPF = {
    "x86_64": 321, "aarch64": 280, "arm64": 280, "riscv64": 280, "loongarch64": 280,
    "ppc64le": 361, "ppc64": 361, "s390x": 351, "i386": 357, "i686": 357, "armv7l": 386,
    "armv6l": 386, "mips64": 5315,
}


class BPFError(OSError):
    """bpf(2) failed; ``log`` holds the verifier's log for a rejected program."""

    def __init__(self, err: int, message: str, log: str = "") -> None:
        super().__init__(err, message + (f"\n{log}" if log else ""))
        self.log = log


class _ProgLoadAttr(ctypes.Structure):
    _fields_ = [
        ("prog_type", ctypes.c_uint32),
        ("insn_cnt", ctypes.c_uint32),
        ("insns", ctypes.c_uint64),
        ("license", ctypes.c_uint64),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64),
        ("kern_version", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("prog_name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("prog_ifindex", ctypes.c_uint32),
        ("expected_attach_type", ctypes.c_uint32),
    ]


class _TestRunAttr(ctypes.Structure):
    _fields_ = [
        ("prog_fd", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("data_in", ctypes.c_uint64),
        ("data_out", ctypes.c_uint64),
        ("repeat", ctypes.c_uint32),
        ("duration", ctypes.c_uint32),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_uint64),
        ("ctx_out", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
    ]


_libc = None


def _sys_bpf(cmd: int, attr: ctypes.Structure) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    nr = _NR_BPF.get(platform.machine())
    if nr is None:
        raise BPFError(errno.ENOSYS, f"bpf(2) number unknown for {platform.machine()}")
    ret = _libc.syscall(ctypes.c_long(nr), ctypes.c_long(cmd), ctypes.byref(attr),
                        ctypes.c_uint(ctypes.sizeof(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise BPFError(err, f"bpf({cmd}): {os.strerror(err)}")
    return ret


def prog_load(code: bytes, *, prog_type: int = PROG_TYPE_SCHED_CLS, name: str = "",
              license: str = "GPL", log_size: int = 1 << 20) -> int:
    """Load a program, return its file descriptor (the caller closes it).

    The first attempt runs without a log (fast path).  When the kernel refuses the
    program, it is loaded again with ``log_level=1`` and the verifier's log is put in
    the :class:`BPFError` raised.
    """
    if len(code) % 8:
        raise AsmError("program length is not a multiple of 8")
    insns = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(license.encode())

    def attempt(level: int, buf) -> int:
        attr = _ProgLoadAttr()
        attr.prog_type = prog_type
        attr.insn_cnt = len(code) // 8
        attr.insns = ctypes.addressof(insns)
        attr.license = ctypes.addressof(lic)
        attr.prog_name = name.encode()[:BPF_OBJ_NAME_LEN - 1]
        if buf is not None:
            attr.log_level = level
            attr.log_size = len(buf)
            attr.log_buf = ctypes.addressof(buf)
        return _sys_bpf(BPF_PROG_LOAD, attr)

    try:
        return attempt(0, None)
    except BPFError as first:
        if first.errno in (errno.EPERM, errno.ENOSYS):
            raise
        buf = ctypes.create_string_buffer(log_size)
        try:
            fd = attempt(1, buf)
        except BPFError as second:
            log = buf.value.decode(errors="replace")
            raise BPFError(second.errno, f"BPF_PROG_LOAD of {name or 'program'} refused: "
                           f"{os.strerror(second.errno)}", log) from None
        return fd   # the second try succeeded (transient failure): keep it


@dataclass(frozen=True)
class TestRun:
    """What BPF_PROG_TEST_RUN reports for one run."""

    retval: int
    data: bytes
    mark: int
    duration_ns: int

    __test__ = False   # not a pytest test class


def prog_test_run(fd: int, data: bytes, *, mark: int = 0, repeat: int = 1) -> TestRun:
    """Run a loaded tc program once on a synthetic frame (Ethernet header first)."""
    data_in = ctypes.create_string_buffer(bytes(data), len(data))
    data_out = ctypes.create_string_buffer(len(data) + 256)
    ctx_in = ctypes.create_string_buffer(SKB_SIZE)
    struct.pack_into("=I", ctx_in, SKB_MARK, mark)
    ctx_out = ctypes.create_string_buffer(SKB_SIZE)
    attr = _TestRunAttr()
    attr.prog_fd = fd
    attr.data_size_in = len(data)
    attr.data_size_out = len(data_out)
    attr.data_in = ctypes.addressof(data_in)
    attr.data_out = ctypes.addressof(data_out)
    attr.repeat = repeat
    attr.ctx_size_in = SKB_SIZE
    attr.ctx_size_out = SKB_SIZE
    attr.ctx_in = ctypes.addressof(ctx_in)
    attr.ctx_out = ctypes.addressof(ctx_out)
    _sys_bpf(BPF_PROG_TEST_RUN, attr)
    (out_mark,) = struct.unpack_from("=I", ctx_out, SKB_MARK)
    return TestRun(attr.retval, data_out.raw[:attr.data_size_out], out_mark, attr.duration)
