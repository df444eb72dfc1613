"""Per-architecture facts the generator and the verifier share, as one table.

RSEQ_SIG values and syscall numbers: glibc sysdeps/unix/sysv/linux/*/bits/rseq.h
and the kernel syscall tables (shared/reference/rseq-abi.md sections 1.7, 1.8).
Adding an architecture means adding a row here and an ``arch/<template>`` file.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field

from rseq_gen.errors import UsageError


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
            params={"seg": "fs", "word": "q", "ptr_directive": ".quad",
                    "scratch": "rax", "pic_lea": "leaq {label}(%%rip), %%rax"},
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
            params={"seg": "gs", "word": "l", "ptr_directive": ".long",
                    "scratch": "eax"},
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
            raise UsageError(
                f"--arch: unknown architecture {name!r} (known: {', '.join(ARCHES)})"
            )
        if arch not in out:
            out.append(arch)
    return out
