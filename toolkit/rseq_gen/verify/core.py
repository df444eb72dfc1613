"""The engine of ``rseq-gen verify`` (kept out of the package's __init__ so that
building the CLI parser imports nothing heavy): check one path, archives
member by member, process closures and the report."""

from __future__ import annotations

import os
import struct

from rseq_gen import __version__, abi
from rseq_gen.elf import ElfError, map_file, open_elf
from rseq_gen.rules import RULES
from rseq_gen.verify.ar import ArchiveError, is_archive, read_members
from rseq_gen.verify.checks import Context, Unit, analyze, arch_facts, owners_from, protocol_conflicts
from rseq_gen.verify.output import REPORT_VERSION


def _file_result(path: str) -> dict:
    return {"path": path, "kind": None, "arch": None, "elfclass": None, "endian": None,
            "members": None, "notes": [], "critical_sections": {"descriptors": 0, "checked": 0},
            "closure_of": None}


def _describe(result: dict, elf) -> None:
    result["kind"] = elf.kind()
    arch = arch_facts(elf)
    result["arch"] = arch.name if arch else elf.e_machine
    result["elfclass"] = elf.elfclass
    result["endian"] = elf.endian


def check_path(path: str, ctx: Context) -> dict:
    """Check one input; returns {"file", "findings", "errors", "facts"}.
    Never raises: a bad file becomes one error line."""
    result = _file_result(path)
    out = {"file": result, "findings": [], "errors": [], "facts": None}
    try:
        _check_path(path, ctx, out)
    except Exception as exc:  # last line of defence: never a traceback
        out["errors"].append({"file": path, "member": None,
                              "message": f"internal error while checking: {type(exc).__name__}: {exc}"})
    return out


def _check_path(path: str, ctx: Context, out: dict) -> None:
    result = out["file"]
    try:
        data = map_file(path)
    except IsADirectoryError:
        out["errors"].append({"file": path, "member": None, "message": "is a directory"})
        return
    except OSError as exc:
        out["errors"].append({"file": path, "member": None,
                              "message": f"cannot read: {exc.strerror or exc}"})
        return
    if len(data) == 0:
        out["errors"].append({"file": path, "member": None, "message": "empty file (0 bytes)"})
        return
    if is_archive(bytes(data[:8])):
        _check_archive(path, data, ctx, out)
        return
    try:
        elf = open_elf(data, path)
    except ElfError as exc:
        out["errors"].append({"file": path, "member": None, "message": str(exc)})
        return
    try:
        _describe(result, elf)
    except ElfError as exc:
        out["errors"].append({"file": path, "member": None, "message": str(exc)})
        return
    except _DECODE_ERRORS as exc:
        out["errors"].append({"file": path, "member": None,
                              "message": f"malformed ELF: inconsistent contents ({type(exc).__name__}: {exc})"})
        return
    unit = Unit(path, None, elf, arch_facts(elf))
    facts, problem = _analyze(unit, ctx)
    if problem:
        out["errors"].append({"file": path, "member": None, "message": problem})
        return
    result["notes"] = facts["notes"]
    result["critical_sections"] = facts["critical_sections"]
    out["facts"] = facts
    out["findings"] += unit.findings
    protocol_conflicts([(path, facts)], lambda rid, **kw: _add(out["findings"], rid, path, None, **kw))


#: Low-level failures while reading an inconsistent file (an offset out of
#: range, a count that does not fit): the file is malformed, not our bug.
_DECODE_ERRORS = (struct.error, IndexError, ValueError, OverflowError, MemoryError)


def _analyze(unit: Unit, ctx: Context):
    try:
        return analyze(unit, ctx), None
    except ElfError as exc:
        return None, str(exc)
    except _DECODE_ERRORS as exc:
        return None, f"malformed ELF: inconsistent contents ({type(exc).__name__}: {exc})"


def _add(findings: list, rule_id: str, file: str, member, **fields) -> None:
    rule = RULES[rule_id]
    findings.append({"rule": rule.id, "name": rule.name, "severity": rule.severity,
                     "message": rule.message.format(**fields), "fix": rule.fix, "file": file,
                     "member": member, "symbol": None, "section": None, "address": None,
                     "source": None})


