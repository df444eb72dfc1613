"""The checks behind ``rseq-gen verify``: one ELF image in, facts and
findings out (plain dicts, so they cross process boundaries and go straight
into the JSON report)."""

from __future__ import annotations

from collections import Counter

import struct
from dataclasses import dataclass, field

from rseq_gen import abi
from rseq_gen.adopters import ADOPTERS
from rseq_gen.arches import ARCHES
from rseq_gen.elf import (DF_1_NODELETE, DF_STATIC_TLS, E_MACHINE_NUMBERS, SHN_COMMON,
                          SHN_LORESERVE, SHN_UNDEF, ElfFile, Symbol)
from rseq_gen.protocols import PROTOCOLS
from rseq_gen.rules import RULES
from rseq_gen.verify import recognise

# ---------------------------------------------------------------------------
# Architecture facts the verifier recognises (generated or not).

@dataclass(frozen=True)
class ArchFacts:
    name: str
    sig: int
    sig_be: int | None
    abs_relocs: dict            # reloc type -> width in bytes (S + A)
    relative: int               # R_*_RELATIVE
    add_relocs: frozenset = frozenset()
    sub_relocs: frozenset = frozenset()
    ie_relocs: frozenset = frozenset()      # static initial-exec TLS relocations (.o)
    tpoff_relocs: frozenset = frozenset()   # dynamic TPOFF relocations (linked)

    def sig_for(self, endian: str) -> int:
        return self.sig_be if endian == "big" and self.sig_be is not None else self.sig


#: Machines rseq-gen must recognise even when it cannot generate for them.
#: RSEQ_SIG values: glibc sysdeps/unix/sysv/linux/*/bits/rseq.h. Relocation
#: numbers: the psABI documents (glibc elf.h spellings).
_KNOWN = {
    E_MACHINE_NUMBERS["EM_X86_64"]: ArchFacts(
        "x86_64", 0x53053053, None, {1: 8, 10: 4}, 8,
        ie_relocs=frozenset({22}), tpoff_relocs=frozenset({18})),
    E_MACHINE_NUMBERS["EM_386"]: ArchFacts(
        "i386", 0x53053053, None, {1: 4}, 8,
        ie_relocs=frozenset({15, 16, 33}), tpoff_relocs=frozenset({14, 37})),
    E_MACHINE_NUMBERS["EM_AARCH64"]: ArchFacts(
        "aarch64", 0xD428BC00, 0x00BC28D4, {257: 8, 258: 4}, 1027,
        ie_relocs=frozenset({541, 542}), tpoff_relocs=frozenset({1030})),
    E_MACHINE_NUMBERS["EM_ARM"]: ArchFacts(
        "arm", 0xE7F5DEF3, 0xF3DEF5E7, {2: 4}, 23,
        ie_relocs=frozenset({107}), tpoff_relocs=frozenset({19})),
    E_MACHINE_NUMBERS["EM_PPC64"]: ArchFacts(
        "ppc64", 0x0FE5000B, None, {38: 8, 1: 4}, 22,
        ie_relocs=frozenset({87, 88, 89, 90}), tpoff_relocs=frozenset({73})),
    E_MACHINE_NUMBERS["EM_PPC"]: ArchFacts(
        "ppc", 0x0FE5000B, None, {1: 4}, 22,
        ie_relocs=frozenset({87, 88, 89, 90}), tpoff_relocs=frozenset({73})),
    E_MACHINE_NUMBERS["EM_S390"]: ArchFacts(
        "s390x", 0xB2FF0FFF, None, {22: 8, 4: 4}, 12,
        ie_relocs=frozenset({41, 42, 53}), tpoff_relocs=frozenset({56})),
    E_MACHINE_NUMBERS["EM_RISCV"]: ArchFacts(
        "riscv64", 0xF1401073, None, {2: 8, 1: 4}, 3,
        add_relocs=frozenset({35, 36}), sub_relocs=frozenset({39, 40}),
        ie_relocs=frozenset({21}), tpoff_relocs=frozenset({11})),
    E_MACHINE_NUMBERS["EM_LOONGARCH"]: ArchFacts(
        "loongarch64", 0x002A0010, None, {2: 8, 1: 4}, 3,
        add_relocs=frozenset({50, 51}), sub_relocs=frozenset({55, 56}),
        ie_relocs=frozenset({93, 94, 95, 96}), tpoff_relocs=frozenset({10})),
}


def arch_facts(elf: ElfFile) -> ArchFacts | None:
    """The machine's facts; the signature comes from rseq_gen.arches.ARCHES
    whenever the generator knows the architecture."""
    base = _KNOWN.get(elf.e_machine_code)
    for a in ARCHES.values():
        code = E_MACHINE_NUMBERS.get(a.e_machine)
        if code == elf.e_machine_code and a.elfclass == elf.elfclass and elf.endian in a.endians:
            if base is None:
                base = ArchFacts(a.name, a.sig, a.sig_be, {}, -1)
            return ArchFacts(a.name, a.sig, a.sig_be, base.abs_relocs, base.relative, base.add_relocs,
                             base.sub_relocs, base.ie_relocs, base.tpoff_relocs)
    if base is not None and base.name == "ppc64" and elf.little_endian:
        return ArchFacts("ppc64le", *[getattr(base, f) for f in
                                      ("sig", "sig_be", "abs_relocs", "relative", "add_relocs",
                                       "sub_relocs", "ie_relocs", "tpoff_relocs")])
    if base is not None and base.name == "s390x" and elf.elfclass == 32:
        return ArchFacts("s390", *[getattr(base, f) for f in
                                   ("sig", "sig_be", "abs_relocs", "relative", "add_relocs",
                                    "sub_relocs", "ie_relocs", "tpoff_relocs")])
    return base


