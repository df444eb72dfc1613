"""Reading the address fields of the rseq sections with their relocations
applied: in a ``.o`` a field is (section index, offset) after its
relocation against a section symbol; in a linked file an address, after a
RELATIVE (or RELR) or absolute dynamic relocation. The relocation numbers
are rseq_gen.arches.ELF_MACHINES rows (through ``Unit.arch``)."""

from __future__ import annotations

import struct

from rseq_gen.elf import SHN_LORESERVE, SHN_UNDEF, ElfFile


class FieldReader:
    """Reads u32/u64 fields of one section with relocations applied. A
    resolved address is (section index, offset) in a .o and (None, address)
    when linked; None when it cannot be resolved (an unknown relocation)."""

    def __init__(self, unit, sec):
        self.unit = unit
        self.elf = unit.elf
        self.sec = sec
        self.data = self.elf.section_data(sec)
        self.relocs: dict[int, list] = {}
        self.symtab = 0
        if self.elf.is_relocatable:
            relocs, self.symtab = self.elf.relocations_against(sec)
            for r in relocs:
                self.relocs.setdefault(r.offset, []).append(r)
        elif self.elf.e_type == "ET_DYN" and unit.arch is not None:
            for r in self.elf.dynamic_relocations(sec.addr, sec.addr + sec.size):
                self.relocs.setdefault(r.offset - sec.addr, []).append(r)

    def u32(self, off: int) -> int:
        return struct.unpack_from(self.elf.bo + "I", self.data, off)[0]

    def u64(self, off: int) -> int:
        return struct.unpack_from(self.elf.bo + "Q", self.data, off)[0]

    def pointer(self, off: int):
        """A u64 field holding an address (on ELF32, the low word holds the
        address and the high word must be zero)."""
        elf = self.elf
        raw = self.u64(off)
        if elf.elfclass == 32:
            lo_off = off if elf.little_endian else off + 4
            hi_off = off + 4 if elf.little_endian else off
            if self.u32(hi_off) != 0:
                return None
            base_off = lo_off
            raw = self.u32(lo_off)
        else:
            base_off = off
        relocs = self.relocs.get(base_off, [])
        arch = self.unit.arch
        if elf.is_relocatable:
            if not relocs:
                return (None, raw)
            sec_idx, value = None, 0
            for r in relocs:
                addend = r.addend if r.addend is not None else raw
                sym = elf.symbol_at(self.symtab, r.sym)
                if sym is None or sym.shndx == SHN_UNDEF or sym.shndx >= SHN_LORESERVE:
                    return None
                if arch and r.type in arch.relocs.abs_relocs:
                    sec_idx, value = sym.shndx, sym.value + addend
                else:
                    return None
            return (sec_idx, value)
        if relocs and arch is not None:
            r = relocs[0]
            if r.type == arch.relocs.relative or r.type == -1:  # -1: an RELR entry
                return (None, r.addend if r.addend is not None else raw)
            if r.type in arch.relocs.abs_relocs:
                dynsym = next((s for s in elf.sections if s.type == "SHT_DYNSYM"), None)
                sym = elf.symbol_at(dynsym.index, r.sym) if dynsym else None
                if sym is None or not sym.defined:
                    return None
                return (None, sym.value + (r.addend if r.addend is not None else raw))
            return None
        return (None, raw)

    def offset_field(self, off: int):
        """post_commit_offset: a plain number, or ADD/SUB relocations (riscv, loongarch)."""
        raw = self.u64(off)
        relocs = self.relocs.get(off, [])
        arch = self.unit.arch
        if not relocs or not self.elf.is_relocatable or arch is None:
            return raw
        value = raw
        for r in relocs:
            sym = self.elf.symbol_at(self.symtab, r.sym)
            if sym is None:
                return None
            addend = r.addend or 0
            if r.type in arch.relocs.add_relocs:
                value += sym.value + addend
            elif r.type in arch.relocs.sub_relocs:
                value -= sym.value + addend
            else:
                return None
        return value


def fmt_addr(elf: ElfFile, where) -> str:
    """A resolved address as text: ``0x...`` or ``section+0x...``."""
    sec_idx, value = where
    if sec_idx is None:
        return f"{value:#x}"
    sec = elf.section_at(sec_idx)
    return f"{sec.name if sec else '?'}+{value:#x}"


def code_section(elf: ElfFile, where):
    """(section, offset in it) for a resolved code address, or (None, None)."""
    sec_idx, value = where
    if sec_idx is not None:
        sec = elf.section_at(sec_idx)
        return (sec, value) if sec is not None else (None, None)
    sec = elf.section_for_addr(value)
    return (sec, value - sec.addr) if sec is not None else (None, None)
