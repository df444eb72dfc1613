"""Per-architecture facts the generator and the verifier share, as one table.

RSEQ_SIG values and syscall numbers: glibc sysdeps/unix/sysv/linux/*/bits/rseq.h
and the kernel's syscall tables (arch/*/entry/syscalls/*.tbl, asm-generic/unistd.h).
Adding an architecture means adding a row here and an ``arch/<template>`` file.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field

from rseq_gen.errors import UsageError, unknown_choice


@dataclass(frozen=True)
class Arch:
    #: Name used on the command line and in manifests.
    name: str
    #: Preprocessor test that selects this architecture's code in the header.
    c_condition: str
    #: jinja2 template (under templates/arch/) with the inline asm.
    template: str
    #: __NR_rseq.
    nr_rseq: int
    #: RSEQ_SIG as the kernel reads it (a u32 in data byte order), little endian.
    sig: int
    #: RSEQ_SIG for big-endian variants, where it differs (None: same value).
    sig_be: int | None
    #: ELF e_machine name (pyelftools spelling) and ELF class.
    e_machine: str
    elfclass: int
    #: Byte orders the architecture is used with.
    endians: tuple[str, ...] = ("little",)
    #: `uname -m` spellings that mean this architecture.
    machine_names: tuple[str, ...] = ()
    #: Debian cross-compiler triple and qemu-user binary, for tests.
    cross_triple: str | None = None
    qemu: str | None = None
    #: Extra template parameters (register names, directives).
    params: dict = field(default_factory=dict)
    #: Data directive storing the thread-pointer offset of a TLS symbol ({0})
    #: of the executable as a pointer-sized word, resolved by the static
    #: linker (local-exec). With it, executable code reads an area offset
    #: valid from load time (the header's null area), so its fast paths need
    #: no "offset known yet?" test. None: no such data relocation (or not
    #: tested here); the fast paths keep the test.
    exe_tp_offset_data: str | None = None
    #: The area offset that stands for "no area" (not known yet, or the
    #: thread has none): a value no area can have. 0 where the thread pointer
    #: addresses the TCB, so that no TLS variable sits at offset 0 (x86 and
    #: s390x keep TLS below it, aarch64 and arm after a TCB at it): the test
    #: is then one compare with zero. Where TLS starts at the thread pointer
    #: (riscv64, loongarch64) or 0x7000 bytes below it (powerpc, whose static
    #: TLS can reach offset 0), a module's first TLS variable may sit at
    #: offset 0, so "no area" is 1: no area is at an odd offset (32-byte
    #: aligned, from a thread pointer aligned to at least 8).
    no_area_offset: int = 0

    def sig_for(self, endian: str) -> int:
        if endian == "big" and self.sig_be is not None:
            return self.sig_be
        return self.sig


ARCHES: dict[str, Arch] = {
    a.name: a
    for a in (
        Arch(
            name="x86_64",
            c_condition="defined(__x86_64__) && !defined(__ILP32__)",
            template="x86.h.j2",
            nr_rseq=334,
            sig=0x53053053,
            sig_be=None,
            e_machine="EM_X86_64",
            elfclass=64,
            machine_names=("x86_64", "amd64"),
            cross_triple="x86_64-linux-gnu",
            qemu="qemu-x86_64",
            params={"seg": "fs", "word": "q", "imm": "e", "scratch": "rax",
                    # enough registers to take stored words, buffers and index
                    # offsets as register (or immediate) operands and use them
                    # directly; i386 takes them as memory operands too
                    "direct_operands": True,
                    # the operations' scratch registers s0..s2, their 32-bit and byte names
                    "scratch_regs": ("rax", "rcx", "rdx"), "scratch32": ("eax", "ecx", "edx"),
                    "scratch8": ("al", "cl", "dl"),
                    # a 64-bit descriptor field; the descriptor's address (PC-relative)
                    "ptr64": ".quad {0}",
                    "load_cs": ["leaq 3b(%%rip), %%rax"],
                    # local-exec TLS: a symbol's offset from the thread pointer
                    "tls_le_reloc": "tpoff"},
            # R_X86_64_TPOFF32 (GNU ld, gold and lld; lld rejects TPOFF64 in
            # data). The executable's TLS lies below the thread pointer, so
            # the offset is negative: the high word is all ones.
            exe_tp_offset_data=".long {0}@tpoff, -1",
        ),
        Arch(
            name="i386",
            c_condition="defined(__i386__)",
            template="x86.h.j2",
            nr_rseq=386,
            sig=0x53053053,
            sig_be=None,
            e_machine="EM_386",
            elfclass=32,
            machine_names=("i386", "i486", "i586", "i686"),
            cross_triple="i686-linux-gnu",
            qemu="qemu-i386",
            params={"seg": "gs", "word": "l", "imm": "i", "scratch": "eax", "direct_operands": False,
                    "scratch_regs": ("eax", "ecx", "edx"), "scratch32": ("eax", "ecx", "edx"),
                    "scratch8": ("al", "cl", "dl"),
                    "ptr64": ".long {0}, 0x0",
                    # no PC-relative lea: take the descriptor from a call's return address
                    "load_cs": ["call 5f", r"5:\tpopl %%eax", "leal (3b - 5b)(%%eax), %%eax"],
                    "tls_le_reloc": "ntpoff"},
            # R_386_TLS_LE_32: the negative offset %gs-relative accesses use.
            exe_tp_offset_data=".long {0}@ntpoff",
        ),
        Arch(
            name="aarch64",
            c_condition="defined(__aarch64__)",
            template="aarch64.h.j2",
            nr_rseq=293,
            sig=0xD428BC00,
            sig_be=0x00BC28D4,
            e_machine="EM_AARCH64",
            elfclass=64,
            endians=("little", "big"),
            machine_names=("aarch64", "arm64"),
            cross_triple="aarch64-linux-gnu",
            qemu="qemu-aarch64",
            params={"be_macro": "__AARCH64EB__"},
        ),
        Arch(
            name="arm",
            c_condition="defined(__arm__)",
            template="arm.h.j2",
            nr_rseq=398,
            sig=0xE7F5DEF3,
            sig_be=0xF3DEF5E7,
            e_machine="EM_ARM",
            elfclass=32,
            endians=("little", "big"),
            machine_names=("armv7l", "armv8l", "armv7b", "arm"),
            cross_triple="arm-linux-gnueabihf",
            qemu="qemu-arm",
            params={"be_macro": "__ARMEB__"},
        ),
        Arch(
            name="ppc64le",
            c_condition="defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__",
            template="ppc.h.j2",
            nr_rseq=387,
            sig=0x0FE5000B,
            sig_be=None,
            e_machine="EM_PPC64",
            elfclass=64,
            endians=("little",),
            machine_names=("ppc64le",),
            cross_triple="powerpc64le-linux-gnu",
            qemu="qemu-ppc64le",
            params={"tp_reg": "13"},
            no_area_offset=1,
        ),
        Arch(
            name="ppc64",
            c_condition="defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__",
            template="ppc.h.j2",
            nr_rseq=387,
            sig=0x0FE5000B,
            sig_be=None,
            e_machine="EM_PPC64",
            elfclass=64,
            endians=("big",),
            machine_names=("ppc64",),
            cross_triple="powerpc64-linux-gnu",
            qemu="qemu-ppc64",
            params={"tp_reg": "13"},
            no_area_offset=1,
        ),
        Arch(
            name="ppc32",
            c_condition="defined(__powerpc__) && !defined(__powerpc64__)",
            template="ppc.h.j2",
            nr_rseq=387,
            sig=0x0FE5000B,
            sig_be=None,
            e_machine="EM_PPC",
            elfclass=32,
            endians=("big",),
            machine_names=("ppc",),
            cross_triple="powerpc-linux-gnu",
            qemu="qemu-ppc",
            params={"tp_reg": "2"},
            no_area_offset=1,
        ),
        Arch(
            name="s390x",
            c_condition="defined(__s390x__)",
            template="s390x.h.j2",
            nr_rseq=383,
            sig=0xB2FF0FFF,
            sig_be=None,
            e_machine="EM_S390",
            elfclass=64,
            endians=("big",),
            machine_names=("s390x",),
            cross_triple="s390x-linux-gnu",
            qemu="qemu-s390x",
        ),
        Arch(
            name="riscv64",
            c_condition="defined(__riscv) && __riscv_xlen == 64",
            template="riscv64.h.j2",
            nr_rseq=293,
            sig=0xF1401073,
            sig_be=None,
            e_machine="EM_RISCV",
            elfclass=64,
            endians=("little",),
            machine_names=("riscv64",),
            cross_triple="riscv64-linux-gnu",
            qemu="qemu-riscv64",
            no_area_offset=1,
        ),
        Arch(
            name="loongarch64",
            c_condition="defined(__loongarch__) && __loongarch_grlen == 64",
            template="loongarch64.h.j2",
            nr_rseq=293,
            sig=0x002A0010,
            sig_be=None,
            e_machine="EM_LOONGARCH",
            elfclass=64,
            endians=("little",),
            machine_names=("loongarch64",),
            # No Debian bookworm cross gcc: the tests use zig cc (PyPI ziglang).
            cross_triple=None,
            qemu="qemu-loongarch64",
            no_area_offset=1,
        ),
    )
}


def host_arch() -> str:
    machine = platform.machine()
    for arch in ARCHES.values():
        if machine in arch.machine_names:
            return arch.name
    raise UsageError(f"host machine {machine!r} is not a supported architecture; pass --arch")


def parse_arch_list(text: str | None) -> list[Arch]:
    """``--arch A[,A...]`` to rows of the table, in the order given, no repeats."""
    names = [n.strip() for n in (text or host_arch()).split(",") if n.strip()]
    if not names:
        raise UsageError("--arch: empty architecture list")
    out: list[Arch] = []
    for name in names:
        arch = ARCHES.get(name)
        if arch is None:
            raise unknown_choice("--arch", "architecture", name, ARCHES)
        if arch not in out:
            out.append(arch)
    return out
