"""The architecture of an ELF image, as the checks need it: its name, its
RSEQ_SIG and the relocation numbers the field reader resolves. The facts
themselves are rows of rseq_gen.arches (ARCHES, ELF_MACHINES); this module
only picks the row for a file."""

from __future__ import annotations

from dataclasses import dataclass

from rseq_gen.arches import ARCHES, ELF_MACHINES, ELF_VARIANT_NAMES, ElfMachine
from rseq_gen.elf import E_MACHINE_NUMBERS, ElfFile


@dataclass(frozen=True)
class ArchFacts:
    name: str
    sig: int
    sig_be: int | None
    #: Its relocation numbers (NO_RELOCS when they are not known).
    relocs: ElfMachine

    def sig_for(self, endian: str) -> int:
        return self.sig_be if endian == "big" and self.sig_be is not None else self.sig


#: The relocation numbers of a machine ELF_MACHINES has no row for: none.
NO_RELOCS = ElfMachine("unknown", 0, None, {}, -1)


_BY_CODE = {E_MACHINE_NUMBERS[name]: (name, m) for name, m in ELF_MACHINES.items()}


def arch_facts(elf: ElfFile) -> ArchFacts | None:
    """The file's architecture: the ARCHES row of its machine, class and
    byte order when there is one (the generator's name and signature), else
    the machine's ELF_MACHINES row; None for a machine neither knows."""
    em_name, machine = _BY_CODE.get(elf.e_machine_code, (None, None))
    for a in ARCHES.values():
        if E_MACHINE_NUMBERS.get(a.e_machine) == elf.e_machine_code and a.elfclass == elf.elfclass \
                and elf.endian in a.endians:
            return ArchFacts(a.name, a.sig, a.sig_be, machine or NO_RELOCS)
    if machine is None:
        return None
    name = ELF_VARIANT_NAMES.get((em_name, elf.elfclass, elf.endian), machine.name)
    return ArchFacts(name, machine.sig, machine.sig_be, machine)