# ---------------------------------------------------------------------------
# Reports.

@dataclass
class Context:
    """What the user told verify (per run)."""
    protocol: str | None = None
    min_glibc: tuple[int, int] | None = None
    dlopen: bool = False
    manifest: dict | None = None
    #: How the file is loaded, when known: "needed" (a DT_NEEDED library of
    #: a closure: never unloaded on its own), "plugin" (--plugin: dlopen'd),
    #: None (an input; --dlopen and the manifest say).
    loaded_as: str | None = None


@dataclass
class Unit:
    """One ELF image being checked (a file, or one member of an archive)."""
    path: str
    member: str | None
    elf: ElfFile
    arch: ArchFacts | None
    findings: list = field(default_factory=list)

    def add(self, rule_id: str, symbol: str | None = None, section: str | None = None,
            address: int | None = None, severity: str | None = None, **fields) -> None:
        rule = RULES[rule_id]
        try:
            message = rule.message.format(symbol=symbol, section=section, address=address, **fields)
        except (KeyError, ValueError, IndexError):
            message = rule.summary
        self.findings.append({
            "rule": rule.id, "name": rule.name, "severity": severity or rule.severity, "message": message,
            "fix": rule.fix, "file": self.path, "member": self.member, "symbol": symbol,
            "section": section, "address": address, "source": None,
        })


def parse_note_desc(desc: bytes) -> dict | None:
    text = desc.split(b"\0", 1)[0].decode("utf-8", "replace")
    out = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if not sep:
            return None
        out[key.strip()] = value.strip()
    if "protocol" not in out:
        return None
    out["dlopen_safe"] = out.get("dlopen_safe") == "1"
    out["arches"] = [a for a in out.get("arches", "").split(",") if a]
    # Notes from before --registration: the 32-byte legacy registration.
    out.setdefault("registration", "legacy")
    try:
        out["max_len"] = int(out.get("max_len", abi.AREA_SIZE))
    except ValueError:
        return None
    out["desc"] = text
    return out


def _protocol(name: str | None):
    return PROTOCOLS.get(name) if name else None


# ---------------------------------------------------------------------------
# Symbol lookups.

_AREA_NAMES = ("__rseq_abi", "__rseq_refcount", "__rseq_handled") + abi.GLIBC_SYMBOLS


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
        for s in self.dynamic.get(name, []):
            if s.defined == defined:
                return s
        return None

    def undefined_refs(self, name: str) -> list[Symbol]:
        table = self.dynamic if self.elf.has_table(".dynsym") else self.static
        return [s for s in table.get(name, []) if not s.defined and s.type != "STT_SECTION"]


# ---------------------------------------------------------------------------

def analyze(unit: Unit, ctx: Context) -> dict:
    """Run every per-image rule; return the image's facts for the
    protocol/closure analysis."""
    elf = unit.elf
    notes = []
    for n in elf.notes(abi.NOTE_SECTION):
        if n.owner != abi.NOTE_OWNER or n.type != abi.NOTE_TYPE_PROTOCOL:
            continue
        parsed = parse_note_desc(n.desc)
        if parsed is None:
            unit.add("RSEQ504", section=abi.NOTE_SECTION,
                     problem=f"unparsable rseq-gen note {n.desc[:60]!r}")
            continue
        if parsed["protocol"] not in PROTOCOLS:
            unit.add("RSEQ504", section=abi.NOTE_SECTION,
                     problem=f"note names unknown protocol {parsed['protocol']!r}")
        notes.append(parsed)
    # One generated object per prefix: duplicates (same object linked twice) collapse.
    seen, uniq = set(), []
    for n in notes:
        key = (n.get("prefix"), n["protocol"])
        if key not in seen:
            seen.add(key)
            uniq.append(n)
    notes = uniq

    expected = ctx.protocol or (ctx.manifest or {}).get("options", {}).get("protocol")
    if expected and notes and expected not in {n["protocol"] for n in notes}:
        unit.add("RSEQ505", section=abi.NOTE_SECTION,
                 found=", ".join(sorted({n["protocol"] for n in notes})), expected=expected)
    protocols = [n["protocol"] for n in notes] or ([expected] if expected else [])

    private_names = [f"{n['prefix']}__private_area" for n in notes
                     if (_protocol(n["protocol"]) and _protocol(n["protocol"]).area == "private"
                         and n.get("prefix"))]
    if ctx.manifest:
        private_names += [s["name"] for s in ctx.manifest.get("symbols", []) if s.get("role") == "private"]
    manifest_names = [s["name"] for s in (ctx.manifest or {}).get("symbols", [])]
    manifest_names += [op[k] for op in (ctx.manifest or {}).get("operations", [])
                       for k in ("slow_path", "arch_function")]
    syms = Symbols(elf, list(dict.fromkeys(_AREA_NAMES + recognise.NAMES + tuple(private_names)
                                           + tuple(manifest_names))))

    if unit.arch is None and elf.sections_named(abi.CS_SECTION):
        unit.add("RSEQ801", machine=elf.e_machine)

    facts = {
        "notes": notes,
        "defines_abi": False,
        "abi_exported": False,
        "defines_glibc_rseq": False,
        "glibc_refs": [],
    }
    facts["signature"] = recognise.defined_symbols(syms, elf.kind() == "shared-library")
    facts["adopters"] = recognise.adopters_of(facts["signature"], notes, elf.elfclass)
    _check_area_symbols(unit, ctx, syms, protocols, private_names, facts)
    _check_glibc(unit, ctx, syms, facts)
    _check_lifetime(unit, ctx, syms, notes, private_names, facts)
    facts["critical_sections"], starts = _check_critical_sections(unit)
    if ctx.manifest:
        _check_manifest(unit, ctx, syms, notes)
        _check_operations(unit, ctx, syms, notes, starts)
    return facts


