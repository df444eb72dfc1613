"""The one module that reads ELF files (the auditwheel ``elfutils`` idea).

Everything the verifier needs from an ELF file goes through :class:`ElfFile`.
What is decoded where:

- by hand, with :mod:`struct`: the ELF header (with the checks that turn a
  bad file into one line), the section and program header tables, symbol
  tables (one ``iter_unpack`` pass, or a byte search in the string table
  for a few names), relocations (REL, RELA, RELR) and notes;
- by pyelftools: the dynamic section's tags and the GNU version tables
  (verneed, verdef), and the names of e_type, e_machine, sh_type and
  p_type values.

The hand decoding is kept where it was measured faster on real files
(``python benchmarks/elf_decode.py FILE...``, best of 7 on this project's
machine): the headers, sections and segments of libLLVM-15.so.1 (117 MB)
in 0.08 ms against 60 ms through pyelftools' ``iter_sections`` and
``iter_segments``, of libc.so.6 in 0.15 ms against 8.6 ms; four ``.dynsym``
lookups in libLLVM-15 in 10 ms against 1.8 s with ``get_symbol_by_name``
(pyelftools parses one symbol per seek). A closure check opens every
library of a process, so this is the verifier's start-up time.

Malformed input raises :class:`ElfError` with one line that says what is
wrong (truncated, not ELF, wrong class, ...). Callers never see another
exception type for a bad file: :func:`open_elf` converts them.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from typing import Iterable

from elftools.elf.enums import ENUM_E_MACHINE, ENUM_E_TYPE, ENUM_P_TYPE_BASE, ENUM_SH_TYPE_BASE


def _invert(enum: dict) -> dict[int, str]:
    out: dict[int, str] = {}
    for k, v in enum.items():
        if isinstance(v, int) and not k.startswith("_"):
            out.setdefault(v, k)
    return out


_E_TYPE = _invert(ENUM_E_TYPE)
_E_MACHINE = _invert(ENUM_E_MACHINE)
_SH_TYPE = _invert(ENUM_SH_TYPE_BASE)
_SH_TYPE.update({0x6FFFFFF6: "SHT_GNU_HASH", 0x6FFFFFFD: "SHT_GNU_verdef", 0x6FFFFFFE: "SHT_GNU_verneed",
                 0x6FFFFFFF: "SHT_GNU_versym", 19: "SHT_RELR", 0x6FFFFFF5: "SHT_GNU_ATTRIBUTES"})
_P_TYPE = _invert(ENUM_P_TYPE_BASE)
_P_TYPE.update({0x6474E550: "PT_GNU_EH_FRAME", 0x6474E551: "PT_GNU_STACK", 0x6474E552: "PT_GNU_RELRO",
                0x6474E553: "PT_GNU_PROPERTY"})


def _name(table: dict[int, str], value: int, prefix: str = "") -> str:
    return table.get(value) or f"{prefix}0x{value:x}"

ELF_MAGIC = b"\x7fELF"

SHF_WRITE = 0x1
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4
SHF_TLS = 0x400

SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
SHN_ABS = 0xFFF1
SHN_COMMON = 0xFFF2
SHN_XINDEX = 0xFFFF

STB_NAMES = {0: "STB_LOCAL", 1: "STB_GLOBAL", 2: "STB_WEAK", 10: "STB_GNU_UNIQUE"}
STT_NAMES = {0: "STT_NOTYPE", 1: "STT_OBJECT", 2: "STT_FUNC", 3: "STT_SECTION", 4: "STT_FILE",
             5: "STT_COMMON", 6: "STT_TLS", 10: "STT_GNU_IFUNC"}
STV_NAMES = {0: "STV_DEFAULT", 1: "STV_INTERNAL", 2: "STV_HIDDEN", 3: "STV_PROTECTED"}

DF_STATIC_TLS = 0x10
DF_1_NODELETE = 0x8
DF_1_PIE = 0x08000000
VER_FLG_WEAK = 0x2

#: e_machine numbers, for inputs whose machine pyelftools does not name.
E_MACHINE_NUMBERS = {
    "EM_386": 3, "EM_PPC": 20, "EM_PPC64": 21, "EM_S390": 22, "EM_ARM": 40, "EM_X86_64": 62,
    "EM_AARCH64": 183, "EM_RISCV": 243, "EM_LOONGARCH": 258,
}


class ElfError(Exception):
    """A malformed or unsupported file; ``str()`` is one line."""


@dataclass(frozen=True)
class Section:
    index: int
    name: str
    type: str
    flags: int
    addr: int
    offset: int
    size: int
    addralign: int
    entsize: int
    link: int
    info: int

    @property
    def nobits(self) -> bool:
        return self.type == "SHT_NOBITS"

    @property
    def executable(self) -> bool:
        return bool(self.flags & SHF_EXECINSTR)


@dataclass(frozen=True)
class Segment:
    type: str
    offset: int
    vaddr: int
    filesz: int
    memsz: int
    flags: int
    align: int


@dataclass(frozen=True)
class Symbol:
    index: int
    name: str
    value: int
    size: int
    type: str
    bind: str
    visibility: str
    shndx: int
    table: str  # ".symtab" or ".dynsym"

    @property
    def defined(self) -> bool:
        return self.shndx != SHN_UNDEF

    @property
    def exported(self) -> bool:
        """Visible to other modules: global or weak, default or protected."""
        return (self.defined and self.bind in ("STB_GLOBAL", "STB_WEAK", "STB_GNU_UNIQUE")
                and self.visibility in ("STV_DEFAULT", "STV_PROTECTED"))


@dataclass(frozen=True)
class Reloc:
    offset: int
    type: int
    sym: int
    addend: int | None  # None for REL: the addend is in place


@dataclass(frozen=True)
class Note:
    owner: str
    type: int
    desc: bytes


class ElfFile:
    """A read-only view of one ELF image held in memory (bytes or mmap)."""

    def __init__(self, data, name: str = "<elf>"):
        self.name = name
        self.data = data
        self._validate_ident()
        self._elf_obj = None
        try:
            self.e_type = _name(_E_TYPE, self._u16(16))
            self.e_machine_code = self._u16(18)
            self.e_machine = _name(_E_MACHINE, self.e_machine_code)
            self._sections = self._read_sections()
            self._segments = self._read_segments()
        except ElfError:
            raise
        except Exception as exc:  # struct errors on garbage
            raise ElfError(f"malformed ELF: {type(exc).__name__}: {exc}") from None
        self._by_name: dict[str, list[Section]] = {}
        for s in self._sections:
            self._by_name.setdefault(s.name, []).append(s)
        self._symcache: dict[str, list[Symbol]] = {}

    @property
    def _elf(self):
        """pyelftools' view, built on first use (dynamic tags, versions)."""
        if self._elf_obj is None:
            from elftools.elf.elffile import ELFFile as _ELFFile

            data = self.data
            self._elf_obj = _ELFFile(data if hasattr(data, "seek") else io.BytesIO(data))
        return self._elf_obj

    def _u16(self, off: int) -> int:
        return struct.unpack_from(self.bo + "H", self.data, off)[0]

    # ---- header -------------------------------------------------------
    def _validate_ident(self) -> None:
        data = self.data
        size = len(data)
        if size < 4 or bytes(data[:4]) != ELF_MAGIC:
            if size >= 8 and bytes(data[:8]) in (b"!<arch>\n", b"!<thin>\n"):
                raise ElfError("archive where an ELF file was expected")
            raise ElfError("not an ELF file (bad magic)" if size >= 4 else f"truncated: {size} bytes, "
                           "shorter than the ELF magic")
        if size < 16:
            raise ElfError(f"truncated: {size} bytes, shorter than e_ident (16)")
        ei_class, ei_data, ei_version = data[4], data[5], data[6]
        if ei_class not in (1, 2):
            raise ElfError(f"wrong ELF class byte {ei_class} (expected 1 for ELF32 or 2 for ELF64)")
        if ei_data not in (1, 2):
            raise ElfError(f"bad data encoding byte {ei_data} (expected 1 little or 2 big endian)")
        if ei_version != 1:
            raise ElfError(f"bad EI_VERSION {ei_version} (expected 1)")
        self.elfclass = 64 if ei_class == 2 else 32
        self.little_endian = ei_data == 1
        self.endian = "little" if self.little_endian else "big"
        self.bo = "<" if self.little_endian else ">"
        ehsize = 64 if self.elfclass == 64 else 52
        if size < ehsize:
            raise ElfError(f"truncated: {size} bytes, shorter than the ELF{self.elfclass} header ({ehsize})")
        if self.elfclass == 64:
            self._phoff, self._shoff = struct.unpack_from(self.bo + "QQ", data, 0x20)
            (_flags, _ehsz, phentsize, phnum, shentsize, shnum, shstrndx) = struct.unpack_from(
                self.bo + "IHHHHHH", data, 0x30)
        else:
            self._phoff, self._shoff = struct.unpack_from(self.bo + "II", data, 0x1C)
            (_flags, _ehsz, phentsize, phnum, shentsize, shnum, shstrndx) = struct.unpack_from(
                self.bo + "IHHHHHH", data, 0x24)
        want_sh = 64 if self.elfclass == 64 else 40
        want_ph = 56 if self.elfclass == 64 else 32
        if self._shoff:
            if shnum and shentsize != want_sh:
                raise ElfError(f"bad e_shentsize {shentsize} (expected {want_sh})")
            if shnum == 0 and self._shoff + want_sh <= size:
                # Extended numbering: the real count is in section 0's sh_size.
                off = self._shoff + (32 if self.elfclass == 64 else 20)
                shnum = struct.unpack_from(self.bo + ("Q" if self.elfclass == 64 else "I"), data, off)[0]
            end = self._shoff + shnum * want_sh
            if end > size:
                raise ElfError(f"truncated: section header table ends at {end}, file has {size} bytes")
            if shnum and shstrndx != SHN_XINDEX and shstrndx >= shnum:
                raise ElfError(f"bad e_shstrndx {shstrndx} (only {shnum} sections)")
        if phnum and self._phoff:
            if phentsize != want_ph:
                raise ElfError(f"bad e_phentsize {phentsize} (expected {want_ph})")
            end = self._phoff + phnum * want_ph
            if end > size:
                raise ElfError(f"truncated: program header table ends at {end}, file has {size} bytes")
        self._shnum = shnum if self._shoff else 0
        self._shstrndx = shstrndx
        self._phnum = phnum if self._phoff else 0

    def _read_sections(self) -> list[Section]:
        out: list[Section] = []
        if not self._shnum:
            return out
        data, size = self.data, len(self.data)
        if self.elfclass == 64:
            fmt, esz = self.bo + "IIQQQQIIQQ", 64
        else:
            fmt, esz = self.bo + "IIIIIIIIII", 40
        raw = bytes(data[self._shoff:self._shoff + self._shnum * esz])
        heads = list(struct.iter_unpack(fmt, raw))
        shstrndx = self._shstrndx
        if shstrndx == SHN_XINDEX:
            shstrndx = heads[0][6]
        names = b""
        if 0 < shstrndx < len(heads):
            h = heads[shstrndx]
            if h[4] + h[5] > size:
                raise ElfError(f"truncated: section name table ends at {h[4] + h[5]}, file has {size} bytes")
            names = bytes(data[h[4]:h[4] + h[5]])
        for i, h in enumerate(heads):
            sh_name, sh_type, flags, addr, offset, sz, link, info, align, entsize = h
            if sh_name >= len(names) and sh_name:
                raise ElfError(f"bad sh_name {sh_name} in section [{i}] (name table has {len(names)} bytes)")
            end = names.find(b"\0", sh_name)
            name = names[sh_name:end if end >= 0 else len(names)].decode("utf-8", "replace")
            stype = _name(_SH_TYPE, sh_type, "SHT_")
            if stype not in ("SHT_NOBITS", "SHT_NULL") and offset + sz > size:
                raise ElfError(f"truncated: section [{i}] {name or '?'} ends at {offset + sz}, "
                               f"file has {size} bytes")
            out.append(Section(i, name, stype, flags, addr, offset, sz, align, entsize, link, info))
        return out

    def _read_segments(self) -> list[Segment]:
        out: list[Segment] = []
        if not self._phnum:
            return out
        if self.elfclass == 64:
            fmt, esz = self.bo + "IIQQQQQQ", 56
        else:
            fmt, esz = self.bo + "IIIIIIII", 32
        raw = bytes(self.data[self._phoff:self._phoff + self._phnum * esz])
        for h in struct.iter_unpack(fmt, raw):
            if self.elfclass == 64:
                ptype, flags, off, vaddr, _paddr, filesz, memsz, align = h
            else:
                ptype, off, vaddr, _paddr, filesz, memsz, flags, align = h
            out.append(Segment(_name(_P_TYPE, ptype, "PT_"), off, vaddr, filesz, memsz, flags, align))
        return out

    @property
    def sections(self) -> list[Section]:
        return self._sections

    @property
    def segments(self) -> list[Segment]:
        return self._segments

    def sections_named(self, name: str) -> list[Section]:
        return self._by_name.get(name, [])

    def section(self, name: str) -> Section | None:
        found = self._by_name.get(name)
        return found[0] if found else None

    def section_at(self, index: int) -> Section | None:
        return self._sections[index] if 0 <= index < len(self._sections) else None

    def section_data(self, sec: Section) -> bytes:
        if sec.nobits:
            return bytes(sec.size)
        return bytes(self.data[sec.offset:sec.offset + sec.size])

    def segment(self, ptype: str) -> Segment | None:
        for s in self._segments:
            if s.type == ptype:
                return s
        return None

    @property
    def is_relocatable(self) -> bool:
        return self.e_type == "ET_REL"

    @property
    def interp(self) -> str | None:
        seg = self.segment("PT_INTERP")
        if seg is None:
            return None
        raw = bytes(self.data[seg.offset:seg.offset + seg.filesz])
        return raw.split(b"\0", 1)[0].decode("utf-8", "replace")

    def kind(self) -> str:
        """relocatable / shared-library / pie-executable / executable / core."""
        if self.e_type == "ET_REL":
            return "relocatable"
        if self.e_type == "ET_EXEC":
            return "executable"
        if self.e_type == "ET_DYN":
            flags_1 = self.dynamic().get("flags_1", 0)
            if flags_1 & DF_1_PIE or (self.interp is not None and not self.dynamic().get("soname")):
                return "pie-executable"
            return "shared-library"
        return self.e_type.lower()

    # ---- addresses ------------------------------------------------------
    def section_for_addr(self, addr: int) -> Section | None:
        for s in self._sections:
            if s.flags & SHF_ALLOC and not (s.flags & SHF_TLS) and s.addr <= addr < s.addr + s.size:
                return s
        return None

    # ---- symbols --------------------------------------------------------
    def _strtab(self, sec: Section) -> bytes:
        link = self.section_at(sec.link)
        if link is None or link.type != "SHT_STRTAB":
            raise ElfError(f"symbol table {sec.name} links to section {sec.link}, not a string table")
        return self.section_data(link)

    def _symtab_section(self, table: str) -> Section | None:
        want = "SHT_SYMTAB" if table == ".symtab" else "SHT_DYNSYM"
        for s in self._sections:
            if s.type == want:
                return s
        return None

    def has_table(self, table: str) -> bool:
        return self._symtab_section(table) is not None

    def _sym_format(self) -> tuple[str, int]:
        return (self.bo + "IBBHQQ", 24) if self.elfclass == 64 else (self.bo + "IIIBBH", 16)

    def _make_symbol(self, idx, rec, strtab, table):
        if self.elfclass == 64:
            st_name, info, other, shndx, value, size = rec
        else:
            st_name, value, size, info, other, shndx = rec
        end = strtab.find(b"\0", st_name)
        name = strtab[st_name:end if end >= 0 else len(strtab)].decode("utf-8", "replace")
        return Symbol(idx, name, value, size, STT_NAMES.get(info & 0xF, f"STT_{info & 0xF}"),
                      STB_NAMES.get(info >> 4, f"STB_{info >> 4}"), STV_NAMES[other & 3], shndx, table)

    def symbols(self, table: str = ".symtab") -> list[Symbol]:
        """Every symbol of a table, decoded in one ``struct.iter_unpack`` pass."""
        if table in self._symcache:
            return self._symcache[table]
        sec = self._symtab_section(table)
        out: list[Symbol] = []
        if sec is not None:
            strtab = self._strtab(sec)
            fmt, size = self._sym_format()
            raw = self.section_data(sec)
            raw = raw[: len(raw) - len(raw) % size]
            make = self._make_symbol
            out = [make(i, rec, strtab, table) for i, rec in enumerate(struct.iter_unpack(fmt, raw))]
        self._symcache[table] = out
        return out

    def symbol_at(self, table_index: int, idx: int) -> Symbol | None:
        """Symbol number ``idx`` of the symbol table in section ``table_index``."""
        sec = self.section_at(table_index)
        if sec is None or sec.type not in ("SHT_SYMTAB", "SHT_DYNSYM"):
            return None
        fmt, size = self._sym_format()
        off = idx * size
        if off + size > sec.size:
            return None
        rec = struct.unpack_from(fmt, self.data, sec.offset + off)
        return self._make_symbol(idx, rec, self._strtab(sec),
                                 ".symtab" if sec.type == "SHT_SYMTAB" else ".dynsym")

    def find_symbols(self, names: Iterable[str], table: str = ".symtab",
                     anchor: str | None = None) -> dict[str, list[Symbol]]:
        """Symbols with these exact names, without decoding the whole table:
        find each name in the string table, then find the entries whose
        ``st_name`` points there with one byte search over the table. The
        names that contain ``anchor`` are found with one scan for it instead
        of one scan each (a big string table rarely holds the anchor)."""
        names = list(names)
        out: dict[str, list[Symbol]] = {n: [] for n in names}
        if table in self._symcache:
            for s in self._symcache[table]:
                if s.name in out:
                    out[s.name].append(s)
            return out
        sec = self._symtab_section(table)
        if sec is None:
            return out
        strtab = self._strtab(sec)
        raw = self.section_data(sec)
        fmt, size = self._sym_format()
        offsets = self._name_offsets(strtab, names, anchor)
        for name in names:
            for pos in offsets[name]:
                key = struct.pack(self.bo + "I", pos)
                hit = raw.find(key)
                while hit >= 0:
                    if hit % size == 0 and hit + size <= len(raw):
                        idx = hit // size
                        rec = struct.unpack_from(fmt, raw, hit)
                        out[name].append(self._make_symbol(idx, rec, strtab, table))
                    hit = raw.find(key, hit + 1)
        for name in names:
            out[name].sort(key=lambda s: s.index)
        return out

    @staticmethod
    def _name_offsets(strtab: bytes, names: list[str], anchor: str | None) -> dict[str, list[int]]:
        """Every offset in ``strtab`` where a name starts and ends with the
        NUL (a name may be the tail of a longer string the linker merged)."""
        out: dict[str, list[int]] = {n: [] for n in names}
        anchored = [n for n in names if anchor and anchor in n]
        for name in names:
            if name in anchored:
                continue
            needle = name.encode() + b"\0"
            pos = strtab.find(needle)
            while pos >= 0:
                out[name].append(pos)
                pos = strtab.find(needle, pos + 1)
        if anchored:
            wanted = [(n, n.encode()) for n in anchored]
            mark = anchor.encode()
            pos = strtab.find(mark)
            while pos >= 0:
                end = strtab.find(b"\0", pos)
                end = len(strtab) if end < 0 else end
                start = strtab.rfind(b"\0", 0, pos) + 1
                text = strtab[start:end]
                for name, raw_name in wanted:
                    if text.endswith(raw_name):
                        out[name].append(end - len(raw_name))
                pos = strtab.find(mark, end)
        for name in anchored:
            out[name].sort()
        return out

    # ---- relocations -----------------------------------------------------
    def _rel_format(self, rela: bool) -> tuple[str, int]:
        if self.elfclass == 64:
            return (self.bo + ("QQq" if rela else "QQ"), 24 if rela else 16)
        return (self.bo + ("IIi" if rela else "II"), 12 if rela else 8)

    def relocations(self, sec: Section) -> list[Reloc]:
        """The entries of one SHT_REL or SHT_RELA section, decoded in one pass."""
        rela = sec.type == "SHT_RELA"
        fmt, size = self._rel_format(rela)
        raw = self.section_data(sec)
        raw = raw[: len(raw) - len(raw) % size]
        out = []
        shift, mask = (32, 0xFFFFFFFF) if self.elfclass == 64 else (8, 0xFF)
        for rec in struct.iter_unpack(fmt, raw):
            info = rec[1]
            out.append(Reloc(rec[0], info & mask, info >> shift, rec[2] if rela else None))
        return out

    def relocations_against(self, target: Section) -> tuple[list[Reloc], int]:
        """Relocations applying to ``target`` in a ``.o``: (relocs, symtab index)."""
        relocs: list[Reloc] = []
        symtab = 0
        for s in self._sections:
            if s.type in ("SHT_RELA", "SHT_REL") and s.info == target.index:
                relocs.extend(self.relocations(s))
                symtab = s.link
        return relocs, symtab

    def dynamic_relocations(self, lo: int | None = None, hi: int | None = None) -> list[Reloc]:
        """Relocations the dynamic loader applies (all SHT_REL/RELA sections
        of an ALLOC kind, plus SHT_RELR unpacked), optionally limited to
        offsets in [lo, hi)."""
        if not hasattr(self, "_dynrel"):
            every: list[Reloc] = []
            for s in self._sections:
                if not s.flags & SHF_ALLOC:
                    continue
                if s.type in ("SHT_RELA", "SHT_REL"):
                    every.extend(self.relocations(s))
                elif s.type == "SHT_RELR":
                    every.extend(self._relr(s))
            self._dynrel = every
        if lo is None:
            return list(self._dynrel)
        return [r for r in self._dynrel if lo <= r.offset < hi]

    def _relr(self, sec: Section) -> list[Reloc]:
        word = 8 if self.elfclass == 64 else 4
        fmt = self.bo + ("Q" if word == 8 else "I")
        raw = self.section_data(sec)
        raw = raw[: len(raw) - len(raw) % word]
        out, where = [], 0
        for (entry,) in struct.iter_unpack(fmt, raw):
            if entry & 1 == 0:
                out.append(Reloc(entry, -1, 0, None))
                where = entry + word
            else:
                bits, i = entry >> 1, 0
                while bits:
                    if bits & 1:
                        out.append(Reloc(where + i * word, -1, 0, None))
                    bits >>= 1
                    i += 1
                where += (word * 8 - 1) * word
        return out

    # ---- dynamic section and versions -------------------------------------
    def dynamic(self) -> dict:
        """DT_NEEDED, DT_RPATH, DT_RUNPATH, DT_SONAME, DT_FLAGS, DT_FLAGS_1."""
        if hasattr(self, "_dyn"):
            return self._dyn
        out: dict = {"needed": []}
        try:
            for s in self._sections:
                if s.type != "SHT_DYNAMIC":
                    continue
                sec = self._elf.get_section(s.index)
                for tag in sec.iter_tags():
                    t = tag.entry.d_tag
                    if t == "DT_NEEDED":
                        out["needed"].append(tag.needed)
                    elif t == "DT_RPATH":
                        out["rpath"] = tag.rpath
                    elif t == "DT_RUNPATH":
                        out["runpath"] = tag.runpath
                    elif t == "DT_SONAME":
                        out["soname"] = tag.soname
                    elif t == "DT_FLAGS":
                        out["flags"] = tag.entry.d_val
                    elif t == "DT_FLAGS_1":
                        out["flags_1"] = tag.entry.d_val
                break
        except Exception as exc:
            raise ElfError(f"malformed dynamic section: {type(exc).__name__}: {exc}") from None
        self._dyn = out
        return out

    def symbol_versions(self, dynsym_indices: Iterable[int]) -> dict[int, dict]:
        """Version of ``.dynsym`` entries: {index: {"version", "file"|None,
        "defined": bool, "weak": bool (VER_FLG_WEAK on the requirement)}}."""
        versym = next((s for s in self._sections if s.type == "SHT_GNU_versym"), None)
        if versym is None:
            return {}
        raw = self.section_data(versym)
        needs: dict[int, tuple[str, str, bool]] = {}
        defs: dict[int, str] = {}
        try:
            for s in self._sections:
                if s.type not in ("SHT_GNU_verneed", "SHT_GNU_verdef"):
                    continue
                # sh_info is the entry count; pyelftools trusts it, so bound it.
                if s.info > s.size // 16:
                    raise ElfError(f"bad sh_info {s.info} in {s.name or s.type}: more version "
                                   f"entries than its {s.size} bytes can hold")
                sec = self._elf.get_section(s.index)
                t = s.type
                if t == "SHT_GNU_verneed":
                    for verneed, auxs in sec.iter_versions():
                        for aux in auxs:
                            needs[aux.entry.vna_other] = (aux.name, verneed.name,
                                                          bool(aux.entry.vna_flags & VER_FLG_WEAK))
                elif t == "SHT_GNU_verdef":
                    for verdef, auxs in sec.iter_versions():
                        names = [a.name for a in auxs]
                        if names:
                            defs[verdef.entry.vd_ndx] = names[0]
        except Exception as exc:
            raise ElfError(f"malformed version sections: {type(exc).__name__}: {exc}") from None
        out = {}
        for idx in dynsym_indices:
            if 2 * idx + 2 > len(raw):
                continue
            ndx = struct.unpack_from(self.bo + "H", raw, 2 * idx)[0] & 0x7FFF
            if ndx in needs:
                ver, file, weak = needs[ndx]
                out[idx] = {"version": ver, "file": file, "defined": False, "weak": weak}
            elif ndx in defs:
                out[idx] = {"version": defs[ndx], "file": None, "defined": True, "weak": False}
        return out

    # ---- notes ----------------------------------------------------------
    def notes(self, section_name: str) -> list[Note]:
        out = []
        for sec in self.sections_named(section_name):
            raw = self.section_data(sec)
            pos = 0
            while pos + 12 <= len(raw):
                namesz, descsz, ntype = struct.unpack_from(self.bo + "III", raw, pos)
                pos += 12
                name_end = pos + namesz
                desc_start = pos + ((namesz + 3) & ~3)
                desc_end = desc_start + descsz
                if name_end > len(raw) or desc_end > len(raw):
                    raise ElfError(f"truncated note in {section_name}")
                owner = raw[pos:name_end].rstrip(b"\0").decode("utf-8", "replace")
                out.append(Note(owner, ntype, raw[desc_start:desc_end]))
                pos = desc_start + ((descsz + 3) & ~3)
        return out


def open_elf(data, name: str = "<elf>") -> ElfFile:
    """:class:`ElfFile` or :class:`ElfError`, never another exception."""
    try:
        return ElfFile(data, name)
    except ElfError:
        raise
    except Exception as exc:
        raise ElfError(f"malformed ELF: {type(exc).__name__}: {exc}") from None


def map_file(path: str):
    """The file's contents: an mmap for big files (only the pages read are
    loaded), bytes for small ones. OSError propagates."""
    import mmap

    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size >= (1 << 20):
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return f.read()