def _check_archive(path: str, data, ctx: Context, out: dict) -> None:
    result = out["file"]
    result["kind"] = "archive"
    try:
        members = read_members(data, path)
    except ArchiveError as exc:
        out["errors"].append({"file": path, "member": None, "message": str(exc)})
        return
    result["members"] = len(members)
    facts_list = []
    defined_glibc = set()
    findings = []
    for m in members:
        if m.error:
            out["errors"].append({"file": path, "member": m.name, "message": m.error})
            continue
        mdata = bytes(m.data)
        try:
            elf = open_elf(mdata, f"{path}({m.name})")
        except ElfError as exc:
            out["errors"].append({"file": path, "member": m.name, "message": str(exc)})
            continue
        if result["arch"] is None:
            _describe(result, elf)
            result["kind"] = "archive"
        if b"rseq" not in mdata and not ctx.manifest:
            continue  # no rseq symbol, section or note can be in this member
        unit = Unit(path, m.name, elf, arch_facts(elf))
        facts, problem = _analyze(unit, ctx)
        if problem:
            out["errors"].append({"file": path, "member": m.name, "message": problem})
            continue
        if facts["defines_glibc_rseq"]:
            for name in abi.GLIBC_SYMBOLS:
                defined_glibc.add(name)
        facts_list.append((f"{path}({m.name})", facts))
        findings += unit.findings
        result["notes"] += facts["notes"]
        for k, v in facts["critical_sections"].items():
            result["critical_sections"][k] += v
    # A reference satisfied by another member of the same archive (libc.a
    # itself) does not depend on the glibc the program later runs on.
    findings = [f for f in findings
                if not (f["rule"] == "RSEQ201" and f["symbol"] in defined_glibc)]
    if ctx.manifest and facts_list:
        # The manifest describes one generated object: it only has to be in
        # one member. Keep its findings for the member carrying the note, if any.
        desc = (ctx.manifest.get("note") or {}).get("desc")
        carriers = {lbl for lbl, fc in facts_list if any(n["desc"] == desc for n in fc["notes"])}
        manifest_rules = {"RSEQ601", "RSEQ602", "RSEQ603"}
        findings = [f for f in findings if f["rule"] not in manifest_rules
                    or (carriers and f"{path}({f['member']})" in carriers)]
        if not carriers:
            _add(findings, "RSEQ603", path, None, desc=desc)
    out["findings"] += findings
    merged = {"notes": [n for _, fc in facts_list for n in fc["notes"]],
              "defines_abi": any(fc["defines_abi"] for _, fc in facts_list),
              "defines_glibc_rseq": any(fc["defines_glibc_rseq"] for _, fc in facts_list),
              "glibc_refs": []}
    out["facts"] = merged
    protocol_conflicts(facts_list, lambda rid, **kw: _add(out["findings"], rid, path, None, **kw))


# ---------------------------------------------------------------------------
# Closure.

def _owner(loaded: list[dict], facts_by_path: dict) -> dict:
    modules = []
    glibc = [l for l in loaded if (facts_by_path.get(l["path"]) or {}).get("defines_glibc_rseq")]
    labelled = [(l["path"], facts_by_path[l["path"]]) for l in loaded if facts_by_path.get(l["path"])]
    o = owners_from(labelled)
    for label, who, p in o["private"] + o["shared"]:
        if glibc:
            state = p.owner["glibc"]
            if p.glibc_area:
                modules.append(f"{who}: uses glibc's registration")
            else:
                modules.append(f"{who}: ignores glibc; its registration fails with EINVAL "
                               "while glibc registers (owner it reports: "
                               f"{state})")
        else:
            modules.append(f"{who}: {p.registers}")
    for label, who, _ in o["foreign"]:
        modules.append(f"{who}: a foreign __rseq_abi definition")
    if glibc:
        return {"owner": "glibc", "by": glibc[0]["path"], "modules": modules,
                "why": f"{glibc[0]['path']} defines __rseq_offset/__rseq_size (GLIBC_2.35): glibc "
                       "registers every thread at start-up unless GLIBC_TUNABLES=glibc.pthread.rseq=0"}
    if o["foreign"]:
        label, who, _ = o["foreign"][0]
        return {"owner": label, "by": label, "modules": modules,
                "why": f"no glibc registration; {who} is the first __rseq_abi in load order, "
                       "so every module binds to it and its code registers"}
    if o["shared"]:
        label, who, p = o["shared"][0]
        return {"owner": label, "by": label, "modules": modules,
                "why": f"no glibc registration; rseq-gen library {who} registers the shared "
                       f"__rseq_abi ({p.registers})"}
    if o["private"]:
        label, who, p = o["private"][0]
        return {"owner": label, "by": label, "modules": modules,
                "why": f"no glibc registration; rseq-gen library {who} registers its private area"}
    return {"owner": "none", "by": None, "modules": modules,
            "why": "no module in the process registers rseq (no glibc >= 2.35, no __rseq_abi, "
                   "no rseq-gen code)"}


