"""The verifier's rules, as one data table.

Each rule has a stable ID (never reused), a short name, a default severity,
a message template and a fix. ``docs/rules.md`` is generated from this table:
``python -m rseq_gen.rules docs/rules.md`` rewrites it, ``--check`` fails
when it is stale (a test runs that).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

SEVERITIES = ("error", "warning", "note")


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    severity: str
    category: str
    summary: str
    message: str  # str.format template; the checks fill the fields
    fix: str
    #: When a finding is raised above the default severity (None: never).
    raised: str | None = None


RULE_LIST = (
    # ---- the rseq area and the shared coordination symbols ----------------
    Rule("RSEQ101", "abi-not-tls", "error", "Symbols",
         "`__rseq_abi` is defined but is not a thread-local (STT_TLS) symbol.",
         "__rseq_abi is {type}, not STT_TLS: every thread would share one area",
         "Declare the area `__thread` (the generated code does); do not define `__rseq_abi` as a plain object."),
    Rule("RSEQ102", "abi-too-small", "error", "Symbols",
         "`__rseq_abi` is smaller than the 32 bytes of the original `struct rseq`.",
         "__rseq_abi is {size} bytes, the kernel needs at least 32",
         "Define `__rseq_abi` with the full 32-byte `struct rseq` layout."),
    Rule("RSEQ103", "abi-misaligned", "error", "Symbols",
         "An rseq area is not aligned to 32 bytes inside the TLS block (the kernel refuses a misaligned area with EINVAL).",
         "{symbol} sits at TLS offset {offset:#x} (section alignment {align}), not a multiple of 32",
         "Give the area `__attribute__((aligned(32)))` and do not place it in a packed structure."),
    Rule("RSEQ104", "tls-segment-align", "error", "Symbols",
         "The PT_TLS segment of a file that defines an rseq area is aligned to less than 32 bytes, so no offset inside it is 32-aligned at run time.",
         "PT_TLS p_align is {align}, below 32, while {symbol} lives in it",
         "Align the area to 32 bytes; the linker then raises the TLS segment alignment."),
    Rule("RSEQ105", "abi-not-exported", "error", "Symbols",
         "The protocol shares `__rseq_abi` between modules, but this file's definition is local or not default visibility, so it no longer interposes.",
         "__rseq_abi is {bind}/{visibility}; protocol {protocol} needs it GLOBAL or WEAK with default visibility",
         "List `__rseq_abi` under `global:` in your version script (the manifest's `version_script_globals` "
         "lists what to keep); `-fvisibility=hidden` alone does not hide it (the generated code marks it "
         "`visibility(\"default\")`)."),
    Rule("RSEQ106", "private-area-exported", "error", "Symbols",
         "The protocol keeps its area private, but the area is exported, so another module could bind to it.",
         "{symbol} is exported ({bind}/{visibility}) but protocol {protocol} keeps its area private",
         "Keep the private area `static` (the generated code does) or hide it with a version script."),
    Rule("RSEQ107", "refcount-layout", "error", "Symbols",
         "`__rseq_refcount` must be a 4-byte thread-local (STT_TLS) counter.",
         "__rseq_refcount is {type}, {size} bytes; expected STT_TLS, 4 bytes",
         "Define `__thread unsigned int __rseq_refcount` (weak, default visibility)."),
    Rule("RSEQ108", "handled-layout", "error", "Symbols",
         "`__rseq_handled` must be a 4-byte data object.",
         "__rseq_handled is {type}, {size} bytes; expected a 4-byte object",
         "Define `int __rseq_handled` (weak, default visibility, not thread-local)."),
    Rule("RSEQ109", "executable-symbol-not-dynamic", "warning", "Symbols",
         "A dynamically linked executable defines a shared coordination symbol but does not export it (.dynsym): libraries dlopen'd later bind to their own copy instead of the executable's.",
         "{symbol} is defined but missing from .dynsym; protocol {protocol} shares it with modules loaded later",
         "Link the executable with `-Wl,--export-dynamic-symbol=<name>` for each shared symbol (rseq_gen.protocols: executable_link_flags)."),
    Rule("RSEQ110", "abi-shorter-than-registration", "error", "Symbols",
         "An rseq area is smaller, or less aligned, than the longest registration a module using it may make (`--registration extended` or `auto`: 64 bytes aligned 64 on 7.x): the kernel would be given bytes that belong to something else, or refuse the registration.",
         "{symbol} is {size} bytes at an offset aligned to {align}, but {who} may register {length} bytes on it (needs {length} bytes aligned to {length})",
         "Generate every module sharing `__rseq_abi` with the same `--registration`, so the definition that wins is as large as every registration; or use `--registration legacy` everywhere."),
    # ---- glibc ABI ------------------------------------------------------
    Rule("RSEQ201", "glibc-strong-reference", "error", "glibc ABI",
         "A strong reference to `__rseq_offset`, `__rseq_size` or `__rseq_flags` needs glibc 2.35: the file does not load on the older glibc that `--min-glibc` asks for.",
         "{symbol} is a strong reference{version_text}; --min-glibc {min_glibc} is older than 2.35",
         "Declare the glibc symbols `extern ... __attribute__((weak))` and test `&__rseq_size != NULL` (the generated code does)."),
    Rule("RSEQ202", "glibc-version-node", "note", "glibc ABI",
         "Which symbol version each glibc rseq symbol reference needs, and from which file (ld.so included).",
         "{symbol} {how} {version} {where}",
         "Nothing to fix: informational."),
    # ---- TLS model and module lifetime ------------------------------------
    Rule("RSEQ301", "initial-exec-dlopen", "error", "TLS model",
         "A library meant to be dlopen'd reaches its rseq area with initial-exec TLS (DF_STATIC_TLS or IE relocations): dlopen fails once the static TLS surplus is used up.",
         "{what}, but the library is to be dlopen'd ({why})",
         "Generate with `--dlopen-safe` (global-dynamic TLS) or `--tls-model global-dynamic`."),
    Rule("RSEQ302", "owner-without-nodelete", "warning", "TLS model",
         "A shared library that registers areas in its own TLS is not marked DF_1_NODELETE: dlclose would free TLS the kernel keeps writing into.",
         "{what}, and DT_FLAGS_1 lacks NODELETE: {how}",
         "Link the library with `-Wl,-z,nodelete`.",
         raised="an error where the library is to be dlopen'd (`--dlopen`, `--plugin`, the manifest's or the note's dlopen_safe); at most a warning for a library a closure loads as DT_NEEDED"),
    # ---- critical sections ----------------------------------------------
    Rule("RSEQ401", "cs-section-layout", "error", "Critical sections",
         "`__rseq_cs` must be aligned to 32 and hold whole 32-byte descriptors.",
         "{section} {problem}",
         "Emit descriptors with `.balign 32` and five fields (u32 version, u32 flags, u64 start_ip, u64 post_commit_offset, u64 abort_ip)."),
    Rule("RSEQ402", "cs-version", "error", "Critical sections",
         "A critical-section descriptor has a non-zero version (the kernel only knows version 0).",
         "descriptor {index} has version {value}",
         "Set `version` to 0."),
    Rule("RSEQ403", "cs-flags", "error", "Critical sections",
         "A critical-section descriptor sets flags; the NO_RESTART flags are deprecated and get SIGSEGV on kernels >= 6.0.",
         "descriptor {index} has flags {value:#x}",
         "Set `flags` to 0."),
    Rule("RSEQ404", "cs-range", "error", "Critical sections",
         "start_ip and start_ip + post_commit_offset of a descriptor must lie in one executable section.",
         "descriptor {index}: {problem}",
         "Point start_ip at the first instruction and post_commit_offset at the commit end, in the same code section."),
    Rule("RSEQ405", "cs-abort-ip", "error", "Critical sections",
         "abort_ip must be in an executable section and outside [start_ip, start_ip + post_commit_offset).",
         "descriptor {index}: {problem}",
         "Put the abort handler outside the critical section (the generated code uses `__rseq_failure`)."),
    Rule("RSEQ406", "cs-signature", "error", "Critical sections",
         "The 4 bytes before each abort_ip must be RSEQ_SIG for the ELF machine and byte order; otherwise the kernel kills the thread on abort.",
         "descriptor {index}: bytes before abort_ip {abort} read {found}, expected RSEQ_SIG {expected:#010x} ({arch}, {endian} endian)",
         "Emit the signature right before the abort label with this architecture's RSEQ_SIG."),
    Rule("RSEQ407", "cs-ptr-array", "error", "Critical sections",
         "`__rseq_cs_ptr_array` must hold one 8-byte pointer to each descriptor and nothing else.",
         "{problem}",
         "Emit one pointer per descriptor (`.quad` on 64-bit, `.long x, 0` on 32-bit) into `__rseq_cs_ptr_array`."),
    Rule("RSEQ408", "cs-exit-point", "warning", "Critical sections",
         "`__rseq_exit_point_array` entries must start at a descriptor's start_ip and exit to code.",
         "{problem}",
         "Emit (start_ip, exit_ip) pairs only for the exits of a declared critical section."),
    # ---- protocols --------------------------------------------------------
    Rule("RSEQ501", "two-private-owners", "error", "Protocols",
         "Two modules each register their own private area: the second registration in a thread fails with EINVAL.",
         "{a} and {b} both register a private area",
         "Use one protocol with a shared area (e.g. compat) for every module, or let one module own registration."),
    Rule("RSEQ502", "private-beside-shared", "error", "Protocols",
         "A module with a private area sits beside a module that registers the shared `__rseq_abi`: whichever registers second fails with EINVAL.",
         "{a} registers a private area while {b} registers the shared __rseq_abi",
         "Generate every module with the same shared-area protocol (compat is the default)."),
    Rule("RSEQ503", "glibc-mix", "warning", "Protocols",
         "Shared-area protocols that use glibc's registration are mixed with ones that ignore it: under glibc >= 2.35 the unaware ones fail to register.",
         "{a} uses glibc's area when present, {b} does not",
         "Use a glibc-aware protocol (compat) for every module."),
    Rule("RSEQ504", "protocol-unknown", "warning", "Protocols",
         "An rseq-gen note names a protocol this verifier does not know, or cannot be parsed.",
         "{problem}",
         "Verify with the rseq-gen version that generated the code, or regenerate."),
    Rule("RSEQ505", "protocol-mismatch", "error", "Protocols",
         "The protocol asked for (`--protocol` or the manifest) is not the one the file's rseq-gen note records.",
         "note says protocol {found}, expected {expected}",
         "Regenerate the code with the expected protocol, or fix `--protocol`."),
    Rule("RSEQ506", "registration-mismatch", "error", "Protocols",
         "Modules sharing `__rseq_abi` were generated with different `--registration` modes: a registration must be unregistered with its own length, so when one module registers and another drops the last reference, the kernel refuses (EINVAL) and the registration stays; a longer registration also does not fit a shorter area.",
         "{a} registers up to {la} bytes (--registration {ma}), {b} up to {lb} (--registration {mb})",
         "Generate every module that shares `__rseq_abi` with the same `--registration`."),
    # ---- manifest -------------------------------------------------------
    Rule("RSEQ601", "manifest-symbol-missing", "error", "Manifest",
         "A symbol the manifest promises is not in the file.",
         "{symbol} ({role}) promised by the manifest is missing from {table}",
         "Compile and link the generated source into this file; check `--gc-sections`, version scripts and strip options."),
    Rule("RSEQ602", "manifest-symbol-mismatch", "error", "Manifest",
         "A symbol differs from the manifest in type, size, alignment, binding or visibility.",
         "{symbol}: {field} is {found}, manifest says {expected}",
         "Keep what the manifest's version_script_globals lists global in your version script "
         "(the protocol's shared names, or every generated name with --visibility default); "
         "-fvisibility=hidden is fine (the generated declarations say their own visibility); "
         "do not build the generated source with -fcommon."),
    Rule("RSEQ603", "manifest-note-missing", "error", "Manifest",
         "The file does not carry the rseq-gen note the manifest describes, so it was not built from that generated code.",
         "no rseq-gen note with {desc}",
         "Compile the generated source into this file, and keep `.note.rseq-gen` (do not strip it)."),
    Rule("RSEQ604", "manifest-operation-without-sequence", "error", "Manifest",
         "A per-CPU operation the manifest lists has no critical section in the file: neither its slow path nor an out-of-line copy of its sequence holds a `__rseq_cs` descriptor's start.",
         "{operation}: no critical section starts inside {symbol} or its sequence function",
         "Compile the generated source unmodified, with the architecture it was generated for; keep `__rseq_cs` and `__rseq_cs_ptr_array` in the link."),
    # ---- process closure --------------------------------------------------
    Rule("RSEQ701", "closure-unresolved", "warning", "Closure",
         "A DT_NEEDED library could not be found the way the dynamic loader searches, so the process closure is incomplete.",
         "{needed} (needed by {by}) not found in {searched}",
         "Install the library, or set RPATH/RUNPATH or LD_LIBRARY_PATH as at run time."),
    Rule("RSEQ702", "registration-owner", "note", "Closure",
         "Who registers rseq for the threads of this process at run time, in each environment the process can meet (the closure's `prediction` in the JSON report has every detail).",
         "registration owner per environment: {summary}",
         "Nothing to fix: informational."),
    # ---- coexistence with other adopters (rseq_gen.adopters) --------------
    Rule("RSEQ703", "peer-broken", "error", "Coexistence",
         "An rseq adopter that passes its own checks alone (librseq, the kernel selftests, tcmalloc) fails beside this process's other modules: its registration is refused (the kernel allows one area per thread) or it aborts.",
         "{peer} ({adopter}) {state} on the {threads}: {where}; the thread's registration belongs to {by}; alone it would be {alone}",
         "Let the peer see the area first: load it at start-up (DT_NEEDED or LD_PRELOAD) rather than with dlopen, so rseq-gen modules find it before they register; or keep glibc's registration on, so every module uses glibc's area; or generate the modules with the `glibc` protocol, which never registers."),
    Rule("RSEQ704", "rseq-abi-shadowed", "error", "Coexistence",
         "tcmalloc's `__rseq_abi` is shadowed by an earlier definition in symbol lookup order: once it registers, its layout check (its slabs pointer right before its own `__rseq_abi`) aborts the process.",
         "{peer} ({adopter}) aborts: {where}; its references to __rseq_abi bind to {by}, which comes first in symbol lookup order",
         "Put the tcmalloc module first among the `__rseq_abi` definers (link it into the executable or before the other libraries); shared-area rseq-gen modules then bind to its `__rseq_abi` and share its registration."),
    Rule("RSEQ705", "peer-slow-under-glibc", "warning", "Coexistence",
         "A peer that never uses glibc's registration (tcmalloc) is refused while glibc >= 2.35 registers every thread, so it runs in slow mode, whatever else is in the process.",
         "{peer} ({adopter}) runs in slow mode under {env}: its own registration is refused beside glibc's",
         "Run the program with `GLIBC_TUNABLES=glibc.pthread.rseq=0` (compat modules then share the peer's `__rseq_abi`), or accept the slow mode."),
    Rule("RSEQ706", "cpu-id-start-overlay", "warning", "Coexistence",
         "tcmalloc keeps a pointer over `__rseq_abi.cpu_id_start` and relies on the kernel rewriting that field after every preemption: kernels 6.19 and 7.0 without the RSEQ legacy-mode fix do not, and a registration longer than 32 bytes (v2 mode) kills a process that writes the field.",
         "{peer} ({adopter}) runs its per-CPU fast path ({where}) with its slabs pointer over cpu_id_start: broken on kernels >= 6.19 that skip the rewrite, killed under a v2 (> 32-byte) registration of that area",
         "Run on a kernel before 6.19 or one with the legacy-mode fix (32-byte registrations keep the rewrite); keep the area's registration at 32 bytes (rseq-gen modules register 32); or run the peer in slow mode."),
    Rule("RSEQ707", "peer-slow-mode", "warning", "Coexistence",
         "A peer that has its per-CPU fast path alone runs in slow mode beside this process's other modules: one of them registered the thread first with an area the peer cannot use.",
         "{peer} ({adopter}) runs in slow mode on the {threads}: {where}; the thread's registration belongs to {by}; alone it would be {alone}",
         "Generate the rseq-gen modules with a shared-area protocol (`compat`), so they register and share the peer's `__rseq_abi`, or let the peer register first."),
    Rule("RSEQ708", "module-on-fallbacks", "note", "Coexistence",
         "An rseq-gen module runs on its (exact, slower) fallbacks on threads whose registration belongs to an area it cannot use, where alone it would have a fast path.",
         "{module} runs on fallbacks on the {threads}: {where}; the thread's registration belongs to {by}",
         "Generate the module with `compat` (it uses glibc's area, librseq's area and a shared `__rseq_abi`), or keep the other owner out of the process."),
    # ---- input ----------------------------------------------------------
    Rule("RSEQ801", "arch-unknown", "warning", "Input",
         "The ELF machine has no known RSEQ_SIG, so abort signatures were not checked.",
         "machine {machine} has no known RSEQ_SIG; signatures not checked",
         "Report the architecture so its signature can be added."),
)

RULES = {r.id: r for r in RULE_LIST}
RULES_BY_NAME = {r.name: r for r in RULE_LIST}


def render_markdown() -> str:
    lines = [
        "# rseq-gen verify: rules",
        "",
        "<!-- Generated by `python -m rseq_gen.rules docs/rules.md` from toolkit/rseq_gen/rules.py."
        " Do not edit. -->",
        "",
        "Every finding of `rseq-gen verify` carries one of these IDs. IDs are stable: a rule that is",
        "retired keeps its number. `--fail-on error` (the default) makes the command exit 1 on any",
        "error; `--fail-on warning` also on warnings. Notes never fail.",
        "",
        "| ID | Name | Severity | Category |",
        "|---|---|---|---|",
    ]
    for r in RULE_LIST:
        lines.append(f"| [{r.id}](#{r.id.lower()}-{r.name}) | `{r.name}` | {r.severity} | {r.category} |")
    lines.append("")
    for r in RULE_LIST:
        raised = f" (raised: {r.raised})" if r.raised else ""
        lines += [f"## {r.id} {r.name}", "", f"Severity: **{r.severity}**{raised}. Category: {r.category}.", "",
                  r.summary, "", f"Fix: {r.fix}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m rseq_gen.rules",
                                     description="Write (or with --check, compare) the rules reference.")
    parser.add_argument("path", nargs="?", type=Path, help="markdown file to write; standard output without it")
    parser.add_argument("--check", action="store_true", help="exit 1 when PATH differs from the generated text")
    args = parser.parse_args(argv)
    text = render_markdown()
    if args.path is None:
        if args.check:
            parser.error("--check needs PATH")
        sys.stdout.write(text)
        return 0
    if args.check:
        current = args.path.read_text(encoding="utf-8") if args.path.exists() else ""
        if current != text:
            print(f"{args.path} is stale: run python -m rseq_gen.rules {args.path}", file=sys.stderr)
            return 1
        return 0
    from rseq_gen.fsutil import write_atomic

    write_atomic(args.path, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
