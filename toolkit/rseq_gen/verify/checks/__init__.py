"""The per-image checks of ``rseq-gen verify``, one module per rule family
(each module's docstring lists the rule IDs it emits):

- notes: the rseq-gen notes (RSEQ504, RSEQ505)
- area: the rseq areas and shared symbols (RSEQ101-RSEQ110)
- glibc: glibc's rseq ABI (RSEQ201, RSEQ202)
- lifetime: TLS model and dlopen/dlclose (RSEQ301, RSEQ302)
- sections: critical sections (RSEQ401-RSEQ408, RSEQ801)
- manifest: what the manifest promises (RSEQ601-RSEQ604)
- conflicts: protocols across images (RSEQ501-RSEQ503, RSEQ506, RSEQ507)

The process-level rules live with the process analysis: RSEQ701 in
rseq_gen.verify.closure, RSEQ702-RSEQ708 in rseq_gen.verify.prediction.
``analyze`` runs the per-image families on one image and returns its Facts.
"""

from __future__ import annotations

from rseq_gen import names
from rseq_gen.protocols import PROTOCOLS
from rseq_gen.verify import recognise
from rseq_gen.verify.checks import area, glibc, lifetime, manifest, notes, sections
from rseq_gen.verify.model import Context, Facts, Unit
from rseq_gen.verify.symbols import AREA_NAMES, Symbols


def _private_names(ctx: Context, image_notes) -> list[str]:
    """The private areas of the image's modules (and the manifest's)."""
    out = [f"{n['prefix']}__private_area" for n in image_notes
           if PROTOCOLS.get(n["protocol"]) and PROTOCOLS[n["protocol"]].area == "private" and n.get("prefix")]
    if ctx.manifest:
        out += [s["name"] for s in ctx.manifest.get("symbols", []) if s.get("role") == "private"]
    return out


def _exported_prefix_names(elf, image_notes) -> dict:
    """{prefix: [generated names of that prefix in .dynsym, defined and
    exported]} for each module of the image (a shared object or an
    executable with a dynamic symbol table)."""
    prefixes = [n["prefix"] for n in image_notes if n.get("prefix")]
    if not prefixes or not elf.has_table(".dynsym"):
        return {}
    wanted = {p: names.module_names(p) for p in prefixes}
    found = elf.find_symbols([n for ns in wanted.values() for n in ns], ".dynsym")
    return {p: [n for n in ns if any(s.exported for s in found.get(n, []))] for p, ns in wanted.items()}


def analyze(unit: Unit, ctx: Context) -> Facts:
    """Run every per-image rule on ``unit``; return the image's facts for
    the protocol, closure and prediction analysis."""
    elf = unit.elf
    image_notes = notes.read(unit, ctx)
    expected = notes.expected_protocol(ctx)
    protocols = [n["protocol"] for n in image_notes] or ([expected] if expected else [])
    private_names = _private_names(ctx, image_notes)
    manifest_names = [s["name"] for s in (ctx.manifest or {}).get("symbols", [])]
    manifest_names += [op[k] for op in (ctx.manifest or {}).get("operations", [])
                       for k in ("slow_path", "arch_function")]
    syms = Symbols(elf, list(dict.fromkeys(AREA_NAMES + recognise.NAMES + tuple(private_names)
                                           + tuple(manifest_names))))
    sections.check_machine(unit)
    signature = recognise.defined_symbols(syms, elf.kind() == "shared-library")
    adopters = recognise.adopters_of(signature, image_notes, elf.elfclass)
    abi_facts = area.check(unit, syms, protocols, private_names, image_notes)
    glibc_facts = glibc.check(unit, ctx.min_glibc, syms)
    lifetime.check(unit, ctx, syms, image_notes, private_names, abi_facts["defines_abi"], adopters)
    counts, starts = sections.check(unit)
    if ctx.manifest:
        manifest.check(unit, ctx, syms, image_notes)
        manifest.check_operations(unit, ctx, syms, image_notes, starts)
    return Facts(notes=tuple(image_notes), signature=signature, adopters=tuple(adopters),
                 critical_sections=counts, exported_prefix_names=_exported_prefix_names(elf, image_notes),
                 **abi_facts, **glibc_facts)
