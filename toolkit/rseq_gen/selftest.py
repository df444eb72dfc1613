"""``rseq-gen selftest``: does this machine's kernel keep the promises the
generated code relies on? Builds a witness (templates/selftest_witness.c.j2)
with the user's compiler against freshly generated code, runs it, and gives a
verdict per property.

Three halves, so the test suite can build for another architecture, run the
witness inside a guest kernel and judge its output here:
- ``build_witness()`` generates the code and compiles the witness;
- the witness prints JSON lines (one registration record, one per phase);
- ``judge(lines)`` turns them into a report (a dict, selftest-schema.json).

What the witness measures: the generated per-CPU counter sequences, with a
delay before every commit store, in phases with one disturbance each: three
threads pinned to one CPU (same-CPU preemption), one pinned thread taking a
signal storm from another CPU, one thread moved between two CPUs by another
(migration), and then twice as many threads as CPUs (contention), each in
both indexing modes where it matters (the CPU number and mm_cid). Every
phase counts its operations and the kernel's aborts; the slots must hold
exactly the operations counted: one more or one less is an update lost or
doubled, i.e. a sequence the kernel should have aborted committed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from rseq_gen import __version__
from rseq_gen.arches import ARCHES
from rseq_gen.errors import UsageError

SCHEMA_VERSION = 1
PREFIX = "rseqselftest"
#: Turns of the countdown before each commit store. Long enough that a
#: timer tick or a signal regularly lands inside a window, short enough that
#: an emulated guest still runs thousands of sequences per phase.
DELAY = 2000

#: The delay loop per architecture: asm text for P_RSEQ_INJECT_ASM(reg),
#: where `reg` is the scratch register the sequence leaves free before its
#: commit (as the arch template spells it). Only flags the sequence already
#: clobbers are touched (x86, arm, aarch64: "cc"; ppc: cr7; s390x: none).
DELAY_LOOPS: dict[str, str] = {
    "x86_64": '"mov $" N ", " reg "\\n\\t" "9:\\tdec " reg "\\n\\t" "jnz 9b\\n\\t"',
    "i386": '"mov $" N ", " reg "\\n\\t" "9:\\tdec " reg "\\n\\t" "jnz 9b\\n\\t"',
    "aarch64": '"mov " reg ", #" N "\\n\\t" "9:\\tsub " reg ", " reg ", #1\\n\\t" "cbnz " reg ", 9b\\n\\t"',
    "arm": '"movw " reg ", #" N "\\n\\t" "9:\\tsubs " reg ", " reg ", #1\\n\\t" "bne 9b\\n\\t"',
    "ppc64le": '"li " reg ", " N "\\n\\t" "9:\\taddi " reg ", " reg ", -1\\n\\t" '
               '"cmpdi %%cr7, " reg ", 0\\n\\t" "bne %%cr7, 9b\\n\\t"',
    "ppc64": '"li " reg ", " N "\\n\\t" "9:\\taddi " reg ", " reg ", -1\\n\\t" '
             '"cmpdi %%cr7, " reg ", 0\\n\\t" "bne %%cr7, 9b\\n\\t"',
    "ppc32": '"li " reg ", " N "\\n\\t" "9:\\taddi " reg ", " reg ", -1\\n\\t" '
             '"cmpwi %%cr7, " reg ", 0\\n\\t" "bne %%cr7, 9b\\n\\t"',
    "s390x": '"lghi " reg ", " N "\\n\\t" "9:\\tbrctg " reg ", 9b\\n\\t"',
    "riscv64": '"li " reg ", " N "\\n\\t" "9:\\taddi " reg ", " reg ", -1\\n\\t" "bnez " reg ", 9b\\n\\t"',
    "loongarch64": '"li.d " reg ", " N "\\n\\t" "9:\\taddi.d " reg ", " reg ", -1\\n\\t" "bnez " reg ", 9b\\n\\t"',
}
assert set(DELAY_LOOPS) == set(ARCHES), "every architecture needs a delay loop"

#: The properties, in report order: name -> what a pass means.
PROPERTIES: dict[str, str] = {
    "registration": "the thread has a live rseq registration (its length and owner are reported)",
    "abort_on_preemption": "sequences of threads sharing one CPU are aborted when preempted, none commits stale",
    "abort_on_signal": "sequences interrupted by a signal are aborted before the handler runs",
    "abort_on_migration": "sequences of a thread moved to another CPU are aborted",
    "no_lost_update": "under contention every per-CPU and per-mm_cid add is counted exactly once",
    "mm_cid": "mm_cid is maintained and every value is below the bound the generated code sizes arrays by",
}
#: Phases whose aborts count for each abort property.
ABORT_PHASES = {
    "abort_on_preemption": ("preemption-cpu", "preemption-mm_cid"),
    "abort_on_signal": ("signals",),
    "abort_on_migration": ("migration",),
}
VERDICTS = ("pass", "fail", "inconclusive", "not-applicable")


def delay_loops(delay: int = DELAY) -> list[tuple[str, str]]:
    """(C condition, P_RSEQ_INJECT_ASM body) per architecture."""
    return [(ARCHES[name].c_condition, text.replace(" N ", f' "{delay}" '))
            for name, text in DELAY_LOOPS.items()]


def inject_header(prefix: str, delay: int = DELAY) -> str:
    """A header defining PREFIX_RSEQ_INJECT_ASM (the delay before each
    commit store) for every architecture; include it before the generated
    header (the test suite's programs do)."""
    pu = prefix.upper()
    lines = [f"/* {pu}_RSEQ_INJECT_ASM: {delay} turns of a countdown before each commit store "
             "(rseq-gen selftest's delay loop). */"]
    for i, (cond, text) in enumerate(delay_loops(delay)):
        lines += [f"#{'if' if i == 0 else 'elif'} {cond}", f"#define {pu}_RSEQ_INJECT_ASM(reg) {text}"]
    lines.append("#endif")
    return "\n".join(lines) + "\n"


def render_witness(prefix: str = PREFIX, delay: int = DELAY) -> str:
    from rseq_gen.templating import make_environment

    env, _ = make_environment()
    return env.get_template("selftest_witness.c.j2").render(
        P=prefix, PU=prefix.upper(), version=__version__, delay=delay, delay_loops=delay_loops(delay))


def generate_sources(outdir: Path, arches: str | None = None, protocol: str = "compat") -> Path:
    """The generated code (for `arches`, default every architecture: the
    compiler picks) and the witness source in `outdir`; returns the witness
    source."""
    from rseq_gen.generate import render, write_outputs
    from rseq_gen.settings import GenerateOptions

    arches = arches or ",".join(ARCHES)
    opts = GenerateOptions.from_strings(protocol=protocol, prefix=PREFIX, arch=arches)
    write_outputs(render(opts), outdir, None, None)
    source = Path(outdir) / "selftest_witness.c"
    source.write_text(render_witness())
    return source


def compile_command(cc: list[str], source: Path, output: Path, extra: tuple[str, ...] = ()) -> list[str]:
    gen = source.parent
    return [*cc, "-std=c11", "-O2", "-pthread", f"-I{gen}", str(source), str(gen / f"{PREFIX}_rseq.c"),
            "-o", str(output), *extra]


def build_witness(cc: list[str], workdir: Path, extra: tuple[str, ...] = (),
                  arches: str | None = None) -> Path:
    """Generate and compile the witness; UsageError (one line) when the
    compiler is missing or fails."""
    if shutil.which(cc[0]) is None:
        raise UsageError(f"selftest: compiler {cc[0]!r} not found (pass --cc)")
    source = generate_sources(workdir, arches)
    exe = Path(workdir) / "selftest_witness"
    proc = subprocess.run(compile_command(cc, source, exe, extra), capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if "error" in ln] or proc.stderr.splitlines() or ["?"]
        raise UsageError(f"selftest: the witness did not build with {' '.join(cc)}: {lines[0].strip()}")
    return exe


def parse(text: str) -> list[dict]:
    """The witness's JSON lines (other lines are ignored)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def _verdict(verdict: str, detail: str, **facts) -> dict:
    assert verdict in VERDICTS
    return {"verdict": verdict, "detail": detail, **facts}


def judge(records: list[dict], returncode: int = 0) -> dict:
    """The report for the witness's output (selftest-schema.json)."""
    reg = next((r for r in records if r.get("event") == "registration"), None)
    phases = {r["name"]: r for r in records if r.get("event") == "phase"}
    finished = any(r.get("event") == "done" for r in records)
    props: dict[str, dict] = {}
    if reg is None:
        detail = f"the witness printed no registration record (exit {returncode})"
        for name in PROPERTIES:
            props[name] = _verdict("fail", detail)
        return _report(None, phases, props, finished)
    registered = reg["owner"] != "none"
    accepted = sorted(int(n) for n, e in reg.get("length_errno", {}).items() if e == 0)
    if registered:
        props["registration"] = _verdict(
            "pass", f"registered by {reg['owner']}, {reg['length']} bytes (kernel feature size "
                    f"{reg['feature_size']}, {'v2 mode' if reg['length'] > 32 else 'legacy mode'})"
                    + (f"; a fresh thread may register {', '.join(map(str, accepted))} bytes" if accepted else ""),
            owner=reg["owner"], length=reg["length"], accepted_lengths=accepted)
    else:
        props["registration"] = _verdict(
            "not-applicable", f"no registration (errno {reg['errno']}): the generated code runs its "
                              "exact fallbacks", owner="none", length=0)
    inexact = {n: p for n, p in phases.items() if p["total"] != p["ops"]}
    for prop, names in ABORT_PHASES.items():
        ran = [phases[n] for n in names if n in phases]
        if not ran:
            why = ("one CPU allowed: nothing to migrate to" if prop == "abort_on_migration" and
                   reg.get("cpus_allowed", 0) < 2 else "the phase did not run")
            props[prop] = _verdict("not-applicable" if finished else "fail", why)
            continue
        aborts = sum(p["aborts"] for p in ran)
        bad = [p for p in ran if p["name"] in inexact]
        facts = {"aborts": aborts, "ops": sum(p["ops"] for p in ran)}
        if bad:
            props[prop] = _verdict("fail", "; ".join(
                f"{p['name']}: {p['ops']} adds done, {p['total']} found in the slots" for p in bad), **facts)
        elif not registered:
            props[prop] = _verdict("not-applicable", "no registration: totals exact through the fallbacks",
                                   **facts)
        elif aborts == 0:
            props[prop] = _verdict("inconclusive", "totals exact, but no sequence was aborted: no "
                                   "disturbance landed inside a sequence, or the kernel does not abort them",
                                   **facts)
        else:
            props[prop] = _verdict("pass", f"{aborts} aborts in {facts['ops']} sequences, totals exact", **facts)
    contention = [phases[n] for n in ("contention-cpu", "contention-mm_cid") if n in phases]
    bad = [p for p in contention if p["name"] in inexact]
    if len(contention) < 2:
        props["no_lost_update"] = _verdict("fail", "the contention phases did not run")
    elif bad:
        props["no_lost_update"] = _verdict("fail", "; ".join(
            f"{p['name']}: {p['ops']} adds done, {p['total']} found" for p in bad))
    else:
        props["no_lost_update"] = _verdict(
            "pass", f"{sum(p['ops'] for p in contention)} adds by {contention[0]['threads']} threads, exact",
            aborts=sum(p["aborts"] for p in contention), ops=sum(p["ops"] for p in contention))
    mmcid = [p for p in phases.values() if p["mode"] == "mm_cid"]
    out_of_bound = sum(p["index_out_of_bound"] for p in mmcid)
    if out_of_bound:
        props["mm_cid"] = _verdict("fail", f"{out_of_bound} indexes outside [0, {mmcid[0]['index_bound']})")
    elif not reg["mm_cid_available"]:
        props["mm_cid"] = _verdict("not-applicable", "the kernel does not maintain mm_cid (before 6.3, or no "
                                   "registration): the mm_cid operations use their own index, exact")
    else:
        props["mm_cid"] = _verdict("pass", f"largest mm_cid {max(p['index_max'] for p in mmcid)}, bound "
                                   f"{mmcid[0]['index_bound']}" if mmcid else "maintained")
    if not finished:
        props["no_lost_update"] = _verdict("fail", f"the witness stopped early (exit {returncode})")
    return _report(reg, phases, props, finished)


def _report(reg, phases, props, finished) -> dict:
    violated = [n for n, p in props.items() if p["verdict"] == "fail"]
    return {
        "format": "rseq-gen-selftest", "version": SCHEMA_VERSION,
        "tool": {"name": "rseq-gen", "version": __version__},
        "kernel": reg["kernel"] if reg else None, "machine": reg["machine"] if reg else None,
        "registration": reg, "phases": list(phases.values()), "finished": finished,
        "properties": {name: props[name] for name in PROPERTIES},
        "atomicity_violated": bool(violated), "failed": violated,
    }


def run_witness(exe: Path, seconds: float, env: dict | None = None) -> tuple[int, str]:
    timeout = max(60.0, seconds * 20)
    proc = subprocess.run([str(exe), "--seconds", str(seconds)], capture_output=True, text=True,
                          timeout=timeout, env=env)
    return proc.returncode, proc.stdout


def text_report(report: dict) -> str:
    lines = []
    reg = report["registration"] or {}
    lines.append(f"kernel {report['kernel']} ({report['machine']}), {reg.get('cpus_allowed', '?')} CPUs allowed")
    width = max(len(n) for n in PROPERTIES)
    for name, p in report["properties"].items():
        lines.append(f"  {name:<{width}}  {p['verdict'].upper():<14} {p['detail']}")
    lines.append("atomicity VIOLATED: " + ", ".join(report["failed"]) if report["atomicity_violated"]
                 else "atomicity held in every phase")
    return "\n".join(lines)


def configure_parser(sub) -> None:
    p = sub.add_parser("selftest", help="check this machine's kernel keeps rseq's promises",
                       description="Build a witness with your compiler against generated code and run it "
                                   "here: aborts on same-CPU preemption, signal delivery and migration, no "
                                   "lost update under contention, mm_cid within its bound. Exit 1 when "
                                   "atomicity is violated.")
    p.add_argument("--json", action="store_true", help="print the report as JSON (selftest-schema.json)")
    p.add_argument("--cc", default=os.environ.get("CC", "cc"), metavar="CC",
                   help="C compiler (may include flags, e.g. 'clang -m32'). Default: $CC or cc.")
    p.add_argument("--seconds", default=3.0, type=float, metavar="N",
                   help="how long the witness runs, all phases together. Default: 3.")
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    import shlex

    if not 0.1 <= args.seconds <= 600:
        raise UsageError(f"selftest: --seconds {args.seconds}: give 0.1 to 600")
    cc = shlex.split(args.cc)
    if not cc:
        raise UsageError("selftest: --cc is empty")
    with tempfile.TemporaryDirectory(prefix="rseq-gen-selftest-") as tmp:
        exe = build_witness(cc, Path(tmp))
        try:
            code, out = run_witness(exe, args.seconds)
        except subprocess.TimeoutExpired:
            code, out = -1, ""
    report = judge(parse(out), code)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(text_report(report))
    sys.stdout.flush()
    return 1 if report["atomicity_violated"] else 0