def _closure(path: str, dep_ctx: Context, run, findings: list, files: list, errors: list,
             seen: dict) -> dict | None:
    """Resolve and check one input's closure. ``seen`` (path -> result) keeps
    a library shared by several inputs' closures from being reported twice."""
    from rseq_gen.verify.closure import resolve

    try:
        elf = open_elf(map_file(path), path)
    except (OSError, ElfError):
        return None  # already reported by the per-file pass
    closure = resolve(path, elf)
    loaded = [{"path": l.path, "name": l.name, "needed_by": l.needed_by} for l in closure.loaded]
    deps = [l["path"] for l in loaded[1:]]
    todo = [d for d in deps if os.path.realpath(d) not in seen]
    for dep, res in zip(todo, run(todo, dep_ctx)):
        seen[os.path.realpath(dep)] = res
        res["file"]["closure_of"] = path
        files.append(res["file"])
        findings.extend(res["findings"])
        errors.extend(res["errors"])
    facts_by_path = {d: seen[os.path.realpath(d)]["facts"] for d in deps}
    return {"root": path, "loaded": loaded, "unresolved": closure.unresolved,
            "facts": facts_by_path}


# ---------------------------------------------------------------------------

def _attach_sources(findings: list, manifest: dict | None, inputs: set) -> None:
    """Give every finding on a named input a source location in the user's
    tree when the manifest knows one (symbol line, else the CMake call site,
    else the generated source)."""
    if not manifest:
        return
    origin = manifest.get("origin")
    fallback = None
    if isinstance(origin, dict) and origin.get("file"):
        fallback = {"file": origin["file"], "line": origin.get("line")}
    else:
        src = (manifest.get("files") or {}).get("source")
        if src:
            base = manifest.get("output_dir") or ""
            fallback = {"file": os.path.join(base, src) if not os.path.isabs(src) else src, "line": None}
    by_symbol = {s["name"]: s.get("source") for s in manifest.get("symbols", []) if s.get("source")}
    for f in findings:
        if f["file"] not in inputs or f.get("source"):
            continue
        src = by_symbol.get(f.get("symbol") or "")
        f["source"] = dict(src) if src else (dict(fallback) if fallback else None)


def build_report(args, files, findings, errors, closures) -> dict:
    fail_levels = {"error"} | ({"warning"} if args.fail_on == "warning" else set())
    counts = {s: sum(1 for f in findings if f["severity"] == s) for s in ("error", "warning", "note")}
    exit_code = 2 if errors else (1 if any(f["severity"] in fail_levels for f in findings) else 0)
    return {
        "version": REPORT_VERSION,
        "tool": {"name": "rseq-gen", "version": __version__},
        "options": {
            "paths": [str(p) for p in args.paths],
            "manifest": str(args.manifest) if args.manifest else None,
            "protocol": args.protocol,
            "closure": bool(args.closure),
            "min_glibc": args.min_glibc,
            "dlopen": bool(args.dlopen),
            "fail_on": args.fail_on,
        },
        "files": files,
        "findings": findings,
        "errors": errors,
        "closures": closures,
        "summary": {"files": len(files), "errors": counts["error"], "warnings": counts["warning"],
                    "notes": counts["note"], "unreadable": len(errors), "exit_code": exit_code},
    }