# ---- symbols ---------------------------------------------------------------

def _tls_alignment(unit: Unit, s: Symbol) -> tuple[int, int]:
    """(offset inside the TLS block or section, alignment known for it)."""
    elf = unit.elf
    if elf.is_relocatable:
        if s.shndx == SHN_COMMON:
            return 0, s.value
        sec = elf.section_at(s.shndx) if s.shndx < SHN_LORESERVE else None
        return s.value, (sec.addralign if sec else 0)
    tls = elf.segment("PT_TLS")
    return s.value, (tls.align if tls else 0)


def _effective_align(offset: int, known: int) -> int:
    """The alignment an area at `offset` in a block aligned to `known` has."""
    if offset == 0:
        return known
    return min(known, offset & -offset) if known else offset & -offset


def _longest_registration(notes, shared: bool, prefix: str | None = None):
    """(max_len, who) over the notes of modules registering the shared area
    (or the one with `prefix`), or None when none registers more than 32."""
    best = None
    for n in notes:
        p = _protocol(n["protocol"])
        if p is None or p.area is None or (p.area == "shared") != shared:
            continue
        if prefix is not None and n.get("prefix") != prefix:
            continue
        if best is None or n["max_len"] > best[0]:
            best = (n["max_len"], f"prefix {n.get('prefix')} (--registration {n['registration']})")
    return best if best and best[0] > abi.AREA_SIZE else None


def _check_area(unit: Unit, s: Symbol, label: str, need=None) -> None:
    """`need`: (length, who) of the longest registration made on the area."""
    if s.type != "STT_TLS":
        unit.add("RSEQ101", symbol=label, type=s.type)
        return
    if s.size < abi.AREA_SIZE:
        unit.add("RSEQ102", symbol=label, size=s.size)
    offset, align = _tls_alignment(unit, s)
    if offset % abi.AREA_ALIGN or (unit.elf.is_relocatable and align < abi.AREA_ALIGN):
        unit.add("RSEQ103", symbol=label, offset=offset, align=align)
    if not unit.elf.is_relocatable:
        tls = unit.elf.segment("PT_TLS")
        if tls is not None and tls.align < abi.AREA_ALIGN:
            unit.add("RSEQ104", symbol=label, align=tls.align)
    if need is not None:
        length, who = need
        have = _effective_align(offset, align)
        if s.size < length or have < length:
            unit.add("RSEQ110", symbol=label, size=s.size, align=have, who=who, length=length)


def _exported(unit: Unit, syms: Symbols, name: str, s: Symbol) -> bool:
    if unit.elf.kind() == "shared-library":
        d = syms.dyn(name)
        return d is not None and d.exported
    return s.exported


def _check_area_symbols(unit, ctx, syms: Symbols, protocols, private_names, facts) -> None:
    s = syms.best("__rseq_abi")
    if s is not None:
        facts["defines_abi"] = True
        if s.type == "STT_TLS":
            offset, align = _tls_alignment(unit, s)
            facts["abi_layout"] = (s.size, _effective_align(offset, align))
        _check_area(unit, s, "__rseq_abi", _longest_registration(facts["notes"], shared=True))
        exported = _exported(unit, syms, "__rseq_abi", s)
        facts["abi_exported"] = exported
        shared = [p for p in protocols if _protocol(p) and _protocol(p).area == "shared"]
        if shared and not exported:
            bind, vis = s.bind, s.visibility
            if unit.elf.kind() == "shared-library" and syms.dyn("__rseq_abi") is None:
                bind, vis = f"{bind} (not in .dynsym)", vis
            unit.add("RSEQ105", symbol="__rseq_abi", bind=bind, visibility=vis, protocol=shared[0])
    for name in dict.fromkeys(private_names):
        p = syms.best(name)
        if p is None:
            continue
        prefix = name[:-len("__private_area")] if name.endswith("__private_area") else None
        _check_area(unit, p, name, _longest_registration(facts["notes"], shared=False, prefix=prefix)
                    if prefix else None)
        if _exported(unit, syms, name, p):
            proto = next((pr for pr in protocols if _protocol(pr) and _protocol(pr).area == "private"),
                         "own")
            unit.add("RSEQ106", symbol=name, bind=p.bind, visibility=p.visibility, protocol=proto)
    kind = unit.elf.kind()
    if kind in ("pie-executable", "executable") and unit.elf.segment("PT_DYNAMIC") is not None:
        for proto in dict.fromkeys(protocols):
            p = _protocol(proto)
            if p is None:
                continue
            for name in p.shared_symbols:
                if syms.best(name) is not None and syms.dyn(name) is None:
                    unit.add("RSEQ109", symbol=name, protocol=proto)
    r = syms.best("__rseq_refcount")
    if r is not None and (r.type != "STT_TLS" or r.size != 4):
        unit.add("RSEQ107", symbol="__rseq_refcount", type=r.type, size=r.size)
    h = syms.best("__rseq_handled")
    if h is not None and (h.type not in ("STT_OBJECT", "STT_COMMON") or h.size != 4):
        unit.add("RSEQ108", symbol="__rseq_handled", type=h.type, size=h.size)


