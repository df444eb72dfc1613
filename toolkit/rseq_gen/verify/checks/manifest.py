"""What the manifest of ``rseq-gen generate --manifest`` promises about the
file built from the generated code: its note, each symbol's type, binding,
visibility, size and alignment, and a critical section for every operation.

Rules: RSEQ601 manifest-symbol-missing, RSEQ602 manifest-symbol-mismatch,
RSEQ603 manifest-note-missing, RSEQ604 manifest-operation-without-sequence.

Visibility after the link: a hidden symbol is never in .dynsym, and its
.symtab entry is what the linker leaves: GNU ld 2.40 makes it STB_LOCAL
with STV_DEFAULT in a shared library and keeps it STB_GLOBAL with
STV_HIDDEN in an executable; lld makes it STB_LOCAL with STV_HIDDEN; and
--gc-sections drops it when nothing uses it. A
default-visibility name a version script lists under ``local:`` becomes
STB_LOCAL and leaves .dynsym too, which is why the manifest's
``version_script_globals`` say which names a version script must keep
global.
"""

from __future__ import annotations

from rseq_gen import abi
from rseq_gen.elf import SHN_COMMON, SHN_LORESERVE
from rseq_gen.verify.model import Context, Unit
from rseq_gen.verify.relocs import FieldReader
from rseq_gen.verify.symbols import Symbols, tls_alignment

#: The rules whose findings are about the manifest's one generated object
#: (an archive needs them only for the member that carries its note).
MANIFEST_RULES = frozenset({"RSEQ601", "RSEQ602", "RSEQ603"})

_HIDDEN = ("STV_HIDDEN", "STV_INTERNAL")


def _note_carried(ctx: Context, notes) -> bool:
    desc = (ctx.manifest.get("note") or {}).get("desc")
    return bool(desc) and any(n["desc"] == desc for n in notes)


def check(unit: Unit, ctx: Context, syms: Symbols, notes) -> None:
    """Every symbol and the note the manifest lists."""
    elf = unit.elf
    manifest = ctx.manifest
    desc = (manifest.get("note") or {}).get("desc")
    if desc and not _note_carried(ctx, notes):
        unit.add("RSEQ603", section=abi.NOTE_SECTION, desc=desc)
    arch = unit.arch.name if unit.arch else None
    kind = elf.kind()
    stripped = not elf.has_table(".symtab")
    for m in manifest.get("symbols", []):
        name, role = m["name"], m.get("role")
        source = m.get("source")
        visibility = m.get("st_visibility", "STV_DEFAULT")
        s = syms.best(name, defined=(role != "referenced"))
        if role == "referenced":
            if s is None:
                if elf.is_relocatable:
                    unit.add("RSEQ601", symbol=name, role=role, table=".symtab", source=source)
                continue
            if m.get("st_bind") and s.bind != m["st_bind"]:
                unit.add("RSEQ602", symbol=name, field="binding", found=s.bind, expected=m["st_bind"],
                         source=source)
            continue
        if s is None:
            if visibility in _HIDDEN and not elf.is_relocatable:
                continue  # --gc-sections drops an unused hidden definition
            if kind == "shared-library" and syms.dynamic and role != "private" and visibility == "STV_DEFAULT":
                unit.add("RSEQ601", symbol=name, role=role, table=".dynsym", source=source)
            elif not stripped and (elf.is_relocatable or role != "private"):
                unit.add("RSEQ601", symbol=name, role=role, table=".symtab", source=source)
            continue
        for fname, found, want in _mismatches(unit, syms, m, s, arch):
            unit.add("RSEQ602", symbol=name, field=fname, found=found, expected=want, source=source)


def _mismatches(unit: Unit, syms: Symbols, m: dict, s, arch):
    """(field, found, expected) for each way the symbol differs from its
    manifest entry."""
    elf = unit.elf
    name, role = m["name"], m.get("role")
    visibility = m.get("st_visibility", "STV_DEFAULT")
    want_bind = m.get("st_bind")
    linked = not elf.is_relocatable
    if linked and visibility in _HIDDEN:
        if syms.dyn(name) is not None:
            yield ("export", "in .dynsym (other modules bind to it)",
                   f"{visibility}: not exported (declared hidden by the generated code)")
        if s.bind != "STB_LOCAL" and s.visibility not in _HIDDEN:
            yield ("binding and visibility", f"{s.bind}/{s.visibility}",
                   f"{visibility}, or STB_LOCAL after the link")
        want_bind, visibility = None, None  # what the link leaves varies (see the docstring)
    elif linked and elf.kind() == "shared-library" and role != "private" and visibility == "STV_DEFAULT" \
            and s.bind == "STB_LOCAL" and syms.dynamic and syms.dyn(name) is None:
        yield ("export", "STB_LOCAL, not in .dynsym (a version script's local: list, or a "
                         "visibility override, hid it)",
               "exported: keep it in the version script's global: list (the manifest's "
               "version_script_globals)")
        want_bind = None
    checks = [("type", s.type, m.get("st_type"))]
    if elf.is_relocatable or role != "private":
        checks.append(("binding", s.bind, want_bind))
    checks.append(("visibility", s.visibility, visibility))
    size = (m.get("st_size") or {}).get(arch) if arch else None
    if size is not None:
        checks.append(("size", s.size, size))
    for fname, found, want in checks:
        if want is None or found == want:
            continue
        if fname == "type" and {found, want} <= {"STT_OBJECT", "STT_COMMON"}:
            continue
        if fname == "binding" and linked and want == "STB_WEAK" and found == "STB_GLOBAL":
            continue  # the linker may resolve a weak definition as global
        yield (fname, found, want)
    align = (m.get("align") or {}).get(arch) if arch else None
    if align:
        if s.type == "STT_TLS":
            offset, known = tls_alignment(elf, s)
        elif elf.is_relocatable:
            sec = elf.section_at(s.shndx) if s.shndx < SHN_LORESERVE else None
            offset, known = (s.value, sec.addralign if sec else align)
            if s.shndx == SHN_COMMON:
                offset, known = 0, s.value
        else:
            offset, known = s.value, align
        if offset % align or known < align:
            yield ("alignment", f"offset {offset:#x} in a block aligned to {known}", align)


def archive_findings(findings: list, ctx: Context, path: str, carriers: set, make) -> list:
    """The manifest describes one generated object: in an archive it only
    has to be in one member. Keeps its findings for the member carrying
    the note (``carriers``: labels ``path(member)``); with no carrier, one
    RSEQ603 for the archive (``make(rule_id, **fields)`` -> Finding)."""
    kept = [f for f in findings if f.rule not in MANIFEST_RULES
            or (carriers and f"{path}({f.member})" in carriers)]
    if not carriers:
        kept.append(make("RSEQ603", desc=(ctx.manifest.get("note") or {}).get("desc")))
    return kept


def check_operations(unit: Unit, ctx: Context, syms: Symbols, notes, starts) -> None:
    """A file that carries the manifest's generated source holds, for every
    operation the manifest lists, a critical section inside the operation's
    slow path or inside an out-of-line copy of its sequence function (at
    -O0 the compiler does not inline it)."""
    elf = unit.elf
    desc = (ctx.manifest.get("note") or {}).get("desc")
    if not desc or not any(n["desc"] == desc for n in notes) or not elf.has_table(".symtab"):
        return
    thumb = elf.e_machine == "EM_ARM"  # function symbols carry the Thumb bit
    opd = {s.index: FieldReader(unit, s) for s in elf.sections_named(".opd")}

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
