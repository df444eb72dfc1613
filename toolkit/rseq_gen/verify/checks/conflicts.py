"""Protocol consistency over several images: the modules of one file (a
static executable, an archive) or of one process.

Rules: RSEQ501 two-private-owners, RSEQ502 private-beside-shared, RSEQ503
glibc-mix, RSEQ506 registration-mismatch, RSEQ507 prefix-interposed (and,
through rseq_gen.verify.checks.area, RSEQ110 across modules).
"""

from __future__ import annotations

from dataclasses import replace

from rseq_gen.protocols import PROTOCOLS
from rseq_gen.verify.checks import area


def owners_from(facts_by_file: list) -> dict:
    """Split the images into private owners, shared owners (rseq-gen) and
    foreign __rseq_abi owners: images without an rseq-gen shared-area note
    that export a __rseq_abi other modules bind to (a local one, such as
    librseq's, is a private area nobody else sees)."""
    private, shared, foreign = [], [], []
    for label, facts in facts_by_file:
        shared_here = False
        for n in facts.notes:
            p = PROTOCOLS.get(n["protocol"])
            if p is None:
                continue
            who = f"{label} (prefix {n.get('prefix')}, protocol {n['protocol']})"
            if p.area == "private":
                private.append((label, who, p))
            elif p.area == "shared":
                shared.append((label, who, p))
                shared_here = True
        if facts.abi_exported and not shared_here:
            known = [a["name"] for a in facts.adopters if a["name"] != "rseq-gen"]
            what = f"{', '.join(known)}: exports __rseq_abi" if known else \
                "exports __rseq_abi, no rseq-gen note"
            foreign.append((label, f"{label} ({what})", None))
    return {"private": private, "shared": shared, "foreign": foreign}


def check(facts_by_file: list, add) -> None:
    """``add(rule_id, **fields)`` for every conflict between the images
    ``facts_by_file`` ((label, Facts), in load order). A module interposed
    by an earlier one (RSEQ507) runs that one's code: it takes part in no
    other conflict."""
    _interposed_prefixes(facts_by_file, add)
    gone = interposers(facts_by_file)
    facts_by_file = [(label, replace(facts, notes=tuple(n for n in facts.notes
                                                          if (label, n.get("prefix")) not in gone)))
                     for label, facts in facts_by_file]
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
        for n in facts.notes:
            p = PROTOCOLS.get(n["protocol"])
            if p is not None and p.area == "shared":
                modes.append((label, n))
    first_label, first = modes[0] if modes else (None, None)
    for label, n in modes[1:]:
        if n["max_len"] != first["max_len"]:
            add("RSEQ506", a=f"{first_label} (prefix {first.get('prefix')})", la=first["max_len"],
                ma=first["registration"], b=f"{label} (prefix {n.get('prefix')})", lb=n["max_len"],
                mb=n["registration"])
            break
    area.check_process(facts_by_file, [n for _, n in modes], add)


def interposers(facts_by_file: list) -> dict:
    """{(file, prefix): file whose definitions its references bind to} for
    every module whose generated names another module, earlier in lookup
    order, also exports (each built with --visibility default)."""
    first: dict = {}
    out = {}
    for label, facts in facts_by_file:
        for prefix, names in facts.exported_prefix_names.items():
            if not names:
                continue
            if prefix in first and first[prefix][0] != label:
                out[(label, prefix)] = first[prefix][0]
            else:
                first.setdefault(prefix, (label, names))
    return out


def _interposed_prefixes(facts_by_file, add) -> None:
    """Two modules exporting one prefix's generated names: the dynamic
    linker binds every reference to the first definition in lookup order,
    so the later module runs the earlier one's code and protocol."""
    exported = {}
    for label, facts in facts_by_file:
        for prefix, names in facts.exported_prefix_names.items():
            exported.setdefault((label, prefix), names)
    for (label, prefix), winner in interposers(facts_by_file).items():
        names = [n for n in exported[(label, prefix)] if n in set(exported[(winner, prefix)])]
        if not names:
            continue
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        add("RSEQ507", a=winner, b=label, prefix=prefix, names=shown)
