"""The engine of ``rseq-gen verify`` (kept out of the package's __init__ so that
building the CLI parser imports nothing heavy): check one path, archives
member by member, process closures and the report."""

from __future__ import annotations

import os
import struct

from rseq_gen import __version__, abi
from rseq_gen.elf import ElfError, map_file, open_elf
from rseq_gen.errors import os_error_words
from rseq_gen.rules import RULES
from rseq_gen.verify import recognise
from rseq_gen.verify.ar import ArchiveError, is_archive, read_members
from rseq_gen.verify.checks import Context, Unit, analyze, arch_facts, protocol_conflicts
from rseq_gen.verify.output import REPORT_VERSION


def _file_result(path: str) -> dict:
    return {"path": path, "kind": None, "arch": None, "elfclass": None, "endian": None,
            "members": None, "notes": [], "adopters": [],
            "critical_sections": {"descriptors": 0, "checked": 0}, "closure_of": None}


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
                              "message": os_error_words(exc)})
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
    result["adopters"] = facts["adopters"]
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
    # An archive is one library: its adopter signature spans the members
    # (librseq.a has the registration API and the mempool in two objects).
    signature: dict = {}
    for _, fc in facts_list:
        for name, sym in fc["signature"].items():
            signature.setdefault(name, sym)
    notes = [n for _, fc in facts_list for n in fc["notes"]]
    elfclass = result["elfclass"] or 64
    merged = {"notes": notes,
              "defines_abi": any(fc["defines_abi"] for _, fc in facts_list),
              "abi_exported": any(fc["abi_exported"] for _, fc in facts_list),
              "defines_glibc_rseq": any(fc["defines_glibc_rseq"] for _, fc in facts_list),
              "signature": signature,
              "adopters": recognise.adopters_of(signature, notes, elfclass),
              "glibc_refs": []}
    out["facts"] = merged
    result["adopters"] = merged["adopters"]
    protocol_conflicts(facts_list, lambda rid, **kw: _add(out["findings"], rid, path, None, **kw))


# ---------------------------------------------------------------------------
# Processes: a closure (or the inputs given together), its prediction and
# its conflicts.

class Processes:
    """Builds the processes verify reports. ``run(paths, ctx)`` checks files
    (maybe in parallel); ``seen`` (real path -> result) keeps a library
    shared by several processes from being checked or reported twice; the
    files, findings and errors of every newly checked library go to
    ``out``'s lists."""

    def __init__(self, run, seen: dict, out: dict, min_glibc=None):
        self.run = run
        self.seen = seen
        self.out = out
        self.min_glibc = min_glibc
        self.needed_ctx = Context(loaded_as="needed")
        self.plugin_ctx = Context(min_glibc=min_glibc, loaded_as="plugin")

    def _check(self, paths: list[str], ctx: Context, closure_of: str) -> None:
        todo: dict[str, str] = {}  # real path -> the path as named (a symlink checked once)
        for p in paths:
            real = os.path.realpath(p)
            if real not in self.seen:
                todo.setdefault(real, p)
        for (real, _), res in zip(todo.items(), self.run(list(todo.values()), ctx)):
            self.seen[real] = res
            res["file"]["closure_of"] = closure_of
            self.out["files"].append(res["file"])
            self.out["findings"].extend(res["findings"])
            self.out["errors"].extend(res["errors"])

    def check_loaded_later(self, preload: list[str], plugins: list[str]) -> None:
        self._check(preload, self.needed_ctx, None)
        self._check(plugins, self.plugin_ctx, None)

    def facts(self, path: str):
        res = self.seen.get(os.path.realpath(path))
        return res["facts"] if res else None

    def _opened(self, paths: list[str]) -> list:
        """(path, ElfFile) of each readable ELF file (an unreadable one was
        reported when it was checked)."""
        out = []
        for p in paths:
            try:
                out.append((p, open_elf(map_file(p), p)))
            except (OSError, ElfError):
                continue
        return out

    def closure(self, root: str, preload: list[str], plugins: list[str]) -> dict | None:
        """The process of one program (or library): what ld.so loads at
        start-up, then each plugin and the part of its closure not loaded."""
        from rseq_gen.verify.closure import resolve

        opened = self._opened([root])
        if not opened:
            return None
        self._check(preload, self.needed_ctx, root)
        start = resolve(root, opened[0][1], preload=self._opened(preload))
        loaded = [{"path": l.path, "name": l.name, "needed_by": l.needed_by, "loaded": "startup"}
                  for l in start.loaded]
        unresolved = list(start.unresolved)
        self._check([l["path"] for l in loaded[1:]], self.needed_ctx, root)
        self._check(plugins, self.plugin_ctx, root)
        have = {os.path.realpath(l["path"]) for l in loaded}
        for path, elf in self._opened(plugins):
            later = resolve(path, elf)
            new = [l for l in later.loaded if os.path.realpath(l.path) not in have]
            have |= {os.path.realpath(l.path) for l in new}
            self._check([l.path for l in new], self.plugin_ctx, root)
            loaded += [{"path": l.path, "name": l.name, "needed_by": l.needed_by, "loaded": "dlopen"}
                       for l in new]
            unresolved += later.unresolved
        return {"root": root, "kind": "closure", "loaded": loaded, "unresolved": unresolved}

    def together(self, inputs: list[str], kinds: dict, preload: list[str], plugins: list[str]) -> dict:
        """The inputs given together as one process, without their closure:
        the executable first, the preloads, the other inputs in the order
        given, then the plugins."""
        programs = [p for p in inputs if kinds[p] in ("executable", "pie-executable")]
        order = programs + preload + [p for p in inputs if p not in programs]
        self._check(preload, self.needed_ctx, order[0])
        self._check(plugins, self.plugin_ctx, order[0])
        loaded = [{"path": p, "name": os.path.basename(p), "needed_by": None, "loaded": "startup"}
                  for p in dict.fromkeys(order)]
        loaded += [{"path": p, "name": os.path.basename(p), "needed_by": None, "loaded": "dlopen"}
                   for p in dict.fromkeys(plugins) if p not in order]
        return {"root": order[0], "kind": "inputs", "loaded": loaded, "unresolved": []}

    def finish(self, c: dict, findings: list) -> dict:
        """Add the prediction and the process's findings to ``c``."""
        from rseq_gen.verify import prediction

        root = c["root"]

        def add(rule_id, **fields):
            _add(findings, rule_id, root, None, **fields)

        for u in c["unresolved"]:
            add("RSEQ701", needed=u["needed"], by=u["by"], searched=", ".join(u["searched"]) or "nowhere")
        modules = [{"path": l["path"], "facts": self.facts(l["path"]), "loaded": l["loaded"]}
                   for l in c["loaded"]]
        protocol_conflicts([(m["path"], m["facts"]) for m in modules if m["facts"]], add)
        c["prediction"] = prediction.predict(modules, None if c["kind"] == "closure" else "unknown",
                                             self.min_glibc)
        add("RSEQ702", summary=prediction.owner_summary(c["prediction"]))
        prediction.findings(c["prediction"], modules, add)
        return c


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
            "preload": [str(p) for p in args.preload],
            "plugin": [str(p) for p in args.plugin],
            "fail_on": args.fail_on,
        },
        "files": files,
        "findings": findings,
        "errors": errors,
        "closures": closures,
        "summary": {"files": len(files), "errors": counts["error"], "warnings": counts["warning"],
                    "notes": counts["note"], "unreadable": len(errors), "exit_code": exit_code},
    }
