"""The engine of ``rseq-gen verify`` (kept out of the package's __init__ so that
building the CLI parser imports nothing heavy): check one path, archives
member by member, process closures and the report."""

from __future__ import annotations

import os
import struct

from rseq_gen import __version__, abi
from rseq_gen.elf import ElfError, map_file, open_elf
from rseq_gen.errors import os_error_words
from rseq_gen.verify.ar import ArchiveError, is_archive, read_members
from rseq_gen.verify.checks import analyze, conflicts, glibc, manifest
from rseq_gen.verify.machine import arch_facts
from rseq_gen.verify.model import Context, Facts, Unit, finding
from rseq_gen.verify.output import REPORT_VERSION


def _file_result(path: str) -> dict:
    return {"path": path, "kind": None, "arch": None, "elfclass": None, "endian": None,
            "members": None, "notes": [], "adopters": [],
            "critical_sections": {"descriptors": 0, "checked": 0}, "closure_of": None}


def _describe(result: dict, elf) -> None:
    """The file row's kind, architecture, class and byte order."""
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
    """check_path without the last line of defence: fills ``out``."""
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
    _record(out, facts)
    out["findings"] += unit.findings
    conflicts.check([(path, facts)], lambda rid, **kw: out["findings"].append(finding(rid, path, **kw)))


def _record(out: dict, facts: Facts) -> None:
    """The facts of a checked input, and what the report's file row shows of them."""
    out["facts"] = facts
    out["file"]["notes"] = list(facts.notes)
    out["file"]["adopters"] = list(facts.adopters)
    out["file"]["critical_sections"] = dict(facts.critical_sections)


#: Low-level failures while reading an inconsistent file (an offset out of
#: range, a count that does not fit): the file is malformed, not our bug.
_DECODE_ERRORS = (struct.error, IndexError, ValueError, OverflowError, MemoryError)


def _analyze(unit: Unit, ctx: Context):
    """(facts, None), or (None, one line) for a malformed image."""
    try:
        return analyze(unit, ctx), None
    except ElfError as exc:
        return None, str(exc)
    except _DECODE_ERRORS as exc:
        return None, f"malformed ELF: inconsistent contents ({type(exc).__name__}: {exc})"


def _check_archive(path: str, data, ctx: Context, out: dict) -> None:
    """Check each member that can hold rseq code; the archive's facts are its members' merged
    (Facts.merge)."""
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
        if facts.defines_glibc_rseq:
            defined_glibc.update(abi.GLIBC_SYMBOLS)
        facts_list.append((f"{path}({m.name})", facts))
        findings += unit.findings
    findings = glibc.drop_satisfied_in_archive(findings, defined_glibc)
    if ctx.manifest and facts_list:
        desc = (ctx.manifest.get("note") or {}).get("desc")
        carriers = {lbl for lbl, fc in facts_list if any(n["desc"] == desc for n in fc.notes)}
        findings = manifest.archive_findings(findings, ctx, path, carriers,
                                             lambda rid, **kw: finding(rid, path, **kw))
    out["findings"] += findings
    _record(out, Facts.merge([fc for _, fc in facts_list], result["elfclass"] or 64))
    conflicts.check(facts_list, lambda rid, **kw: out["findings"].append(finding(rid, path, **kw)))


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

        from rseq_gen.verify.closure import unresolved_findings

        def add(rule_id, **fields):
            findings.append(finding(rule_id, root, **fields))

        unresolved_findings(c["unresolved"], add)
        modules = [{"path": l["path"], "facts": self.facts(l["path"]), "loaded": l["loaded"]}
                   for l in c["loaded"]]
        conflicts.check([(m["path"], m["facts"]) for m in modules if m["facts"]], add)
        c["prediction"] = prediction.predict(modules, None if c["kind"] == "closure" else "unknown",
                                             self.min_glibc)
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
    for i, f in enumerate(findings):
        if f.file not in inputs or f.source:
            continue
        findings[i] = f.with_source(by_symbol.get(f.symbol or "") or fallback)


def build_report(args, files, findings, errors, closures) -> dict:
    """The JSON report (rseq_gen/verify-schema.json); ``findings`` are Finding rows."""
    fail_levels = {"error"} | ({"warning"} if args.fail_on == "warning" else set())
    counts = {s: sum(1 for f in findings if f.severity == s) for s in ("error", "warning", "note")}
    exit_code = 2 if errors else (1 if any(f.severity in fail_levels for f in findings) else 0)
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
        "findings": [f.as_dict() for f in findings],
        "errors": errors,
        "closures": closures,
        "summary": {"files": len(files), "errors": counts["error"], "warnings": counts["warning"],
                    "notes": counts["note"], "unreadable": len(errors), "exit_code": exit_code},
    }