# ---- glibc ABI ---------------------------------------------------------------

def _check_glibc(unit: Unit, ctx: Context, syms: Symbols, facts) -> None:
    elf = unit.elf
    refs: list[Symbol] = []
    defs: list[Symbol] = []
    for name in abi.GLIBC_SYMBOLS:
        refs += syms.undefined_refs(name)
        d = syms.dyn(name) or syms.best(name)
        if d is not None and d.defined:
            defs.append(d)
    if defs:
        facts["defines_glibc_rseq"] = True
    versions = {}
    if elf.has_table(".dynsym"):
        idx = [s.index for s in refs + defs if s.table == ".dynsym"]
        if idx:
            versions = elf.symbol_versions(idx)
    old = ctx.min_glibc is not None and ctx.min_glibc < (2, 35)
    for s in refs:
        v = versions.get(s.index) if s.table == ".dynsym" else None
        facts["glibc_refs"].append({"symbol": s.name, "weak": s.bind == "STB_WEAK",
                                    "version": v["version"] if v else None,
                                    "file": v["file"] if v else None})
        vtext = f" to {v['version']} in {v['file']}" if v else ""
        if old and s.bind != "STB_WEAK":
            unit.add("RSEQ201", symbol=s.name, version_text=vtext,
                     min_glibc=".".join(map(str, ctx.min_glibc)))
        elif old and v and v["version"] == abi.GLIBC_SYMBOL_VERSION and not v["weak"]:
            unit.add("RSEQ201", symbol=s.name,
                     version_text=f" (weak symbol, but its {v['version']} requirement on {v['file']} "
                                  "is not marked weak)",
                     min_glibc=".".join(map(str, ctx.min_glibc)))
        strength = "weak" if s.bind == "STB_WEAK" else "strong"
        if v:
            unit.add("RSEQ202", symbol=s.name, how="needs", version=v["version"],
                     where=f"from {v['file']} ({strength} reference)")
        elif s.table == ".dynsym":
            unit.add("RSEQ202", symbol=s.name, how="is referenced", version="without a version",
                     where=f"({strength}): it binds to ld.so's GLIBC_2.35 definition when one is loaded")
    for s in defs:
        v = versions.get(s.index) if s.table == ".dynsym" else None
        if v and v["defined"]:
            unit.add("RSEQ202", symbol=s.name, how="is defined here at version", version=v["version"],
                     where="(this file provides glibc's rseq ABI)")


# ---- TLS model and lifetime ---------------------------------------------------

def _check_lifetime(unit: Unit, ctx: Context, syms: Symbols, notes, private_names, facts) -> None:
    elf = unit.elf
    kind = elf.kind()
    dlopen_reasons = []
    if ctx.loaded_as == "plugin":
        dlopen_reasons.append("--plugin")
    if ctx.dlopen:
        dlopen_reasons.append("--dlopen")
    if ctx.manifest and ctx.manifest.get("options", {}).get("dlopen_safe"):
        dlopen_reasons.append("the manifest says dlopen_safe")
    if any(n.get("dlopen_safe") for n in notes) and ctx.loaded_as != "needed":
        dlopen_reasons.append("the rseq-gen note says dlopen_safe=1")
    area_syms = ["__rseq_abi", "__rseq_refcount"] + list(private_names)
    has_area = bool(notes) or any(syms.best(n) is not None for n in area_syms)

    if dlopen_reasons and has_area and kind in ("shared-library", "relocatable") and unit.arch:
        what = []
        if kind == "shared-library":
            if elf.dynamic().get("flags", 0) & DF_STATIC_TLS:
                what.append("DT_FLAGS has DF_STATIC_TLS (initial-exec TLS)")
            if unit.arch.tpoff_relocs and syms.dynamic:
                wanted = {s.index for n in area_syms for s in syms.dynamic.get(n, [])}
                ie = [r for r in elf.dynamic_relocations()
                      if r.type in unit.arch.tpoff_relocs and r.sym in wanted]
                if ie:
                    what.append(f"{len(ie)} TPOFF relocation(s) against the area symbols")
        else:
            wanted_names = set(area_syms)
            count = 0
            for sec in elf.sections:
                if sec.type not in ("SHT_RELA", "SHT_REL"):
                    continue
                target = elf.section_at(sec.info)
                if target is None or not target.executable:
                    continue
                for r in elf._decode_relocs(sec):
                    if r.type in unit.arch.ie_relocs:
                        sym = elf.symbol_at(sec.link, r.sym)
                        if sym is not None and sym.name in wanted_names:
                            count += 1
            if count:
                what.append(f"{count} initial-exec relocation(s) against the rseq area")
            elif any(n.get("tls_model") == "initial-exec" for n in notes):
                what.append("the rseq-gen note says tls_model=initial-exec")
        if what:
            unit.add("RSEQ301", what="; ".join(what), why=", ".join(dlopen_reasons))

    if kind == "shared-library":
        owning = [n for n in notes if _protocol(n["protocol"]) and _protocol(n["protocol"]).area]
        owns_abi = facts["defines_abi"] and not notes
        if owning or owns_abi:
            if not elf.dynamic().get("flags_1", 0) & DF_1_NODELETE:
                if owning:
                    n = owning[0]
                    what = (f"protocol {n['protocol']} (prefix {n.get('prefix')}) registers "
                            f"{_protocol(n['protocol']).area} TLS of this library")
                else:
                    owners = [a["name"] for a in facts["adopters"]
                              if ADOPTERS[a["name"]].area in ("private", "shared")]
                    what = (f"{owners[0]} registers its {ADOPTERS[owners[0]].area} TLS area __rseq_abi"
                            if owners else "the library defines __rseq_abi in its own TLS")
                # An error only where the library is to be dlopen'd: loaded
                # at start-up (DT_NEEDED) it is never unloaded.
                if dlopen_reasons:
                    unit.add("RSEQ302", what=what, severity="error",
                             how=f"the library is to be dlopen'd ({', '.join(dlopen_reasons)})")
                elif ctx.loaded_as == "needed":
                    unit.add("RSEQ302", what=what,
                             how="loaded as DT_NEEDED it stays loaded; a dlopen'd copy would not")
                else:
                    unit.add("RSEQ302", what=what,
                             how="harmless while it is only loaded at start-up (DT_NEEDED); an error "
                                 "with --dlopen")


