"""Symbol lookups the checks share: one ``Symbols`` per image over its
.symtab and .dynsym (only the names the checks ask for are decoded), and
the TLS placement of a symbol."""

from __future__ import annotations

from rseq_gen import abi
from rseq_gen.elf import SHN_COMMON, SHN_LORESERVE, ElfFile, Symbol

#: The area names every adopter and protocol may define or reference.
AREA_NAMES = ("__rseq_abi", "__rseq_refcount", "__rseq_handled") + abi.GLIBC_SYMBOLS


class Symbols:
    """Lookups in .symtab and .dynsym (whichever exist), by name."""

    def __init__(self, elf: ElfFile, names):
        self.elf = elf
        self.static = elf.find_symbols(names, ".symtab", "rseq") if elf.has_table(".symtab") else {}
        self.dynamic = elf.find_symbols(names, ".dynsym", "rseq") if elf.has_table(".dynsym") else {}

    def best(self, name: str, defined: bool = True) -> Symbol | None:
        """A defined (or undefined) symbol: .symtab first (it has the layout
        after the link), else .dynsym. Section symbols and FILE symbols skipped."""
        for table in (self.static, self.dynamic):
            for s in table.get(name, []):
                if s.type in ("STT_SECTION", "STT_FILE"):
                    continue
                if s.defined == defined:
                    return s
        return None

    def dyn(self, name: str, defined: bool = True) -> Symbol | None:
        """The .dynsym entry of ``name``, defined (or undefined)."""
        for s in self.dynamic.get(name, []):
            if s.defined == defined:
                return s
        return None

    def undefined_refs(self, name: str) -> list[Symbol]:
        """The references to ``name`` (.dynsym when the file has one)."""
        table = self.dynamic if self.elf.has_table(".dynsym") else self.static
        return [s for s in table.get(name, []) if not s.defined and s.type != "STT_SECTION"]

    def exported(self, name: str, s: Symbol) -> bool:
        """Other modules can bind to this definition: in a shared library
        only a .dynsym entry counts (the link made every other one local)."""
        if self.elf.kind() == "shared-library":
            d = self.dyn(name)
            return d is not None and d.exported
        return s.exported


def tls_alignment(elf: ElfFile, s: Symbol) -> tuple[int, int]:
    """(offset inside the TLS block or section, alignment known for it)."""
    if elf.is_relocatable:
        if s.shndx == SHN_COMMON:
            return 0, s.value
        sec = elf.section_at(s.shndx) if s.shndx < SHN_LORESERVE else None
        return s.value, (sec.addralign if sec else 0)
    tls = elf.segment("PT_TLS")
    return s.value, (tls.align if tls else 0)


def effective_align(offset: int, known: int) -> int:
    """The alignment an area at `offset` in a block aligned to `known` has."""
    if offset == 0:
        return known
    return min(known, offset & -offset) if known else offset & -offset
