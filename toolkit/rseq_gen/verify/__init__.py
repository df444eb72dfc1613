"""``rseq-gen verify``: check objects, archives, shared libraries and
executables for the rseq symbols, TLS layout, critical sections and protocol
conflicts (rules: rseq_gen.rules; `rseq-gen explain` and docs/rules.md).

Exit codes: 0 clean; 1 findings at or above ``--fail-on``; 2 usage error or
an unreadable/malformed input (one line each on stderr; the other inputs are
still checked).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from rseq_gen.errors import UsageError, os_error_words
from rseq_gen.protocols import PROTOCOLS

FAIL_ON = ("error", "warning")
FORMATS = ("text", "json", "sarif", "junit", "github")


def configure_parser(sub) -> None:
    p = sub.add_parser(
        "verify", help="check ELF objects, archives and binaries for rseq problems",
        description="Check relocatable objects, static archives, shared libraries and executables "
                    "for rseq symbol layout, glibc ABI use, TLS model, critical sections and "
                    "protocol conflicts. Each finding names a rule and its fix; "
                    "`rseq-gen explain RULE` explains a rule, `rseq-gen explain` lists them.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files to check")
    p.add_argument("--manifest", type=Path, metavar="FILE",
                   help="manifest written by `rseq-gen generate --manifest`: check what it promises")
    p.add_argument("--protocol", choices=list(PROTOCOLS), metavar="P",
                   help=f"protocol the inputs are expected to use ({', '.join(PROTOCOLS)})")
    p.add_argument("--closure", action="store_true",
                   help="also load every DT_NEEDED library as ld.so would and check the whole process: "
                        "who owns each thread's registration per environment, and the conflicts")
    p.add_argument("--preload", action="append", default=[], metavar="FILE",
                   help="FILE is loaded at start-up before the DT_NEEDED libraries (LD_PRELOAD); "
                        "repeatable, in order")
    p.add_argument("--plugin", action="append", default=[], metavar="FILE",
                   help="FILE is dlopen'd later by the program (with the part of its closure not "
                        "loaded yet); repeatable, in load order; checked as a dlopen'd library")
    p.add_argument("--min-glibc", metavar="X.Y",
                   help="oldest glibc the binaries must load on (strong GLIBC_2.35 references fail below 2.35)")
    p.add_argument("--dlopen", action="store_true",
                   help="the shared libraries will be dlopen'd (initial-exec TLS is an error)")
    p.add_argument("--format", choices=FORMATS, default="text", help="output format (default: text)")
    p.add_argument("--notes", "-v", "--verbose", action="store_true", dest="notes",
                   help="also show informational notes in the text output (the other formats "
                        "always carry them)")
    p.add_argument("--output", type=Path, metavar="FILE", help="write the report here instead of stdout")
    p.add_argument("--fail-on", choices=FAIL_ON, default="error",
                   help="lowest severity that makes the exit code 1 (default: error)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="check N files in parallel (0: one per CPU; default 1)")
    p.set_defaults(func=execute)


# ---------------------------------------------------------------------------

def _parse_min_glibc(text: str | None):
    if text is None:
        return None
    m = re.fullmatch(r"(\d+)\.(\d+)", text.strip())
    if not m:
        raise UsageError(f"--min-glibc: {text!r} is not a version like 2.17")
    return (int(m.group(1)), int(m.group(2)))


def load_manifest(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"--manifest {path}: {os_error_words(exc)}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"--manifest {path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("symbols", []), list) \
            or not all(isinstance(s, dict) and isinstance(s.get("name"), str)
                       for s in data.get("symbols", [])):
        raise UsageError(f"--manifest {path}: not an rseq-gen manifest (no symbols list)")
    base = data.get("output_dir") or str(Path(path).resolve().parent)
    for s in data.get("symbols", []):
        src = s.get("source")
        if isinstance(src, dict) and src.get("file") and not os.path.isabs(src["file"]):
            src["file"] = os.path.join(base, src["file"])
    origin = data.get("origin")
    if isinstance(origin, dict) and origin.get("file") and not os.path.isabs(origin["file"]):
        origin["file"] = os.path.join(base, origin["file"])
    return data


#: Files a process loads (an object or an archive is linked into one).
_LINKED_KINDS = ("shared-library", "pie-executable", "executable")


def _together(results: list[dict], args) -> bool:
    """Inputs given together make one process (in the order given, the
    executable first) when they can: linked files of one machine and class,
    at most one executable, and more than one of them or a --plugin or
    --preload beside them."""
    linked = [r for r in results if r["facts"] is not None and r["file"]["kind"] in _LINKED_KINDS]
    programs = [r for r in linked if r["file"]["kind"] != "shared-library"]
    machines = {(r["file"]["arch"], r["file"]["elfclass"]) for r in linked}
    return bool(linked) and len(programs) <= 1 and len(machines) == 1 and \
        (len(linked) > 1 or bool(args.plugin or args.preload))


def check_path(path: str, ctx) -> dict:
    """Check one input (see rseq_gen.verify.core.check_path)."""
    from rseq_gen.verify.core import check_path as _check

    return _check(path, ctx)


def execute(args: argparse.Namespace) -> int:
    from concurrent.futures import ProcessPoolExecutor

    from rseq_gen.verify.checks import Context
    from rseq_gen.verify.core import Processes, _attach_sources, build_report
    from rseq_gen.verify.core import check_path as _check
    from rseq_gen.verify.output import render

    min_glibc = _parse_min_glibc(args.min_glibc)
    if args.jobs < 0:
        raise UsageError("--jobs: must be 0 (one per CPU) or more")
    manifest = load_manifest(args.manifest) if args.manifest else None
    ctx = Context(protocol=args.protocol, min_glibc=min_glibc, dlopen=args.dlopen, manifest=manifest)
    jobs = args.jobs or os.cpu_count() or 1
    executor = ProcessPoolExecutor(max_workers=jobs) if jobs > 1 else None

    def run(paths, c):
        if executor is None or len(paths) < 2:
            return [_check(p, c) for p in paths]
        return list(executor.map(_check, paths, [c] * len(paths)))

    try:
        results = run(list(args.paths), ctx)
        out = {"files": [], "findings": [], "errors": []}
        for res in results:
            out["files"].append(res["file"])
            out["findings"] += res["findings"]
            out["errors"] += res["errors"]
        _attach_sources(out["findings"], manifest, set(args.paths))
        seen = {os.path.realpath(r["file"]["path"]): r for r in results}
        processes = Processes(run, seen, out, min_glibc)
        linked = [r["file"]["path"] for r in results if r["facts"] is not None
                  and r["file"]["kind"] in _LINKED_KINDS]
        found = []
        if args.closure:
            for root in linked:
                c = processes.closure(root, args.preload, args.plugin)
                if c is not None:
                    found.append(c)
        elif _together(results, args):
            kinds = {r["file"]["path"]: r["file"]["kind"] for r in results}
            found.append(processes.together(linked, kinds, args.preload, args.plugin))
        processes.check_loaded_later(args.preload, args.plugin)  # also without a process
        closures = [processes.finish(c, out["findings"]) for c in found]
        files, findings, errors = out["files"], out["findings"], out["errors"]
    finally:
        if executor is not None:
            executor.shutdown()

    report = build_report(args, files, findings, errors, closures)
    for e in errors:
        where = f"{e['file']}({e['member']})" if e.get("member") else e["file"]
        print(f"rseq-gen verify: {where}: {e['message']}", file=sys.stderr)
    text = render(report, args.format, notes=args.notes)
    if args.output:
        from rseq_gen.fsutil import WriteError, write_atomic

        try:
            write_atomic(args.output, text)
        except WriteError as exc:
            where = "" if exc.failing == exc.target else f"{exc.failing}: "
            raise UsageError(f"--output {args.output}: {where}{exc.words}") from None
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    return report["summary"]["exit_code"]