# ---- critical sections --------------------------------------------------------

class _Resolver:
    """Reads pointer-sized fields of rseq sections with relocations applied.
    Values are (section index, offset) in a .o and (None, address) when linked."""

    def __init__(self, unit: Unit, sec):
        self.unit = unit
        self.elf = unit.elf
        self.sec = sec
        self.data = self.elf.section_data(sec)
        self.relocs: dict[int, list] = {}
        self.symtab = 0
        arch = unit.arch
        if self.elf.is_relocatable:
            relocs, self.symtab = self.elf.relocations_against(sec)
            for r in relocs:
                self.relocs.setdefault(r.offset, []).append(r)
        elif self.elf.e_type == "ET_DYN" and arch is not None:
            for r in self.elf.dynamic_relocations(sec.addr, sec.addr + sec.size):
                self.relocs.setdefault(r.offset - sec.addr, []).append(r)

    def u32(self, off: int) -> int:
        return struct.unpack_from(self.elf.bo + "I", self.data, off)[0]

    def u64(self, off: int) -> int:
        return struct.unpack_from(self.elf.bo + "Q", self.data, off)[0]

    def pointer(self, off: int):
        """A u64 field holding an address. Returns (section index|None, value)
        or None if it cannot be resolved (unknown relocation)."""
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
                if arch and r.type in arch.abs_relocs:
                    sec_idx, value = sym.shndx, sym.value + addend
                else:
                    return None
            return (sec_idx, value)
        if relocs and arch is not None:
            r = relocs[0]
            if r.type == arch.relative or r.type == -1:
                return (None, r.addend if r.addend is not None else raw)
            if r.type in arch.abs_relocs:
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
            if r.type in arch.add_relocs:
                value += sym.value + addend
            elif r.type in arch.sub_relocs:
                value -= sym.value + addend
            else:
                return None
        return value


def _fmt_addr(elf: ElfFile, where) -> str:
    sec_idx, value = where
    if sec_idx is None:
        return f"{value:#x}"
    sec = elf.section_at(sec_idx)
    return f"{sec.name if sec else '?'}+{value:#x}"


def _code_section(elf: ElfFile, where):
    """(section, offset in it) for a code address, or (None, None)."""
    sec_idx, value = where
    if sec_idx is not None:
        sec = elf.section_at(sec_idx)
        return (sec, value) if sec is not None else (None, None)
    sec = elf.section_for_addr(value)
    return (sec, value - sec.addr) if sec is not None else (None, None)


def _check_critical_sections(unit: Unit) -> dict:
    """Check the descriptors; returns ({"descriptors": n, "checked": k}, starts)
    where k counts the descriptors whose addresses could be resolved and
    starts lists their start_ip values ((section index or None, value))."""
    elf = unit.elf
    cs_secs = elf.sections_named(abi.CS_SECTION)
    ptr_secs = elf.sections_named(abi.CS_PTR_SECTION)
    exit_secs = elf.sections_named(abi.EXIT_POINT_SECTION)
    counts = {"descriptors": 0, "checked": 0}
    if not (cs_secs or ptr_secs or exit_secs):
        return counts, []
    descriptors = {}  # (sec idx or None, value) of each descriptor -> start ip
    data_cache: dict[int, bytes] = {}
    for sec in cs_secs:
        linked = not elf.is_relocatable
        if sec.addralign < abi.CS_DESCRIPTOR_ALIGN or (linked and sec.addr % abi.CS_DESCRIPTOR_ALIGN):
            unit.add("RSEQ401", section=sec.name, problem=f"is aligned to {sec.addralign}"
                     f"{f' (address {sec.addr:#x})' if linked else ''}, not 32")
        if sec.size % abi.CS_DESCRIPTOR_SIZE:
            unit.add("RSEQ401", section=sec.name,
                     problem=f"is {sec.size} bytes, not a multiple of the 32-byte descriptor")
        if sec.nobits:
            continue
        res = _Resolver(unit, sec)
        for i in range(sec.size // abi.CS_DESCRIPTOR_SIZE):
            off = i * abi.CS_DESCRIPTOR_SIZE
            key = (sec.index, off) if elf.is_relocatable else (None, sec.addr + off)
            version, flags = res.u32(off), res.u32(off + 4)
            index = f"{len(descriptors)} ({sec.name}+{off:#x})"
            if version != 0:
                unit.add("RSEQ402", section=sec.name, address=key[1], index=index, value=version)
            if flags != 0:
                unit.add("RSEQ403", section=sec.name, address=key[1], index=index, value=flags)
            start = res.pointer(off + 8)
            pco = res.offset_field(off + 16)
            abort_ip = res.pointer(off + 24)
            descriptors[key] = start
            counts["descriptors"] += 1
            if start is None or pco is None or abort_ip is None:
                continue
            counts["checked"] += 1
            _check_descriptor(unit, sec, key[1], index, start, pco, abort_ip, data_cache)
    _check_ptr_array(unit, cs_secs, ptr_secs, descriptors)
    _check_exit_points(unit, exit_secs, descriptors)
    return counts, [s for s in descriptors.values() if s is not None]


def _check_descriptor(unit, sec, address, index, start, pco, abort_ip, data_cache) -> None:
    elf = unit.elf
    ssec, soff = _code_section(elf, start)
    if ssec is None or not ssec.executable:
        unit.add("RSEQ404", section=sec.name, address=address, index=index,
                 problem=f"start_ip {_fmt_addr(elf, start)} is not in an executable section")
    elif soff + pco > ssec.size:
        unit.add("RSEQ404", section=sec.name, address=address, index=index,
                 problem=f"start_ip + post_commit_offset ({_fmt_addr(elf, start)} + {pco:#x}) "
                         f"runs past the end of {ssec.name}")
    asec, aoff = _code_section(elf, abort_ip)
    if asec is None or not asec.executable:
        unit.add("RSEQ405", section=sec.name, address=address, index=index,
                 problem=f"abort_ip {_fmt_addr(elf, abort_ip)} is not in an executable section")
        return
    if ssec is not None and asec.index == ssec.index and soff <= aoff < soff + pco:
        unit.add("RSEQ405", section=sec.name, address=address, index=index,
                 problem=f"abort_ip {_fmt_addr(elf, abort_ip)} lies inside the critical section "
                         f"[{_fmt_addr(elf, start)}, +{pco:#x})")
        return
    arch = unit.arch
    if arch is None or asec.nobits:
        return
    if aoff > asec.size:
        unit.add("RSEQ405", section=sec.name, address=address, index=index,
                 problem=f"abort_ip {_fmt_addr(elf, abort_ip)} is past the end of {asec.name}")
        return
    if aoff < 4:
        found = "nothing (abort_ip is at the start of its section)"
    else:
        if asec.index not in data_cache:
            data_cache[asec.index] = elf.section_data(asec)
        word = struct.unpack_from(elf.bo + "I", data_cache[asec.index], aoff - 4)[0]
        if word == arch.sig_for(elf.endian):
            return
        found = f"{word:#010x}"
    unit.add("RSEQ406", section=sec.name, address=address, index=index,
             abort=_fmt_addr(elf, abort_ip), found=found, expected=arch.sig_for(elf.endian),
             arch=arch.name, endian=elf.endian)


def _records(unit, secs, rule: str, size: int):
    """(section, resolver, index) of every fixed-size record in secs; a
    section whose size is not a multiple of the record is reported under
    rule, and its whole records are still read."""
    for sec in secs:
        if sec.size % size:
            unit.add(rule, section=sec.name,
                     problem=f"{sec.name} is {sec.size} bytes, not a multiple of {size}")
        if sec.nobits:
            continue
        res = _Resolver(unit, sec)
        for i in range(sec.size // size):
            yield sec, res, i


def _check_ptr_array(unit, cs_secs, ptr_secs, descriptors) -> None:
    elf = unit.elf
    if not ptr_secs:
        if descriptors:
            unit.add("RSEQ407", section=abi.CS_PTR_SECTION,
                     problem=f"{len(descriptors)} descriptor(s) in {abi.CS_SECTION} but no "
                             f"{abi.CS_PTR_SECTION} section")
        return
    pointed = []
    for sec, res, i in _records(unit, ptr_secs, "RSEQ407", 8):
        target = res.pointer(i * 8)
        if target is None:
            continue
        if elf.is_relocatable:
            key = target
        else:
            key = (None, target[1])
        if key not in descriptors:
            unit.add("RSEQ407", section=sec.name, address=(sec.addr + i * 8),
                     problem=f"entry {i} points at {_fmt_addr(elf, target)}, which is not the "
                             f"start of a descriptor in {abi.CS_SECTION}")
        pointed.append(key)
    counts = Counter(pointed)
    for k in sorted((k for k, n in counts.items() if n > 1), key=lambda k: (k[0] or 0, k[1])):
        unit.add("RSEQ407", section=abi.CS_PTR_SECTION,
                 problem=f"descriptor {_fmt_addr(elf, k)} is listed {counts[k]} times")
    if len(pointed) != len(descriptors):
        unit.add("RSEQ407", section=abi.CS_PTR_SECTION,
                 problem=f"{len(pointed)} pointer(s) for {len(descriptors)} descriptor(s)")
    missing = [k for k in descriptors if k not in counts]
    for k in missing[:10]:
        unit.add("RSEQ407", section=abi.CS_PTR_SECTION,
                 problem=f"descriptor {_fmt_addr(elf, k)} has no pointer in {abi.CS_PTR_SECTION}")


def _check_exit_points(unit, exit_secs, descriptors) -> None:
    elf = unit.elf
    starts = {v for v in descriptors.values() if v is not None}
    for sec, res, i in _records(unit, exit_secs, "RSEQ408", 16):
        start = res.pointer(i * 16)
        exit_ip = res.pointer(i * 16 + 8)
        if start is None or exit_ip is None:
            continue
        if starts and start not in starts:
            unit.add("RSEQ408", section=sec.name,
                     problem=f"exit point {i} starts at {_fmt_addr(elf, start)}, "
                             "not the start_ip of any descriptor")
        xsec, _ = _code_section(elf, exit_ip)
        if xsec is None or not xsec.executable:
            unit.add("RSEQ408", section=sec.name,
                     problem=f"exit point {i} exits to {_fmt_addr(elf, exit_ip)}, "
                             "not in an executable section")


# ---- manifest -------------------------------------------------------------------

def _check_manifest(unit: Unit, ctx: Context, syms: Symbols, notes) -> None:
    elf = unit.elf
    manifest = ctx.manifest
    note = manifest.get("note") or {}
    desc = note.get("desc")
    if desc and not any(n["desc"] == desc for n in notes):
        unit.add("RSEQ603", section=abi.NOTE_SECTION, desc=desc)
    arch = unit.arch.name if unit.arch else None
    kind = elf.kind()
    stripped = not elf.has_table(".symtab")
    for m in manifest.get("symbols", []):
        name, role = m["name"], m.get("role")
        source = m.get("source")
        s = syms.best(name, defined=(role != "referenced"))
        if role == "referenced":
            if s is None:
                if elf.is_relocatable:
                    unit.add("RSEQ601", symbol=name, role=role, table=".symtab")
                    _attach(unit, source)
                continue
            if m.get("st_bind") and s.bind != m["st_bind"]:
                unit.add("RSEQ602", symbol=name, field="binding", found=s.bind, expected=m["st_bind"])
                _attach(unit, source)
            continue
        # A hidden definition stays inside the object it is linked into: the
        # static linker makes it local, or keeps it global with hidden
        # visibility (GNU ld does both in one executable), never in .dynsym,
        # and drops it when --gc-sections finds it unused.
        linked_hidden = m.get("st_visibility") == "STV_HIDDEN" and not elf.is_relocatable
        if s is None:
            if linked_hidden:
                continue
            if kind == "shared-library" and syms.dynamic and role != "private" \
                    and m.get("st_visibility", "STV_DEFAULT") == "STV_DEFAULT":
                unit.add("RSEQ601", symbol=name, role=role, table=".dynsym")
                _attach(unit, source)
            elif not stripped and (elf.is_relocatable or role != "private"):
                unit.add("RSEQ601", symbol=name, role=role, table=".symtab")
                _attach(unit, source)
            continue
        checks = [("type", s.type, m.get("st_type"))]
        if linked_hidden:
            if s.bind != "STB_LOCAL" and s.visibility not in ("STV_HIDDEN", "STV_INTERNAL"):
                checks.append(("visibility", f"{s.bind}/{s.visibility}",
                               "hidden (local, or global with STV_HIDDEN, in a linked file)"))
        else:
            if elf.is_relocatable or role != "private":
                checks.append(("binding", s.bind, m.get("st_bind")))
            checks.append(("visibility", s.visibility, m.get("st_visibility")))
        size = (m.get("st_size") or {}).get(arch) if arch else None
        if size is not None:
            checks.append(("size", s.size, size))
        for fname, found, want in checks:
            if want is None or found == want:
                continue
            if fname == "type" and {found, want} <= {"STT_OBJECT", "STT_COMMON"}:
                continue
            if fname == "binding" and not elf.is_relocatable and want == "STB_WEAK" \
                    and found == "STB_GLOBAL":
                continue  # the linker may resolve a weak definition as global
            unit.add("RSEQ602", symbol=name, field=fname, found=found, expected=want)
            _attach(unit, source)
        align = (m.get("align") or {}).get(arch) if arch else None
        if align:
            if s.type == "STT_TLS":
                offset, known = _tls_alignment(unit, s)
            elif elf.is_relocatable:
                sec = elf.section_at(s.shndx) if s.shndx < SHN_LORESERVE else None
                offset, known = (s.value, sec.addralign if sec else align)
                if s.shndx == SHN_COMMON:
                    offset, known = 0, s.value
            else:
                offset, known = s.value, align
            if offset % align or known < align:
                unit.add("RSEQ602", symbol=name, field="alignment",
                         found=f"offset {offset:#x} in a block aligned to {known}", expected=align)
                _attach(unit, source)


def _check_operations(unit: Unit, ctx: Context, syms: Symbols, notes, starts) -> None:
    """A file that carries the manifest's generated source holds, for every
    operation the manifest lists, a critical section inside the operation's
    slow path or inside an out-of-line copy of its sequence function (at
    -O0 the compiler does not inline it)."""
    elf = unit.elf
    desc = (ctx.manifest.get("note") or {}).get("desc")
    if not desc or not any(n["desc"] == desc for n in notes) or not elf.has_table(".symtab"):
        return
    thumb = elf.e_machine == "EM_ARM"  # function symbols carry the Thumb bit
    opd = {s.index: _Resolver(unit, s) for s in elf.sections_named(".opd")}

    def entry(sym):
        """(section index or None, address) of a function's first instruction:
        on 64-bit ELFv1 PowerPC the symbol names its descriptor in .opd."""
        if sym.shndx in opd or (not elf.is_relocatable and elf.section_for_addr(sym.value) is not None
                                and elf.section_for_addr(sym.value).index in opd):
            sec = opd.get(sym.shndx) or opd[elf.section_for_addr(sym.value).index]
            return sec.pointer(sym.value - (0 if elf.is_relocatable else sec.sec.addr))
        return (sym.shndx if elf.is_relocatable else None, sym.value & ~1 if thumb else sym.value)

    def holds_sequence(sym) -> bool:
        if sym.type != "STT_FUNC" or not sym.defined:
            return False
        where = entry(sym)
        if where is None:
            return False
        for sec_idx, value in starts:
            if sec_idx == where[0] and where[1] <= value < where[1] + sym.size:
                return True
        return False

    for op in ctx.manifest.get("operations", []):
        candidates = syms.static.get(op["slow_path"], []) + syms.static.get(op["arch_function"], [])
        if not any(s.defined for s in candidates):
            continue  # the slow path's absence is RSEQ601
        if not any(holds_sequence(s) for s in candidates):
            unit.add("RSEQ604", symbol=op["slow_path"], operation=op["name"])


def _attach(unit: Unit, source) -> None:
    if source and unit.findings:
        unit.findings[-1]["source"] = dict(source)


# ---------------------------------------------------------------------------
# Protocol consistency over several images (one file, or one process).

def owners_from(facts_by_file: list[tuple[str, dict]]) -> dict:
    """Split the images into private owners, shared owners (rseq-gen) and
    foreign __rseq_abi owners: images without an rseq-gen shared-area note
    that export a __rseq_abi other modules bind to (a local one, such as
    librseq's, is a private area nobody else sees)."""
    private, shared, foreign = [], [], []
    for label, facts in facts_by_file:
        shared_here = False
        for n in facts["notes"]:
            p = _protocol(n["protocol"])
            if p is None:
                continue
            who = f"{label} (prefix {n.get('prefix')}, protocol {n['protocol']})"
            if p.area == "private":
                private.append((label, who, p))
            elif p.area == "shared":
                shared.append((label, who, p))
                shared_here = True
        if facts.get("abi_exported") and not shared_here:
            known = [a["name"] for a in facts.get("adopters", []) if a["name"] != "rseq-gen"]
            what = f"{', '.join(known)}: exports __rseq_abi" if known else \
                "exports __rseq_abi, no rseq-gen note"
            foreign.append((label, f"{label} ({what})", None))
    return {"private": private, "shared": shared, "foreign": foreign}


def protocol_conflicts(facts_by_file: list[tuple[str, dict]], add) -> None:
    """``add(rule_id, **fields)`` for every conflict."""
    o = owners_from(facts_by_file)
    private, shared = o["private"], o["shared"] + o["foreign"]
    if len(private) >= 2:
        add("RSEQ501", a=private[0][1], b=private[1][1])
    if private and shared:
        add("RSEQ502", a=private[0][1], b=shared[0][1])
    aware = [s for s in o["shared"] if s[2].glibc_area]
    unaware = [s for s in o["shared"] if not s[2].glibc_area]
    if aware and unaware:
        add("RSEQ503", a=aware[0][1], b=unaware[0][1])
    _registration_conflicts(facts_by_file, add)


def _registration_conflicts(facts_by_file, add) -> None:
    """Modules sharing __rseq_abi must register the same length, on a
    definition (the first one: it wins the interposition) that holds it."""
    modes = []
    for label, facts in facts_by_file:
        for n in facts["notes"]:
            p = _protocol(n["protocol"])
            if p is not None and p.area == "shared":
                modes.append((label, n))
    for label, n in modes[1:]:
        first_label, first = modes[0]
        if n["max_len"] != first["max_len"]:
            add("RSEQ506", a=f"{first_label} (prefix {first.get('prefix')})", la=first["max_len"],
                ma=first["registration"], b=f"{label} (prefix {n.get('prefix')})", lb=n["max_len"],
                mb=n["registration"])
            break
    definers = [(label, facts) for label, facts in facts_by_file if facts.get("abi_layout")]
    need = _longest_registration([n for _, n in modes], shared=True)
    if definers and need is not None:
        label, facts = definers[0]
        size, align = facts["abi_layout"]
        own = _longest_registration(facts["notes"], shared=True)
        if (size < need[0] or align < need[0]) and own != need:  # else reported for the file itself
            add("RSEQ110", symbol="__rseq_abi", size=size, align=align, length=need[0],
                who=f"{need[1]} in another module (the definition in {label} wins)")
